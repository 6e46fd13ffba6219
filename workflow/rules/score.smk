rule score:
    input:
        unpack(scorer_inputs),
    output:
        features="results/features/{set}/{scorer}/{shard}.parquet",
        cost="results/features/{set}/{scorer}/{shard}.cost.json",
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
        " --batch-size {params.batch_size} --threads {threads} --out {output.features}"
        " --cost-out {output.cost} > {log} 2>&1"
