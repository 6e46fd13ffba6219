rule evaluate:
    input:
        model=system_model,
        test="results/data/test.parquet",
    output:
        "results/eval/{system}.json",
    log:
        "logs/evaluate/{system}.log",
    benchmark:
        "results/benchmarks/evaluate/{system}.tsv"
    conda:
        "../../envs/mtdistill.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        strategy=system_strategy,
        beam=config["evaluation"]["beam"],
        batch_size=config["evaluation"]["batch_size"],
    shell:
        "python -m mtdistill.evaluate --model {input.model} --test {input.test}"
        " --system {wildcards.system} --strategy {params.strategy} --beam {params.beam}"
        " --batch-size {params.batch_size} --threads {threads} --out {output} > {log} 2>&1"


rule report:
    input:
        evaluations=expand("results/eval/{system}.json", system=SYSTEMS),
        models=[model_dir(system) for system in SYSTEMS],
        weights="results/reranker/weights.json",
        costs=scorer_costs(),
    output:
        markdown="results/report.md",
        csv=report(
            "results/report.csv", caption="../report/report.rst", category="Results"
        ),
    log:
        "logs/report/report.log",
    benchmark:
        "results/benchmarks/report/report.tsv"
    localrule: True
    conda:
        "../../envs/mtdistill.yaml"
    shell:
        "python -m mtdistill.report --evaluations {input.evaluations}"
        " --models {input.models} --weights {input.weights} --costs {input.costs}"
        " --csv {output.csv} --markdown {output.markdown} > {log} 2>&1"
