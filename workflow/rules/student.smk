# The students' own SentencePiece vocabulary (student.vocabulary: a teacher whose vocabulary they
# cannot share), one per label set, on its sources and labels; a <system>.seed<N> replica shares it.
rule train_student_tokenizer:
    input:
        labels=tokenizer_labels,
    output:
        directory("results/round{round}/tokenizers/{labels}"),
    log:
        "logs/train_student_tokenizer/round{round}/{labels}.log",
    benchmark:
        "results/benchmarks/train_student_tokenizer/round{round}/{labels}.tsv"
    conda:
        "../../envs/mtdistill.yaml"
    threads: job_threads("train_student_tokenizer")
    resources:
        **job_resources("train_student_tokenizer"),
    params:
        vocab_size=config["student"].get("vocab_size"),
        seed=config["seed"],
    shell:
        "python -m mtdistill.train_tokenizer --train {input.labels} --columns source label"
        " --vocab-size {params.vocab_size} --seed {params.seed} --threads {threads}"
        " --out {output} > {log} 2>&1"


rule train_student:
    input:
        unpack(student_inputs),
    output:
        directory("results/round{round}/students/{system}"),
    log:
        "logs/train_student/round{round}/{system}.log",
    benchmark:
        "results/benchmarks/train_student/round{round}/{system}.tsv"
    # cross-entropy students only (and their seed replicas): objective students have their own rule
    wildcard_constraints:
        system=r"[a-z0-9]+-(bitext|mono|both)(\.seed\d+)?",
    conda:
        "../../envs/mtdistill.yaml"
    threads: job_threads("train_student")
    resources:
        **job_resources("train_student"),
    params:
        launcher=launcher,
        arch=as_json(config["student"]["arch"]),
        options=PLAN.train_options("student"),
        init=PLAN.student_init_option(),
        seed=student_seed,
    shell:
        "{params.launcher} -m mtdistill.train --train {input.labels} --label-column label"
        " --dev {input.dev} --tokenizer {input.tokenizer} --arch {params.arch:q}"
        " {params.init} {params.options} --seed {params.seed} --threads {threads}"
        " --out {output} > {log} 2>&1"


# Word-level KD from a cache: the teacher's top-k next-token log-probs on a student's labels.
rule teacher_topk:
    input:
        unpack(topk_labels),
    output:
        "results/round{round}/topk/{labels}.k{k}.pt",
    log:
        "logs/teacher_topk/round{round}/{labels}.k{k}.log",
    benchmark:
        "results/benchmarks/teacher_topk/round{round}/{labels}.k{k}.tsv"
    conda:
        "../../envs/mtdistill.yaml"
    threads: job_threads("teacher_topk")
    resources:
        **job_resources("teacher_topk"),
    params:
        max_len=PLAN.topk_max_len(),
    shell:
        "python -m mtdistill.teacher_topk --teacher {input.teacher} --train {input.labels}"
        " --k {wildcards.k} --max-len {params.max_len} --threads {threads}"
        " --out {output} > {log} 2>&1"


# SKD acceptance against K (Xu et al.'s K ablation): how many of the student's drafts the teacher
# keeps for each K, from the student an objective student starts from; `k: auto` ones take their K here.
rule skd_acceptance:
    input:
        unpack(acceptance_inputs),
    output:
        "results/round{round}/skd/acceptance.{labels}.json",
    log:
        "logs/skd_acceptance/round{round}/{labels}.log",
    benchmark:
        "results/benchmarks/skd_acceptance/round{round}/{labels}.tsv"
    conda:
        "../../envs/mtdistill.yaml"
    threads: job_threads("skd_acceptance")
    resources:
        **job_resources("skd_acceptance"),
    params:
        k_values=config["student"]["acceptance"]["k_values"],
        sentences=config["student"]["acceptance"]["sentences"],
        lengths=PLAN.length_options(),
        max_len=config["student"]["train"]["max_len"],
        seed=config["seed"],
    shell:
        "python -m mtdistill.skd_acceptance --student {input.student} --teacher {input.teacher}"
        " --labels {input.labels} --k-values {params.k_values} --sentences {params.sentences}"
        " {params.lengths} --max-len {params.max_len} --seed {params.seed} --threads {threads}"
        " --out {output} > {log} 2>&1"


# A student trained with another objective (student.objectives): word-level KD, SKD and its special
# cases, pruning; usually starting from a cross-entropy student.
rule train_objective:
    input:
        unpack(objective_inputs),
    output:
        directory("results/round{round}/students/{student}"),
    log:
        "logs/train_objective/round{round}/{student}.log",
    benchmark:
        "results/benchmarks/train_objective/round{round}/{student}.tsv"
    conda:
        "../../envs/mtdistill.yaml"
    threads: job_threads("train_objective")
    resources:
        **job_resources("train_objective"),
    params:
        launcher=launcher,
        options=objective_options,
        seed=config["seed"],
    shell:
        "{params.launcher} -m mtdistill.train --train {input.labels} --label-column label"
        " --dev {input.dev} {params.options} --seed {params.seed} --threads {threads}"
        " --out {output} > {log} 2>&1"
