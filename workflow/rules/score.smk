rule score:
    input:
        unpack(scorer_inputs),
    output:
        "results/features/{set}/{scorer}/{shard}.parquet",
    log:
        "logs/score/{set}.{scorer}.{shard}.log",
    benchmark:
        "results/benchmarks/score/{set}.{scorer}.{shard}.tsv"
    conda:
        "../../envs/mtdistill.yaml"
    threads: 1
    resources:
        gpu=scorer_gpus,
    params:
        kind=scorer_option("kind"),
        model=scorer_model_option,
        batch_size=scorer_option("batch_size"),
    shell:
        "python -m mtdistill.score --name {wildcards.scorer} --kind {params.kind}"
        " {params.model} --nbest {input.nbest} --sources {input.sources}"
        " --batch-size {params.batch_size} --threads {threads} --out {output} > {log} 2>&1"
