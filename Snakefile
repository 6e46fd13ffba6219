# mtdistill: distil a large NMT teacher into small, fast students.
#
# data -> tokenizer -> teacher -> n-best decoding (per set and shard) -> scoring (per scorer,
# set and shard) -> reranker tuning -> labels (per strategy) -> students -> evaluation -> report.
# Outputs go under results/<stage>/, logs under logs/<rule>/, per-job benchmarks under
# results/benchmarks/<rule>/.


from snakemake.utils import min_version, validate

from mtdistill import plan

min_version("9.0")


configfile: "config/config.yaml"


# The schema's enums with the names an installed extension registers (mtdistill.plan.schema).
plan.refuse_renamed(config)
with plan.schema_file() as schema:
    validate(config, schema)


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/teacher.smk"
include: "workflow/rules/ct2.smk"
include: "workflow/rules/decode.smk"
include: "workflow/rules/score.smk"
include: "workflow/rules/rerank.smk"
include: "workflow/rules/student.smk"
include: "workflow/rules/retrieval.smk"
include: "workflow/rules/evaluate.smk"


rule all:
    input:
        "results/report.md",
        "results/report.csv",
