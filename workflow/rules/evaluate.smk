rule evaluate:
    input:
        model=system_model,
        test="results/data/test.parquet",
    output:
        "results/round{round}/eval/{system}.json",
    log:
        "logs/evaluate/round{round}/{system}.log",
    benchmark:
        "results/benchmarks/evaluate/round{round}/{system}.tsv"
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
        " --system {wildcards.system} --round {wildcards.round} --strategy {params.strategy} --beam {params.beam}"
        " --batch-size {params.batch_size} --threads {threads} --out {output} > {log} 2>&1"


rule report:
    input:
        unpack(report_inputs),
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
    params:
        inputs=input_options,
    shell:
        "python -m mtdistill.report {params.inputs}"
        " --csv {output.csv} --markdown {output.markdown} > {log} 2>&1"
