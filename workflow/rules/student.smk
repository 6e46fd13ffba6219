rule train_student:
    input:
        labels=student_labels,
        dev="results/data/dev.parquet",
        teacher=TEACHER,
    output:
        directory("results/round{round}/students/{system}"),
    log:
        "logs/train_student/round{round}/{system}.log",
    benchmark:
        "results/benchmarks/train_student/round{round}/{system}.tsv"
    conda:
        "../../envs/mtdistill.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        arch=as_json(config["student"]["arch"]),
        options=train_options("student"),
        init=student_init_option,
        seed=config["seed"],
    shell:
        "python -m mtdistill.train --train {input.labels} --label-column label"
        " --dev {input.dev} --tokenizer {input.teacher} --arch {params.arch:q}"
        " {params.init} {params.options} --seed {params.seed} --threads {threads}"
        " --out {output} > {log} 2>&1"
