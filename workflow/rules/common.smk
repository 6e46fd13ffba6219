import json
import re
import shlex

from mtdistill import objectives

# Students trained with another objective than cross-entropy (word-level KD, SKD, pruning), with
# their recipes expanded; a key the objective does not use is refused here.
VARIANTS = {
    variant["name"]: objectives.check(variant, f"student.variants[{i}]")
    for i, variant in enumerate(config["student"].get("variants", []))
}
VARIANT_NAMES = "|".join(VARIANTS) or "(?!)"


wildcard_constraints:
    set=r"tune|dev|bitext|mono",
    shard=r"\d+",
    round=r"\d+",
    strategy=r"[a-z0-9]+",
    scorer=r"[A-Za-z0-9_]+",
    system=rf"teacher|[a-z0-9]+-(bitext|mono|both)(\.seed\d+)?|{VARIANT_NAMES}",
    variant=VARIANT_NAMES,
    labels=r"[a-z0-9]+-(bitext|mono|both)",
    helper=r"r2l|backward|lm",
    direction=r"l2r|r2l",
    finetuned=r"teacher|r2l",


SCORERS = {scorer["name"]: scorer for scorer in config["scorers"]}
# The reranker is tuned on `tune` and diagnosed on `dev`; the transfer sets get labels.
HELD_OUT = ["tune", "dev"]
TRANSFER = config["transfer_sets"]
SETS = HELD_OUT + TRANSFER
# Models the workflow trains (or takes from `pretrained`) besides the teacher and students.
HELPERS = ("r2l", "backward", "lm")
# Decoders whose n-best lists are merged; the first one's ranking leads (hyp_id 0 = its best).
DIRECTIONS = ["l2r", "r2l"] if config["r2l"]["decode"] else ["l2r"]
# Self-training rounds fine-tune the decoders on the previous round's labels.
FINETUNED = ["teacher", "r2l"] if config["r2l"]["decode"] else ["teacher"]
ROUNDS = list(range(config["self_training"]["rounds"]))
LAST_ROUND = ROUNDS[-1]
MODEL_KINDS = {"forced_decoding", "r2l", "backward", "lm", "comet"}
# Strategies that need the original reference can only label bitext transfer sets.
NEEDS_REFERENCE = {"ref", "seqinter"}
# A student learns from the labels of one strategy on bitext, mono or both transfer sets.
COMPOSITIONS = {"bitext": ["bitext"], "mono": ["mono"], "both": ["bitext", "mono"]}
STUDENTS = config["student"]["systems"]
# Students trained again with other seeds (seed spread): <system>.seed<N> beside <system>.
REPLICAS = [
    f"{system}.seed{seed}"
    for system in config["student"]["replicas"]["systems"]
    for seed in config["student"]["replicas"]["seeds"]
]
TEACHER = "results/models/teacher"
MBR_SCORERS = [name for name, s in SCORERS.items() if s["kind"] == "mbr"]
# Scorer kinds a seq2seq model computes, with either backend (backend.score).
SEQ2SEQ_KINDS = {"forced_decoding", "r2l", "backward"}


def job_settings(rule):
    """threads, gpu, mem_mb and runtime of a rule's jobs: config resources.<rule> over resources.default."""
    return {**config["resources"]["default"], **config["resources"].get(rule, {})}


def job_threads(rule):
    return job_settings(rule)["threads"]


def job_resources(rule, **fixed):
    """A rule's `resources:` from the config; a profile's set-resources still overrides them."""
    settings = {
        key: value for key, value in job_settings(rule).items() if key != "threads"
    }
    return {**settings, **fixed}


def launcher(wildcards, resources):
    """Training on more than one GPU runs one data-parallel process per GPU through torchrun."""
    gpus = int(resources.get("gpu", 0))
    return f"torchrun --standalone --nproc_per_node {gpus}" if gpus > 1 else "python"


def uses_ct2(step):
    """Whether `step` (decode, score, evaluate) runs on CTranslate2 conversions."""
    return config["backend"][step] == "ctranslate2"


def external_name(model):
    """A path or Hugging Face id from the config, as a directory name under results/ct2/external."""
    return re.sub(r"[^A-Za-z0-9]+", "_", model).strip("_")


def external_models():
    """Seq2seq models the config names by path or id: pretrained helpers, scorer models."""
    named = [config[h]["pretrained"] for h in ("r2l", "backward")]
    named += [s["model"] for s in config["scorers"] if s["kind"] in SEQ2SEQ_KINDS]
    roles = {"teacher", "r2l", "backward", "lm"}
    found = {}
    for model in named:
        if model and model not in roles:
            name = external_name(model)
            if found.setdefault(name, model) != model:
                raise ValueError(
                    f"config: {found[name]!r} and {model!r} would share results/ct2/external/{name}"
                )
    return found


def ct2_model(model):
    """Where the CTranslate2 conversion of `model` lives: the results/ tree mirrored under
    results/ct2/, or results/ct2/external/<name> for a path or id from the config."""
    if model.startswith("results/"):
        return f"results/ct2/{model.removeprefix('results/')}"
    return f"results/ct2/external/{external_name(model)}"


def backend_model(step, model):
    """The model directory (or id) `step` loads: `model`, or its CTranslate2 conversion."""
    return ct2_model(model) if uses_ct2(step) else model


def backend_option(step):
    """--backend (and --compute-type) of a decoding or scoring step."""
    if not uses_ct2(step):
        return "--backend hf"
    return f"--backend ctranslate2 --compute-type {config['backend']['compute_type']}"


def ct2_source(wildcards):
    """The workflow model a conversion reads (none for an external path or id)."""
    if wildcards.model.startswith("external/"):
        return {}
    return {"model": f"results/{wildcards.model}"}


def ct2_source_model(wildcards):
    """The Hugging Face model a conversion reads: a workflow model, or a path or id."""
    if wildcards.model.startswith("external/"):
        return external_models()[wildcards.model.removeprefix("external/")]
    return f"results/{wildcards.model}"


def as_json(value):
    return json.dumps(value, sort_keys=True)


def data_spec():
    return as_json({**config["data"], "seed": config["seed"]})


def num_shards(wildcards):
    return config["decode"]["shards"][wildcards.set]


def helper_model(name):
    """Path of a model the config names: the workflow's teacher or helper, or a given path/id."""
    if name == "teacher":
        return TEACHER
    if name in HELPERS:
        return config[name]["pretrained"] or f"results/models/{name}"
    return name


def round_model(name, round):
    """A model as round `round` uses it: the decoders are fine-tuned anew every round after 0."""
    if int(round) > 0 and name in FINETUNED:
        return f"results/round{round}/models/{name}"
    return helper_model(name)


def built_here(name, round=0):
    """Whether a rule of this workflow produces the model `name` refers to."""
    if int(round) > 0 and name in FINETUNED:
        return True
    return name == "teacher" or (name in HELPERS and not config[name]["pretrained"])


def helper_tokenizer():
    """Helpers share the teacher's vocabulary: the trained tokenizer, or the pretrained teacher's."""
    return TEACHER if config["teacher"]["pretrained"] else "results/tokenizer"


def helper_inputs(wildcards):
    inputs = {
        "train": ["results/data/train.parquet"],
        "dev": "results/data/dev.parquet",
        "tokenizer": helper_tokenizer(),
    }
    if wildcards.helper == "lm":
        # target text of training books only
        inputs["train"].append("results/data/lm.parquet")
    if config[wildcards.helper].get("init_from_teacher"):
        inputs["teacher"] = TEACHER
    return inputs


def helper_options(wildcards):
    """Architecture, direction and training options of a helper; teacher.train fills the gaps."""
    helper = config[wildcards.helper]
    train = {**config["teacher"]["train"], **helper["train"], "select_by": "loss"}
    arch = helper.get("arch", config["teacher"]["arch"])
    mode = {
        "r2l": "--direction r2l",
        "backward": "--direction backward",
        "lm": "--task lm",
    }
    init = f"--init-from-teacher {TEACHER}" if helper.get("init_from_teacher") else ""
    return f"{mode[wildcards.helper]} --arch {shlex.quote(as_json(arch))} {init} {cli_options(train)}"


def finetune_inputs(wildcards):
    """The previous round's model and its labels for the fine-tuning strategy."""
    previous = int(wildcards.round) - 1
    inputs = {
        "labels": label_files(previous, config["self_training"]["labels"], TRANSFER),
        "dev": "results/data/dev.parquet",
    }
    if config["self_training"]["mix_bitext"]:
        inputs["mix"] = "results/data/train.parquet"
    model = round_model(wildcards.finetuned, previous)
    if built_here(wildcards.finetuned, previous):
        inputs["model"] = model
    return inputs


def finetune_options(wildcards, input):
    """Start from the previous round's model, optionally beside the original bitext, and keep it
    when no checkpoint beats it on dev (the R2L model by dev loss: its dev BLEU would be reversed).
    """
    previous = int(wildcards.round) - 1
    settings = config["self_training"]
    train = {
        **config["teacher"]["train"],
        **settings["train"],
        "epochs": settings["epochs"],
        "select_by": (
            settings["select_by"] if wildcards.finetuned == "teacher" else "loss"
        ),
    }
    direction = "l2r" if wildcards.finetuned == "teacher" else "r2l"
    model = shlex.quote(round_model(wildcards.finetuned, previous))
    mix = f"--mix {input.mix}" if hasattr(input, "mix") else ""
    keep = "--eval-at-start" if settings["keep_better"] else ""
    return f"--init {model} --direction {direction} {mix} {keep} {cli_options(train)}"


def decoder_name(wildcards):
    return "teacher" if wildcards.direction == "l2r" else "r2l"


def decoder_model(wildcards):
    model = round_model(decoder_name(wildcards), wildcards.round)
    return backend_model("decode", model)


def r2l_option(wildcards):
    return "--r2l" if wildcards.direction == "r2l" else ""


def decoder_inputs(wildcards):
    inputs = {"sentences": f"results/data/{wildcards.set}.parquet"}
    if uses_ct2("decode") or built_here(decoder_name(wildcards), wildcards.round):
        inputs["model"] = decoder_model(wildcards)
    return inputs


def direction_nbest(wildcards):
    return {
        direction: f"results/round{wildcards.round}/nbest/{wildcards.set}/{direction}/{wildcards.shard}.parquet"
        for direction in DIRECTIONS
    }


def merge_options(wildcards, input):
    return " ".join(f"{direction}={input[direction]}" for direction in DIRECTIONS)


def scorer_sets(name):
    return SCORERS[name].get("sets") or SETS


def reranker_scorers():
    """Scorers that run on every set: only their features can rank transfer hypotheses."""
    return [name for name in SCORERS if set(SETS) <= set(scorer_sets(name))]


def nbest_shards(round, set_name):
    return [
        f"results/round{round}/nbest/{set_name}/{shard}.parquet"
        for shard in range(config["decode"]["shards"][set_name])
    ]


def feature_shards(round, set_name, scorers):
    """Feature tables of the given scorers on a set (those that run on it)."""
    return [
        f"results/round{round}/features/{set_name}/{scorer}/{shard}.parquet"
        for scorer in scorers
        if set_name in scorer_sets(scorer)
        for shard in range(config["decode"]["shards"][set_name])
    ]


def selected_scorers(round):
    """The scorers that rank transfer hypotheses: those the round's reranker kept.

    Which ones is known only once the reranker is tuned (a checkpoint), so no job ever scores a
    transfer shard with a scorer that was not selected."""
    if not config["reranker"]["select"]:
        return reranker_scorers()
    weights = checkpoints.tune_reranker.get(round=round).output.weights
    with open(weights) as f:
        return json.load(f)["scorers"]


def set_scorers(round, set_name):
    """Every scorer on the held-out sets; on transfer sets the selected ones (and MBR for its labels)."""
    if set_name in HELD_OUT:
        return list(SCORERS)
    mbr = MBR_SCORERS[:1] if "mbr" in round_strategies(round) else []
    return selected_scorers(round) + [
        name for name in mbr if name not in selected_scorers(round)
    ]


def scorer_costs(round):
    """Cost records of every scoring job of a round."""
    return [
        path.replace(".parquet", ".cost.json")
        for s in SETS
        for path in feature_shards(round, s, dict.fromkeys(set_scorers(round, s)))
    ]


def scorer_inputs(wildcards):
    """The n-best shard, its sentences and the scorer's model when this workflow builds it."""
    inputs = {
        "nbest": f"results/round{wildcards.round}/nbest/{wildcards.set}/{wildcards.shard}.parquet",
        "sources": f"results/data/{wildcards.set}.parquet",
    }
    model = SCORERS[wildcards.scorer].get("model")
    if model and (scorer_uses_ct2(wildcards) or built_here(model, wildcards.round)):
        inputs["model"] = scorer_model(wildcards)
    return inputs


def scorer_uses_ct2(wildcards):
    kind = SCORERS[wildcards.scorer]["kind"]
    return kind in SEQ2SEQ_KINDS and uses_ct2("score")


def scorer_model(wildcards):
    """The model a scorer loads: a workflow model by role name, a path or id, or its conversion."""
    model = round_model(SCORERS[wildcards.scorer]["model"], wildcards.round)
    return ct2_model(model) if scorer_uses_ct2(wildcards) else model


def scorer_model_option(wildcards):
    """--model (and --encoder) for scorers that name one, and the backend of seq2seq kinds."""
    scorer = SCORERS[wildcards.scorer]
    options = [
        f"--{key} {shlex.quote(scorer_model(wildcards) if key == 'model' else scorer[key])}"
        for key in ("model", "encoder")
        if scorer.get(key)
    ]
    if scorer["kind"] in SEQ2SEQ_KINDS:
        options.append(backend_option("score"))
    return " ".join(options)


def scorer_option(name):
    def option(wildcards):
        return SCORERS[wildcards.scorer].get(name)

    return option


def scorer_gpus(wildcards):
    return int(SCORERS[wildcards.scorer].get("gpu", False))


def reranker_inputs(wildcards):
    inputs = {}
    for set_name in HELD_OUT:
        inputs[f"{set_name}_nbest"] = nbest_shards(wildcards.round, set_name)
        inputs[f"{set_name}_features"] = feature_shards(
            wildcards.round, set_name, reranker_scorers()
        )
        inputs[f"{set_name}_references"] = f"results/data/{set_name}.parquet"
    return inputs


def input_options(wildcards, input):
    """Every named input as a command-line option, --<name> <files>.

    Jobs whose inputs wait on a checkpoint have none of their named inputs yet in a dry run.
    """
    return " ".join(
        f"--{name.replace('_', '-')} {' '.join([files] if isinstance(files, str) else files)}"
        for name, files in input.items()
    )


def student_strategies():
    return {system.split("-")[0] for system in STUDENTS}


def round_strategies(round):
    """Label strategies a round must produce: its students' and the next round's fine-tuning labels."""
    strategies = student_strategies() if int(round) in student_rounds() else set()
    if int(round) < LAST_ROUND:
        strategies.add(config["self_training"]["labels"])
    return strategies


def label_files(round, strategy, sets):
    return [f"results/round{round}/labels/{strategy}/{s}.parquet" for s in sets]


def label_inputs(wildcards):
    inputs = {
        "sentences": f"results/data/{wildcards.set}.parquet",
        # ref too: its diagnostics compare the references with the teacher's top-1
        "nbest": nbest_shards(wildcards.round, wildcards.set),
    }
    if wildcards.strategy == "rerank":
        inputs["feature_list"] = selected_features_list(wildcards.round, wildcards.set)
        inputs["weights"] = f"results/round{wildcards.round}/reranker/weights.json"
    if wildcards.strategy == "mbr":
        inputs["features"] = feature_shards(
            wildcards.round, wildcards.set, MBR_SCORERS[:1]
        )
    return inputs


def mbr_option(wildcards):
    if wildcards.strategy != "mbr":
        return ""
    return f"--mbr-feature {MBR_SCORERS[0]}_{config['reranker']['mbr_utility']}"


def label_filter_options():
    """The degenerate-hypothesis filter every n-best strategy applies, and Seq-Inter's candidates."""
    filter = config["labels"]["filter"]
    copies = (
        "--drop-source-copies"
        if filter["drop_source_copies"]
        else "--keep-source-copies"
    )
    values = {k: v for k, v in filter.items() if k != "drop_source_copies"}
    seqinter = {f"seqinter_{k}": v for k, v in config["labels"]["seqinter"].items()}
    return f"{cli_options(values)} {copies} {cli_options(seqinter)}"


def base_system(system):
    """`<strategy>-<transfer>` of a student, without its `.seed<N>` replica suffix."""
    return system.split(".seed")[0]


def system_seed(system):
    """A replica's own seed, else the config's."""
    return int(system.split(".seed")[1]) if ".seed" in system else config["seed"]


def system_labels(round, system):
    """The label files of a student `<strategy>-<transfer>` (or a replica of it)."""
    strategy, transfer = base_system(system).split("-")
    return label_files(round, strategy, COMPOSITIONS[transfer])


def student_labels(wildcards):
    return system_labels(wildcards.round, wildcards.system)


def variant_inputs(wildcards):
    """A variant's labels, the student it starts from, its teacher and its top-k cache."""
    variant = VARIANTS[wildcards.variant]
    inputs = {
        "labels": system_labels(wildcards.round, variant["labels"]),
        "dev": "results/data/dev.parquet",
        "teacher": round_model("teacher", wildcards.round),
    }
    if variant.get("init"):
        inputs["init"] = f"results/round{wildcards.round}/students/{variant['init']}"
    elif config["student"]["init"] != "none":  # as the cross-entropy students start
        inputs["init_teacher"] = TEACHER
    if variant["objective"] == "word_kd" and variant.get("topk"):
        inputs["topk"] = (
            f"results/round{wildcards.round}/topk/{variant['labels']}.k{variant['topk']}.pt"
        )
    if variant.get("k") == "auto":
        inputs["acceptance"] = acceptance_file(wildcards.round, variant["init"])
    return inputs


def acceptance_file(round, student):
    return f"results/round{round}/skd/acceptance.{student}.json"


def acceptance_inputs(wildcards):
    return {
        "student": f"results/round{wildcards.round}/students/{wildcards.labels}",
        "teacher": round_model("teacher", wildcards.round),
        "labels": system_labels(wildcards.round, wildcards.labels),
    }


def length_options():
    """The output length limit of decoding, for every step that generates."""
    return f"--max-len-a {config['decode']['max_len_a']} --max-len-b {config['decode']['max_len_b']}"


def topk_max_len():
    """Tokens per label the top-k cache holds: as many as any student trains on."""
    lengths = [config["student"]["train"]["max_len"]]
    lengths += [v.get("train", {}).get("max_len", 0) for v in VARIANTS.values()]
    return max(lengths)


def variant_options(wildcards, input):
    """The objective and its hyper-parameters; the variant's `train` overrides student.train."""
    variant = VARIANTS[wildcards.variant]
    train = objectives.train_settings(variant, config["student"]["train"])
    options = objectives.options(variant)
    if hasattr(input, "init"):
        start = f"--init {input.init}"
    else:  # built like the cross-entropy students
        arch = shlex.quote(as_json(config["student"]["arch"]))
        start = f"--tokenizer {input.teacher} --arch {arch}"
        if hasattr(input, "init_teacher"):
            start += f" --init-from-teacher {input.init_teacher} --init-layers {config['student']['init']}"
    topk = f"--topk {input.topk}" if hasattr(input, "topk") else ""
    acceptance = (
        f"--acceptance {input.acceptance}" if hasattr(input, "acceptance") else ""
    )
    generation = length_options() if variant["objective"] == "skd" else ""
    return (
        f"{start} --teacher {input.teacher} {topk} {acceptance} {generation}"
        f" {cli_options({**options, **train})}"
    )


def topk_labels(wildcards):
    return {
        "labels": system_labels(wildcards.round, wildcards.labels),
        "teacher": round_model("teacher", wildcards.round),
    }


def cli_options(values):
    return " ".join(
        f"--{key.replace('_', '-')} {value}" for key, value in values.items()
    )


def train_options(section):
    """Training hyper-parameters of config[section]['train'] as command-line options."""
    return cli_options(config[section]["train"])


def student_init_option(wildcards, input):
    """From scratch, or from the teacher's embeddings and its bottom or spaced layers (student.init)."""
    if config["student"]["init"] == "none":
        return ""
    return (
        f"--init-from-teacher {input.teacher} --init-layers {config['student']['init']}"
    )


def student_seed(wildcards):
    return system_seed(wildcards.system)


def student_rounds():
    return ROUNDS if config["student"]["every_round"] else [LAST_ROUND]


def model_of(round, system):
    if system == "teacher":
        return round_model("teacher", round)
    return f"results/round{round}/students/{system}"


def variant_strategy(name):
    variant = VARIANTS[name]
    return f"{variant['labels'].split('-')[0]}+{variant['objective']}"


def system_model(wildcards):
    return model_of(wildcards.round, wildcards.system)


def evaluate_translator(wildcards):
    """The CTranslate2 conversion evaluation decodes with (backend.evaluate), else none."""
    return ct2_model(system_model(wildcards)) if uses_ct2("evaluate") else []


def evaluate_backend_option(wildcards, input):
    """--backend ctranslate2 --translator <dir> when evaluation decodes with CTranslate2."""
    if not uses_ct2("evaluate"):
        return ""
    return f"{backend_option('evaluate')} --translator {input.translator}"


def system_strategy(wildcards):
    if wildcards.system == "teacher":
        return "-"
    if wildcards.system in VARIANTS:
        return variant_strategy(wildcards.system)
    return base_system(wildcards.system).split("-")[0]


def evaluated_systems():
    """(round, system): the teacher of every round, the students of the rounds they train on."""
    return [(r, "teacher") for r in ROUNDS] + [
        (r, system)
        for r in student_rounds()
        for system in [*STUDENTS, *REPLICAS, *VARIANTS]
    ]


def comet_options(wildcards):
    """--comet (and --comet-encoder) when evaluation.comet names a checkpoint."""
    return " ".join(
        f"--{key.replace('_', '-')} {shlex.quote(config['evaluation'][key])}"
        for key in ("comet", "comet_encoder")
        if config["evaluation"]["comet"] and config["evaluation"][key]
    )


def comparisons():
    """(system, baseline) pairs the paired bootstrap tests: evaluation.comparisons, else every
    system against the sequence-level KD student."""
    configured = config["evaluation"]["comparisons"]
    if configured:
        return [(pair["system"], pair["baseline"]) for pair in configured]
    systems = ["teacher", *STUDENTS, *REPLICAS, *VARIANTS]
    return [(system, kd_baseline()) for system in systems if system != kd_baseline()]


def comparison_options():
    return " ".join(f"{system}:{baseline}" for system, baseline in comparisons())


def kd_baseline():
    """The sequence-level KD student the others are tested against: top1-both, else the first top1 one."""
    top1 = [system for system in STUDENTS if system.split("-")[0] == "top1"]
    if "top1-both" in top1:
        return "top1-both"
    return (top1 or STUDENTS)[0]


def round_evaluations(wildcards):
    """Evaluations of every system of a round (teacher, students, variants) and the test set."""
    return {
        "evaluations": [
            f"results/round{r}/eval/{s}.json"
            for r, s in evaluated_systems()
            if r == int(wildcards.round)
        ],
        "test": "results/data/test.parquet",
    }


def evaluation_files():
    return [f"results/round{r}/eval/{s}.json" for r, s in evaluated_systems()]


def diagnostics_files():
    return [f"results/round{r}/reranker/diagnostics.json" for r in ROUNDS]


def significance_files():
    """Paired bootstrap against the KD baseline, in the rounds that train students."""
    return [f"results/round{r}/eval/significance.json" for r in student_rounds()]


def report_inputs(wildcards):
    systems = evaluated_systems()
    return {
        "evaluations": evaluation_files(),
        "models": [model_of(r, s) for r, s in systems],
        "diagnostics": diagnostics_files(),
        "costs": [f"results/round{r}/features/costs.json" for r in ROUNDS],
        "significance": significance_files(),
        "figures": figure_files(),
        "acceptance": acceptance_files(),
        "labels": label_diagnostics_files(),
    }


def acceptance_files():
    """The SKD acceptance sweeps of the rounds that train students (variants with `k: auto`)."""
    students = {v["init"] for v in VARIANTS.values() if v.get("k") == "auto"}
    return [acceptance_file(r, s) for r in student_rounds() for s in sorted(students)]


def label_diagnostics_files():
    """Diagnostics of every label file a student of `systems` learns from."""
    files = [
        path.replace(".parquet", ".json")
        for r in student_rounds()
        for system in STUDENTS
        for path in system_labels(r, system)
    ]
    return list(dict.fromkeys(files))


def report_options():
    """The report's note line and the names of its findings."""
    findings = as_json(config["evaluation"]["comparisons"])
    return f"--note {shlex.quote(config['evaluation']['note'])} --findings {shlex.quote(findings)}"


def figure_names():
    """The report's figures (mtdistill.figures); SKD acceptance only if a variant drafts tokens."""
    names = [
        "bleu_ci",
        "teacher_gap",
        "reranker_weights",
        "reranker_gap",
        "training_curves",
        "label_diagnostics",
    ]
    if any(variant["objective"] == "skd" for variant in VARIANTS.values()):
        names.append("skd_acceptance")
    return names


def figure_files():
    return [f"results/figures/{name}.png" for name in figure_names()]


def report_figure(name):
    """A figure as an output `snakemake --report` shows, with its caption."""
    path = f"results/figures/{name}.png"
    return report(path, caption=f"../report/{name}.rst", category="Figures")


def report_figures():
    return [report_figure(name) for name in figure_names()]


def helpers_in_use():
    """Helper models a rule trains because decoding or a scorer uses them."""
    used = {scorer.get("model") for scorer in config["scorers"]}
    if config["r2l"]["decode"]:
        used.add("r2l")
    return [name for name in HELPERS if name in used and built_here(name)]


def trained_models():
    """Every model the workflow builds: teacher, helpers in use, fine-tuned decoders, students."""
    finetuned = [round_model(name, r) for r in ROUNDS[1:] for name in FINETUNED]
    students = [model_of(r, s) for r, s in evaluated_systems() if s != "teacher"]
    return [TEACHER, *map(helper_model, helpers_in_use()), *finetuned, *students]


def figure_inputs(wildcards):
    return {
        "evaluations": evaluation_files(),
        "significance": significance_files(),
        "diagnostics": diagnostics_files(),
        "models": trained_models(),
        "labels": label_diagnostics_files(),
    }


def round_costs(wildcards):
    return {"records": scorer_costs(wildcards.round)}


def selected_features_list(round, set_name):
    return f"results/round{round}/features/{set_name}/selected.json"


def selected_features(wildcards):
    """Feature tables of the scorers the round's reranker selected (waits on the checkpoint)."""
    return {
        "records": feature_shards(
            wildcards.round, wildcards.set, selected_scorers(wildcards.round)
        )
    }


def check_config():
    """Errors a schema cannot express, each naming its config key."""
    for i, scorer in enumerate(config["scorers"]):
        if scorer["kind"] in MODEL_KINDS and not scorer.get("model"):
            raise ValueError(
                f"config key scorers[{i}] ({scorer['name']}): kind {scorer['kind']} needs `model`"
            )
        if (
            scorer["kind"] == "lm"
            and scorer.get("model") == "lm"
            and "arch" not in config["lm"]
        ):
            raise ValueError(
                f"config key lm.arch: scorer {scorer['name']} uses the workflow's LM"
            )
    if len(SCORERS) < len(config["scorers"]):
        raise ValueError("config key scorers: scorer names must be unique")
    if not reranker_scorers():
        raise ValueError(
            "config key scorers: no scorer runs on every set, so nothing can rerank"
        )
    for i, system in enumerate(STUDENTS):
        strategy, transfer = system.split("-")
        missing = set(COMPOSITIONS[transfer]) - set(TRANSFER)
        if missing:
            raise ValueError(
                f"config key student.systems[{i}] ({system}): transfer set {', '.join(missing)} not in transfer_sets"
            )
        if strategy in NEEDS_REFERENCE and transfer != "bitext":
            raise ValueError(
                f"config key student.systems[{i}] ({system}): strategy {strategy} needs references, so bitext only"
            )
    for i, variant in enumerate(VARIANTS.values()):
        for key in ("labels", "init"):
            if variant.get(key) and variant[key] not in STUDENTS:
                raise ValueError(
                    f"config key student.variants[{i}].{key} ({variant['name']}): {variant[key]} is not in student.systems"
                )
        if variant.get("k") == "auto" and not variant.get("init"):
            raise ValueError(
                f"config key student.variants[{i}].k ({variant['name']}): auto measures acceptance on the `init` student; set init"
            )
    for i, system in enumerate(config["student"]["replicas"]["systems"]):
        if system not in STUDENTS:
            raise ValueError(
                f"config key student.replicas.systems[{i}]: {system} is not in student.systems"
            )
    known = {"teacher", *STUDENTS, *REPLICAS, *VARIANTS}
    for i, pair in enumerate(config["evaluation"]["comparisons"]):
        for key in ("system", "baseline"):
            if pair[key] not in known:
                raise ValueError(
                    f"config key evaluation.comparisons[{i}].{key}: {pair[key]} is not a system of this run"
                )
    if (
        "mbr" in student_strategies() | {config["self_training"]["labels"]}
        and not MBR_SCORERS
    ):
        raise ValueError(
            "config key student.systems: strategy mbr needs a scorer of kind mbr"
        )


check_config()
