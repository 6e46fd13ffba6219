import json
import shlex


wildcard_constraints:
    set=r"tune|bitext|mono",
    shard=r"\d+",
    strategy=r"[a-z0-9]+",
    scorer=r"[A-Za-z0-9_]+",
    system=r"teacher|student_[a-z0-9]+",
    helper=r"r2l|backward|lm",
    direction=r"l2r|r2l",


SCORERS = {scorer["name"]: scorer for scorer in config["scorers"]}
SETS = ["tune", *config["transfer_sets"]]
# Models the workflow trains (or takes from `pretrained`) besides the teacher and students.
HELPERS = ("r2l", "backward", "lm")
# Decoders whose n-best lists are merged; the first one's ranking leads (hyp_id 0 = its best).
DIRECTIONS = ["l2r", "r2l"] if config["r2l"]["decode"] else ["l2r"]
MODEL_KINDS = {"forced_decoding", "r2l", "backward", "lm", "comet"}
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


def helper_model(name):
    """Path of a model the config names: the workflow's teacher or helper, or a given path/id."""
    if name == "teacher":
        return TEACHER
    if name in HELPERS:
        return config[name]["pretrained"] or f"results/models/{name}"
    return name


def built_here(name):
    """Whether a rule of this workflow produces the model `name` refers to."""
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


def decoder_model(wildcards):
    return helper_model("teacher" if wildcards.direction == "l2r" else "r2l")


def r2l_option(wildcards):
    return "--r2l" if wildcards.direction == "r2l" else ""


def decoder_inputs(wildcards):
    inputs = {"sentences": f"results/data/{wildcards.set}.parquet"}
    if built_here("teacher" if wildcards.direction == "l2r" else "r2l"):
        inputs["model"] = decoder_model(wildcards)
    return inputs


def direction_nbest(wildcards):
    return {
        direction: f"results/nbest/{wildcards.set}/{direction}/{wildcards.shard}.parquet"
        for direction in DIRECTIONS
    }


def merge_options(wildcards, input):
    return " ".join(f"{direction}={input[direction]}" for direction in DIRECTIONS)


def scorer_sets(name):
    return SCORERS[name].get("sets") or SETS


def reranker_scorers():
    """Scorers that run on every set: only their features can rank transfer hypotheses."""
    return [name for name in SCORERS if set(SETS) <= set(scorer_sets(name))]


def nbest_shards(set_name):
    shards = config["decode"]["shards"][set_name]
    return expand(
        "results/nbest/{set}/{shard}.parquet", set=set_name, shard=range(shards)
    )


def feature_shards(set_name, scorers=None):
    """Feature tables of a set: every scorer that runs on it, or the given ones."""
    return [
        f"results/features/{set_name}/{scorer}/{shard}.parquet"
        for scorer in (scorers or SCORERS)
        if set_name in scorer_sets(scorer)
        for shard in range(config["decode"]["shards"][set_name])
    ]


def reranker_features(set_name):
    return feature_shards(set_name, reranker_scorers())


def scorer_costs():
    """Cost records of every scoring job in the DAG."""
    return [
        path.replace(".parquet", ".cost.json")
        for s in SETS
        for path in feature_shards(s)
    ]


def scorer_inputs(wildcards):
    """The n-best shard, its sentences and the scorer's model when this workflow builds it."""
    inputs = {
        "nbest": f"results/nbest/{wildcards.set}/{wildcards.shard}.parquet",
        "sources": f"results/data/{wildcards.set}.parquet",
    }
    model = SCORERS[wildcards.scorer].get("model")
    if model and built_here(model):
        inputs["model"] = helper_model(model)
    return inputs


def scorer_model_option(wildcards):
    """--model (and --encoder) for scorers that name one; workflow models by their role name."""
    scorer = SCORERS[wildcards.scorer]
    options = [
        f"--{key} {shlex.quote(helper_model(scorer[key]) if key == 'model' else scorer[key])}"
        for key in ("model", "encoder")
        if scorer.get(key)
    ]
    return " ".join(options)


def scorer_option(name):
    def option(wildcards):
        return SCORERS[wildcards.scorer].get(name)

    return option


def check_scorers():
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


check_scorers()


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
        inputs["features"] = reranker_features(wildcards.set)
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


def cli_options(values):
    return " ".join(
        f"--{key.replace('_', '-')} {value}" for key, value in values.items()
    )


def train_options(section):
    """Training hyper-parameters of config[section]['train'] as command-line options."""
    return cli_options(config[section]["train"])


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
