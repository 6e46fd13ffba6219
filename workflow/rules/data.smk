rule prepare_data:
    output:
        train="results/data/train.parquet",
        tune="results/data/tune.parquet",
        dev="results/data/dev.parquet",
        test="results/data/test.parquet",
        bitext="results/data/bitext.parquet",
        mono="results/data/mono.parquet",
        lm="results/data/lm.parquet",
        stats="results/data/stats.json",
    log:
        "logs/prepare_data/prepare_data.log",
    benchmark:
        "results/benchmarks/prepare_data/prepare_data.tsv"
    conda:
        "../../envs/mtdistill.yaml"
    threads: job_threads("prepare_data")
    resources:
        **job_resources("prepare_data"),
    params:
        spec=PLAN.data_spec(),
    shell:
        "python -m mtdistill.prepare_data --spec {params.spec:q}"
        " --outdir results/data > {log} 2>&1"


rule train_tokenizer:
    input:
        train="results/data/train.parquet",
    output:
        directory("results/tokenizer"),
    log:
        "logs/train_tokenizer/train_tokenizer.log",
    benchmark:
        "results/benchmarks/train_tokenizer/train_tokenizer.tsv"
    conda:
        "../../envs/mtdistill.yaml"
    threads: job_threads("train_tokenizer")
    resources:
        **job_resources("train_tokenizer"),
    params:
        vocab_size=config["tokenizer"]["vocab_size"],
        seed=config["seed"],
    shell:
        "python -m mtdistill.train_tokenizer --train {input.train}"
        " --vocab-size {params.vocab_size} --seed {params.seed} --threads {threads}"
        " --out {output} > {log} 2>&1"
