rule tune_reranker:
    input:
        nbest=nbest_shards("tune"),
        features=reranker_features("tune"),
        references="results/data/tune.parquet",
    output:
        "results/reranker/weights.json",
    log:
        "logs/tune_reranker/tune_reranker.log",
    benchmark:
        "results/benchmarks/tune_reranker/tune_reranker.tsv"
    conda:
        "../../envs/mtdistill.yaml"
    params:
        metric=config["reranker"]["metric"],
        seed=config["seed"],
    shell:
        "python -m mtdistill.tune_reranker --nbest {input.nbest}"
        " --features {input.features} --references {input.references}"
        " --metric {params.metric} --seed {params.seed} --out {output} > {log} 2>&1"


rule select_labels:
    input:
        unpack(label_inputs),
    output:
        "results/labels/{strategy}/{set}.parquet",
    log:
        "logs/select_labels/{strategy}.{set}.log",
    benchmark:
        "results/benchmarks/select_labels/{strategy}.{set}.tsv"
    conda:
        "../../envs/mtdistill.yaml"
    params:
        options=label_options,
    shell:
        "python -m mtdistill.select_labels --strategy {wildcards.strategy}"
        " --sentences {input.sentences} {params.options} --out {output} > {log} 2>&1"
