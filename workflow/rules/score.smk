rule score:
    input:
        unpack(scorer_inputs),
    output:
        features="results/round{round}/features/{set}/{scorer}/{shard}.parquet",
        cost="results/round{round}/features/{set}/{scorer}/{shard}.cost.json",
    log:
        "logs/score/round{round}/{set}.{scorer}.{shard}.log",
    benchmark:
        "results/benchmarks/score/round{round}/{set}.{scorer}.{shard}.tsv"
    # the reranker's chain (helpers, n-best lists, scores, tuning) is the longest: students wait
    priority: 5
    # the comet kind runs in the COMET environment (unbabel-comet pins transformers<5, numpy<2)
    conda:
        scorer_env
    threads: job_threads("score")
    resources:
        **job_resources("score", gpu=scorer_gpus),
    params:
        python=scorer_python,
        kind=scorer_option("kind"),
        model=scorer_model_option,
        batch_size=scorer_option("batch_size"),
    shell:
        "{params.python} -m mtdistill.score --name {wildcards.scorer} --kind {params.kind}"
        " {params.model} --nbest {input.nbest} --sources {input.sources}"
        " --batch-size {params.batch_size} --threads {threads} --out {output.features}"
        " --cost-out {output.cost} > {log} 2>&1"


rule gather_costs:
    input:
        unpack(round_costs),
    output:
        "results/round{round}/features/costs.json",
    log:
        "logs/gather_costs/round{round}.log",
    benchmark:
        "results/benchmarks/gather_costs/round{round}.tsv"
    localrule: True
    conda:
        "../../envs/mtdistill.yaml"
    params:
        inputs=input_options,
    shell:
        "python -m mtdistill.gather_json {params.inputs} --out {output} > {log} 2>&1"


rule list_selected_features:
    input:
        unpack(selected_features),
    output:
        "results/round{round}/features/{set}/selected.json",
    log:
        "logs/list_selected_features/round{round}/{set}.log",
    benchmark:
        "results/benchmarks/list_selected_features/round{round}/{set}.tsv"
    localrule: True
    conda:
        "../../envs/mtdistill.yaml"
    params:
        inputs=input_options,
    shell:
        "python -m mtdistill.gather_json --paths-only {params.inputs} --out {output} > {log} 2>&1"
