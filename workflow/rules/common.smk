import json
import shlex


wildcard_constraints:
    set=r"tune|bitext|mono",
    shard=r"\d+",
    strategy=r"[a-z0-9]+",
    scorer=r"[A-Za-z0-9_]+",
    system=r"teacher|student_[a-z0-9]+",


SCORERS = {scorer["name"]: scorer for scorer in config["scorers"]}
STRATEGIES = config["strategies"]
# Strategies that need the original reference can only label bitext transfer sets.
NEEDS_REFERENCE = {"ref", "seqinter"}
SYSTEMS = ["teacher"] + [f"student_{strategy}" for strategy in STRATEGIES]
TEACHER = "results/models/teacher"


def as_json(value):
    return json.dumps(value, sort_keys=True)


def data_spec():
    return as_json({**config["data"], "seed": config["seed"]})


def num_shards(wildcards):
    return config["decode"]["shards"][wildcards.set]


def nbest_shards(set_name):
    shards = config["decode"]["shards"][set_name]
    return expand(
        "results/nbest/{set}/{shard}.parquet", set=set_name, shard=range(shards)
    )


def feature_shards(set_name):
    shards = config["decode"]["shards"][set_name]
    return expand(
        "results/features/{set}/{scorer}/{shard}.parquet",
        set=set_name,
        scorer=SCORERS,
        shard=range(shards),
    )


def scorer_costs():
    """Cost records of every scoring job in the DAG."""
    return [
        f"results/features/{set_name}/{scorer}/{shard}.cost.json"
        for set_name in ["tune", *config["transfer_sets"]]
        for scorer in SCORERS
        for shard in range(config["decode"]["shards"][set_name])
    ]


def scorer_inputs(wildcards):
    """The n-best shard, its source sentences and, for the teacher scorer, the teacher."""
    inputs = {
        "nbest": f"results/nbest/{wildcards.set}/{wildcards.shard}.parquet",
        "sources": f"results/data/{wildcards.set}.parquet",
    }
    if SCORERS[wildcards.scorer].get("model") == "teacher":
        inputs["model"] = TEACHER
    return inputs


def scorer_model_option(wildcards):
    """--model for neural scorers ("teacher" is the workflow's teacher), nothing otherwise."""
    model = SCORERS[wildcards.scorer].get("model")
    if not model:
        return ""
    path = TEACHER if model == "teacher" else model
    return f"--model {shlex.quote(path)}"


def scorer_option(name):
    def option(wildcards):
        return SCORERS[wildcards.scorer].get(name)

    return option


def scorer_gpus(wildcards):
    return int(SCORERS[wildcards.scorer].get("gpu", False))


def label_sets(strategy):
    """Transfer sets a strategy labels: reference-based strategies only have bitext."""
    sets = config["transfer_sets"]
    return [s for s in sets if s == "bitext" or strategy not in NEEDS_REFERENCE]


def label_inputs(wildcards):
    inputs = {"sentences": f"results/data/{wildcards.set}.parquet"}
    if wildcards.strategy != "ref":
        inputs["nbest"] = nbest_shards(wildcards.set)
    if wildcards.strategy == "rerank":
        inputs["features"] = feature_shards(wildcards.set)
        inputs["weights"] = "results/reranker/weights.json"
    return inputs


def label_options(wildcards, input):
    """--nbest, --features and --weights for the inputs a strategy has."""
    options = []
    for name in ("nbest", "features", "weights"):
        if hasattr(input, name):
            files = getattr(input, name)
            files = [files] if isinstance(files, str) else files
            options.append(f"--{name} {' '.join(files)}")
    return " ".join(options)


def student_labels(wildcards):
    return expand(
        "results/labels/{strategy}/{set}.parquet",
        strategy=wildcards.strategy,
        set=label_sets(wildcards.strategy),
    )


def train_options(section):
    """Training hyper-parameters of config[section]['train'] as command-line options."""
    return " ".join(
        f"--{key.replace('_', '-')} {value}"
        for key, value in config[section]["train"].items()
    )


def student_init_option(wildcards, input):
    """Start students from the teacher's matching tensors when configured."""
    if config["student"]["init_from_teacher"]:
        return f"--init-from-teacher {input.teacher}"
    return ""


def model_dir(system):
    if system == "teacher":
        return TEACHER
    return f"results/models/students/{system.removeprefix('student_')}"


def system_model(wildcards):
    return model_dir(wildcards.system)


def system_strategy(wildcards):
    if wildcards.system == "teacher":
        return "-"
    return wildcards.system.removeprefix("student_")
