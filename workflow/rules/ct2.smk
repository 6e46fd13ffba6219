# CTranslate2 conversions of the models that steps with `backend: ctranslate2` load. They mirror
# the results/ tree (results/ct2/models/teacher, results/ct2/round1/students/top1-both); models
# the config names by path or id go to results/ct2/external/<name>.
rule convert_ct2:
    input:
        unpack(ct2_source),
    output:
        directory("results/ct2/{model}"),
    log:
        "logs/convert_ct2/{model}.log",
    benchmark:
        "results/benchmarks/convert_ct2/{model}.tsv"
    wildcard_constraints:
        model=r"models/[A-Za-z0-9_]+|round\d+/(models|students)/[A-Za-z0-9_.-]+|external/\w+",
    # decoding and scoring wait for their models' conversions
    priority: 5
    conda:
        "../../envs/mtdistill.yaml"
    threads: job_threads("convert_ct2")
    resources:
        **job_resources("convert_ct2"),
    params:
        model=ct2_source_model,
    shell:
        "python -m mtdistill.ct2 --model {params.model:q} --out {output} > {log} 2>&1"
