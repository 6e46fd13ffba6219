rule decode_nbest:
    input:
        model=TEACHER,
        sentences="results/data/{set}.parquet",
    output:
        "results/nbest/{set}/{shard}.parquet",
    log:
        "logs/decode_nbest/{set}.{shard}.log",
    benchmark:
        "results/benchmarks/decode_nbest/{set}.{shard}.tsv"
    conda:
        "../../envs/mtdistill.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        num_shards=num_shards,
        beam=config["decode"]["beam"],
        nbest=config["decode"]["nbest"],
        batch_size=config["decode"]["batch_size"],
        max_len_a=config["decode"]["max_len_a"],
        max_len_b=config["decode"]["max_len_b"],
    shell:
        "python -m mtdistill.decode --model {input.model} --input {input.sentences}"
        " --shard {wildcards.shard} --num-shards {params.num_shards}"
        " --beam {params.beam} --nbest {params.nbest} --batch-size {params.batch_size}"
        " --max-len-a {params.max_len_a} --max-len-b {params.max_len_b}"
        " --threads {threads} --out {output} > {log} 2>&1"
