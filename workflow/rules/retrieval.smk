# Retrieval-augmented KD (ReAugKD, token level): the teacher knowledge base on a student's labels,
# built for the objective students that learn from it (objective reaugkd), and the kNN mixing weight
# those students decode with, tuned on dev.


# The teacher's projection head into the key space (the students' width), trained with a
# token-level supervised contrastive loss on a sample of the labels.
rule kb_projection:
    input:
        unpack(kb_projection_inputs),
    output:
        "results/round{round}/kb/{labels}/projection.pt",
    log:
        "logs/kb_projection/round{round}/{labels}.log",
    benchmark:
        "results/benchmarks/kb_projection/round{round}/{labels}.tsv"
    conda:
        "../../envs/mtdistill.yaml"
    threads: job_threads("kb_projection")
    resources:
        **job_resources("kb_projection"),
    params:
        options=PLAN.kb_projection_options(),
        seed=config["seed"],
    shell:
        "python -m mtdistill.kb_projection --teacher {input.teacher} --labels {input.labels}"
        " {params.options} --seed {params.seed} --threads {threads} --out {output} > {log} 2>&1"


# One shard of the knowledge base: keys and values of every label position, a FAISS index.
rule build_kb:
    input:
        unpack(build_kb_inputs),
    output:
        directory("results/round{round}/kb/{labels}/{set}.{shard}"),
    log:
        "logs/build_kb/round{round}/{labels}/{set}.{shard}.log",
    benchmark:
        "results/benchmarks/build_kb/round{round}/{labels}/{set}.{shard}.tsv"
    conda:
        "../../envs/mtdistill.yaml"
    threads: job_threads("build_kb")
    resources:
        **job_resources("build_kb"),
    params:
        options=build_kb_options,
        seed=config["seed"],
    shell:
        "python -m mtdistill.build_kb --teacher {input.teacher} --projection {input.projection}"
        " --labels {input.labels} --shard {wildcards.shard} {params.options}"
        " --seed {params.seed} --threads {threads} --out {output} > {log} 2>&1"


# The kNN mixing weight beta of a retrieval-augmented student: greedy dev BLEU over its grid.
rule tune_retrieval:
    input:
        unpack(retrieval_inputs),
    output:
        "results/round{round}/retrieval/{student}.json",
    log:
        "logs/tune_retrieval/round{round}/{student}.log",
    benchmark:
        "results/benchmarks/tune_retrieval/round{round}/{student}.tsv"
    conda:
        "../../envs/mtdistill.yaml"
    threads: job_threads("tune_retrieval")
    resources:
        **job_resources("tune_retrieval"),
    params:
        options=retrieval_options,
        batch_size=config["evaluation"]["batch_size"],
    shell:
        "python -m mtdistill.tune_retrieval --model {input.model} --kb {input.kb} --dev {input.dev}"
        " {params.options} --batch-size {params.batch_size} --threads {threads}"
        " --out {output} > {log} 2>&1"
