rule decode_nbest:
    input:
        unpack(decoder_inputs),
    output:
        "results/round{round}/nbest/{set}/{direction}/{shard}.parquet",
    log:
        "logs/decode_nbest/round{round}/{set}.{direction}.{shard}.log",
    benchmark:
        "results/benchmarks/decode_nbest/round{round}/{set}.{direction}.{shard}.tsv"
    # the reranker's chain (helpers, n-best lists, scores, tuning) is the longest: students wait
    priority: 5
    conda:
        "../../envs/mtdistill.yaml"
    threads: job_threads("decode_nbest")
    resources:
        **job_resources("decode_nbest"),
    params:
        model=decoder_model,
        r2l=r2l_option,
        num_shards=num_shards,
        beam=config["decode"]["beam"],
        nbest=config["decode"]["nbest"],
        batch_size=config["decode"]["batch_size"],
        max_len_a=config["decode"]["max_len_a"],
        max_len_b=config["decode"]["max_len_b"],
        backend=PLAN.backend_option("decode"),
        search=PLAN.search_options(),
    shell:
        "python -m mtdistill.decode --model {params.model:q} {params.r2l} {params.backend} {params.search}"
        " --input {input.sentences}"
        " --shard {wildcards.shard} --num-shards {params.num_shards}"
        " --beam {params.beam} --nbest {params.nbest} --batch-size {params.batch_size}"
        " --max-len-a {params.max_len_a} --max-len-b {params.max_len_b}"
        " --threads {threads} --out {output} > {log} 2>&1"


rule merge_nbest:
    input:
        unpack(direction_nbest),
    output:
        "results/round{round}/nbest/{set}/{shard}.parquet",
    log:
        "logs/merge_nbest/round{round}/{set}.{shard}.log",
    benchmark:
        "results/benchmarks/merge_nbest/round{round}/{set}.{shard}.tsv"
    # the reranker's chain (helpers, n-best lists, scores, tuning) is the longest: students wait
    priority: 5
    conda:
        "../../envs/mtdistill.yaml"
    threads: job_threads("merge_nbest")
    resources:
        **job_resources("merge_nbest"),
    params:
        nbest=merge_options,
    shell:
        "python -m mtdistill.merge_nbest --nbest {params.nbest} --out {output} > {log} 2>&1"
