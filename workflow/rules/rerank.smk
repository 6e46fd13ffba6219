# A checkpoint: which scorers the reranker keeps decides which scoring jobs the transfer sets get.
checkpoint tune_reranker:
    input:
        unpack(reranker_inputs),
    output:
        weights="results/round{round}/reranker/weights.json",
        diagnostics="results/round{round}/reranker/diagnostics.json",
    log:
        "logs/tune_reranker/round{round}.log",
    benchmark:
        "results/benchmarks/tune_reranker/round{round}.tsv"
    # the reranker's chain (helpers, n-best lists, scores, tuning) is the longest: students wait
    priority: 5
    conda:
        "../../envs/mtdistill.yaml"
    threads: job_threads("tune_reranker")
    resources:
        **job_resources("tune_reranker"),
    params:
        inputs=input_options,
        tuners=config["reranker"]["tuners"],
        select=config["reranker"]["select"],
        evaluations=config["reranker"]["evaluations"],
        metric=config["reranker"]["metric"],
        seed=config["seed"],
    shell:
        "python -m mtdistill.tune_reranker {params.inputs} --tuners {params.tuners}"
        " --select {params.select} --evaluations {params.evaluations}"
        " --metric {params.metric} --seed {params.seed}"
        " --weights {output.weights} --diagnostics {output.diagnostics} > {log} 2>&1"


rule select_labels:
    input:
        unpack(label_inputs),
    output:
        labels="results/round{round}/labels/{strategy}/{set}.parquet",
        diagnostics="results/round{round}/labels/{strategy}/{set}.json",
    log:
        "logs/select_labels/round{round}/{strategy}.{set}.log",
    benchmark:
        "results/benchmarks/select_labels/round{round}/{strategy}.{set}.tsv"
    conda:
        "../../envs/mtdistill.yaml"
    threads: job_threads("select_labels")
    resources:
        **job_resources("select_labels"),
    params:
        inputs=input_options,
        mbr=mbr_option,
        filter=PLAN.label_filter_options(),
    shell:
        "python -m mtdistill.select_labels --strategy {wildcards.strategy}"
        " {params.inputs} {params.mbr} {params.filter} --set-name {wildcards.set}"
        " --diagnostics {output.diagnostics} --out {output.labels} > {log} 2>&1"
