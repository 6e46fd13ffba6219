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
    # cross-entropy students only: variants have their own rule
    wildcard_constraints:
        system=r"[a-z0-9]+-(bitext|mono|both)",
    conda:
        "../../envs/mtdistill.yaml"
    threads: job_threads("train_student")
    resources:
        **job_resources("train_student"),
    params:
        launcher=launcher,
        arch=as_json(config["student"]["arch"]),
        options=train_options("student"),
        init=student_init_option,
        seed=config["seed"],
    shell:
        "{params.launcher} -m mtdistill.train --train {input.labels} --label-column label"
        " --dev {input.dev} --tokenizer {input.teacher} --arch {params.arch:q}"
        " {params.init} {params.options} --seed {params.seed} --threads {threads}"
        " --out {output} > {log} 2>&1"


# Word-level KD from a cache: the teacher's top-k next-token log-probs on a student's labels.
rule teacher_topk:
    input:
        unpack(topk_labels),
    output:
        "results/round{round}/topk/{labels}.k{k}.pt",
    log:
        "logs/teacher_topk/round{round}/{labels}.k{k}.log",
    benchmark:
        "results/benchmarks/teacher_topk/round{round}/{labels}.k{k}.tsv"
    conda:
        "../../envs/mtdistill.yaml"
    threads: job_threads("teacher_topk")
    resources:
        **job_resources("teacher_topk"),
    params:
        max_len=config["student"]["train"]["max_len"],
    shell:
        "python -m mtdistill.teacher_topk --teacher {input.teacher} --train {input.labels}"
        " --k {wildcards.k} --max-len {params.max_len} --threads {threads}"
        " --out {output} > {log} 2>&1"


# A student trained with another objective (student.variants): word-level KD, SKD and its special
# cases, pruning; usually starting from a cross-entropy student.
rule train_variant:
    input:
        unpack(variant_inputs),
    output:
        directory("results/round{round}/students/{variant}"),
    log:
        "logs/train_variant/round{round}/{variant}.log",
    benchmark:
        "results/benchmarks/train_variant/round{round}/{variant}.tsv"
    conda:
        "../../envs/mtdistill.yaml"
    threads: job_threads("train_variant")
    resources:
        **job_resources("train_variant"),
    params:
        launcher=launcher,
        options=variant_options,
        seed=config["seed"],
    shell:
        "{params.launcher} -m mtdistill.distill --train {input.labels} --label-column label"
        " --dev {input.dev} {params.options} --seed {params.seed} --threads {threads}"
        " --out {output} > {log} 2>&1"
