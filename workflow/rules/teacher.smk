if config["teacher"]["pretrained"]:

    rule import_teacher:
        output:
            directory(TEACHER),
        log:
            "logs/import_teacher/import_teacher.log",
        benchmark:
            "results/benchmarks/import_teacher/import_teacher.tsv"
        conda:
            "../../envs/mtdistill.yaml"
        threads: job_threads("import_teacher")
        resources:
            **job_resources("import_teacher"),
        params:
            pretrained=config["teacher"]["pretrained"],
            profile=teacher_import_options,
        shell:
            "python -m mtdistill.import_teacher --pretrained {params.pretrained:q}"
            " {params.profile} --out {output} > {log} 2>&1"

else:

    rule train_teacher:
        input:
            train="results/data/train.parquet",
            dev="results/data/dev.parquet",
            tokenizer="results/tokenizer",
        output:
            directory(TEACHER),
        log:
            "logs/train_teacher/train_teacher.log",
        benchmark:
            "results/benchmarks/train_teacher/train_teacher.tsv"
        # everything downstream waits for the teacher: start it before the helpers
        priority: 10
        conda:
            "../../envs/mtdistill.yaml"
        threads: job_threads("train_teacher")
        resources:
            **job_resources("train_teacher"),
        params:
            launcher=launcher,
            arch=as_json(config["teacher"]["arch"]),
            options=PLAN.train_options("teacher"),
            seed=config["seed"],
        shell:
            "{params.launcher} -m mtdistill.train --train {input.train} --dev {input.dev}"
            " --tokenizer {input.tokenizer} --arch {params.arch:q} {params.options}"
            " --seed {params.seed} --threads {threads} --out {output} > {log} 2>&1"


rule train_helper:
    input:
        unpack(helper_inputs),
    output:
        directory("results/models/{helper}"),
    log:
        "logs/train_helper/{helper}.log",
    benchmark:
        "results/benchmarks/train_helper/{helper}.tsv"
    # the reranker's chain (helpers, n-best lists, scores, tuning) is the longest: students wait
    priority: 5
    conda:
        "../../envs/mtdistill.yaml"
    threads: job_threads("train_helper")
    resources:
        **job_resources("train_helper"),
    params:
        launcher=launcher,
        options=helper_options,
        seed=config["seed"],
    shell:
        "{params.launcher} -m mtdistill.train --train {input.train} --dev {input.dev}"
        " --tokenizer {input.tokenizer} {params.options}"
        " --seed {params.seed} --threads {threads} --out {output} > {log} 2>&1"


# Self-training (Setiawan 2024): round r > 0 fine-tunes each decoder on round r-1's labels.
rule finetune_decoders:
    input:
        unpack(finetune_inputs),
    output:
        directory("results/round{round}/models/{finetuned}"),
    log:
        "logs/finetune_decoders/round{round}/{finetuned}.log",
    benchmark:
        "results/benchmarks/finetune_decoders/round{round}/{finetuned}.tsv"
    conda:
        "../../envs/mtdistill.yaml"
    threads: job_threads("finetune_decoders")
    resources:
        **job_resources("finetune_decoders"),
    params:
        launcher=launcher,
        options=finetune_options,
        seed=config["seed"],
    shell:
        "{params.launcher} -m mtdistill.train --train {input.labels} --label-column label"
        " --dev {input.dev} {params.options}"
        " --seed {params.seed} --threads {threads} --out {output} > {log} 2>&1"
