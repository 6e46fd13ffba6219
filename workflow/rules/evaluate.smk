rule evaluate:
    input:
        model=system_model,
        translator=evaluate_translator,
        retrieval=evaluate_retrieval,
        test="results/data/test.parquet",
    output:
        "results/round{round}/eval/{system}.json",
    log:
        "logs/evaluate/round{round}/{system}.log",
    benchmark:
        "results/benchmarks/evaluate/round{round}/{system}.tsv"
    conda:
        "../../envs/mtdistill.yaml"
    threads: job_threads("evaluate")
    resources:
        **job_resources("evaluate"),
    params:
        strategy=system_strategy,
        beam=config["evaluation"]["beam"],
        batch_size=config["evaluation"]["batch_size"],
        speed_sentences=config["evaluation"]["speed_sentences"],
        backend=evaluate_backend_option,
        retrieval=evaluate_retrieval_option,
        lengths=PLAN.length_options(),
    shell:
        "python -m mtdistill.evaluate --model {input.model} --test {input.test}"
        " --system {wildcards.system} --round {wildcards.round} --strategy {params.strategy} --beam {params.beam}"
        " --batch-size {params.batch_size} --speed-sentences {params.speed_sentences}"
        " {params.backend} {params.retrieval} {params.lengths} --threads {threads}"
        " --out {output} > {log} 2>&1"


# evaluation.comet: COMET of evaluate's hypotheses, in the COMET environment (envs/comet.txt);
# significance, figures and the report then read this copy of the evaluation (Plan.evaluation_file).
rule evaluate_comet:
    input:
        evaluation="results/round{round}/eval/{system}.json",
        test="results/data/test.parquet",
    output:
        "results/round{round}/eval/{system}.comet.json",
    log:
        "logs/evaluate_comet/round{round}/{system}.log",
    benchmark:
        "results/benchmarks/evaluate_comet/round{round}/{system}.tsv"
    conda:
        "../../envs/comet.yaml"
    threads: job_threads("evaluate_comet")
    resources:
        **job_resources("evaluate_comet"),
    params:
        python=COMET_PYTHON,
        comet=PLAN.comet_options(),
        batch_size=config["evaluation"]["batch_size"],
    shell:
        "{params.python} -m mtdistill.comet_evaluate --evaluation {input.evaluation} --test {input.test}"
        " {params.comet} --batch-size {params.batch_size} --threads {threads}"
        " --out {output} > {log} 2>&1"


rule compare_systems:
    input:
        unpack(round_evaluations),
    output:
        "results/round{round}/eval/significance.json",
    log:
        "logs/compare_systems/round{round}.log",
    benchmark:
        "results/benchmarks/compare_systems/round{round}.tsv"
    conda:
        "../../envs/mtdistill.yaml"
    threads: job_threads("compare_systems")
    resources:
        **job_resources("compare_systems"),
    params:
        comparisons=PLAN.comparison_options(),
        samples=config["evaluation"]["bootstrap_samples"],
        seed=config["seed"],
    shell:
        "python -m mtdistill.significance --evaluations {input.evaluations} --test {input.test}"
        " --comparisons {params.comparisons} --round {wildcards.round} --samples {params.samples}"
        " --seed {params.seed} --out {output} > {log} 2>&1"


# Figures of the HTML report and report.md: one PNG each, named after its figure.
rule figures:
    input:
        unpack(figure_inputs),
    output:
        report_figures(),
    log:
        "logs/figures/figures.log",
    benchmark:
        "results/benchmarks/figures/figures.tsv"
    localrule: True
    conda:
        "../../envs/mtdistill.yaml"
    params:
        inputs=input_options,
    shell:
        "python -m mtdistill.figures {params.inputs} --out {output} > {log} 2>&1"


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
        options=PLAN.report_options(),
    shell:
        "python -m mtdistill.report {params.inputs} {params.options}"
        " --csv {output.csv} --markdown {output.markdown} > {log} 2>&1"
