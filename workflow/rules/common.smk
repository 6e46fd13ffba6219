# The rules' wiring: wildcards, job resources and one-line input functions over mtdistill.plan,
# which holds the path layout, model roles, option building and config checks (tested in Python).
import json
import re

from snakemake.settings.types import DeploymentMethod

from mtdistill import plan
from mtdistill.plan import TEACHER, as_json

PLAN = plan.Plan(config)
PLAN.check()


def deploys_conda():
    """Whether the rules run in their conda environments (--sdm conda)."""
    settings = workflow.deployment_settings
    return settings is not None and DeploymentMethod.CONDA in settings.deployment_method


# The interpreter of the rules that run COMET (its own environment; refused now if it is missing).
COMET_PYTHON = PLAN.comet_python(deploys_conda(), workflow.basedir)
# Students trained with another objective than cross-entropy (student.objectives).
OBJECTIVE_STUDENTS = "|".join(PLAN.objective_students) or "(?!)"
# Retrieval-augmented students evaluated with their knowledge base (<student>.knn).
RETRIEVAL_SYSTEMS = "|".join(map(re.escape, PLAN.retrieval_systems)) or "(?!)"


wildcard_constraints:
    set=r"tune|dev|bitext|mono",
    shard=r"\d+",
    round=r"\d+",
    strategy=r"[a-z0-9]+",
    scorer=r"[A-Za-z0-9_]+",
    system=rf"teacher|[a-z0-9]+-(bitext|mono|both)(\.seed\d+)?|{OBJECTIVE_STUDENTS}|{RETRIEVAL_SYSTEMS}",
    student=OBJECTIVE_STUDENTS,
    labels=r"[a-z0-9]+-(bitext|mono|both)",
    helper=r"r2l|backward|lm",
    direction=r"l2r|r2l",
    finetuned=r"teacher|r2l",


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


def input_options(wildcards, input):
    """Every named input as a command-line option, --<name> <files>.

    Jobs whose inputs wait on a checkpoint have none of their named inputs yet in a dry run.
    """
    return " ".join(
        f"--{name.replace('_', '-')} {' '.join([files] if isinstance(files, str) else files)}"
        for name, files in input.items()
    )


def selected_scorers(round):
    """The scorers that rank transfer hypotheses: those the round's reranker kept.

    Which ones is known only once the reranker is tuned (a checkpoint), so no job ever scores a
    transfer shard with a scorer that was not selected."""
    if not config["reranker"]["select"]:
        return PLAN.reranker_scorers()
    weights = checkpoints.tune_reranker.get(round=round).output.weights
    with open(weights) as f:
        return json.load(f)["scorers"]


def report_figure(name, path):
    """A figure as an output `snakemake --report` shows, with its caption."""
    return report(path, caption=f"../report/{name}.rst", category="Figures")


def report_figures():
    return list(map(report_figure, PLAN.figure_names(), PLAN.figure_files()))


# CTranslate2 conversions


def ct2_source(wildcards):
    """The workflow model a conversion reads (none for an external path or id)."""
    if wildcards.model.startswith("external/"):
        return {}
    return {"model": f"results/{wildcards.model}"}


def ct2_source_model(wildcards):
    return PLAN.ct2_source_model(wildcards.model)


# Helpers and self-training


def teacher_import_options(wildcards):
    # a function, so that Snakemake does not read the prompt's {source} as a wildcard
    return PLAN.teacher_import_options()


def helper_inputs(wildcards):
    return PLAN.helper_inputs(wildcards.helper)


def helper_options(wildcards):
    return PLAN.helper_options(wildcards.helper)


def finetune_inputs(wildcards):
    return PLAN.finetune_inputs(wildcards.round, wildcards.finetuned)


def finetune_options(wildcards):
    return PLAN.finetune_options(wildcards.round, wildcards.finetuned)


# Decoding and scoring


def num_shards(wildcards):
    return config["decode"]["shards"][wildcards.set]


def decoder_model(wildcards):
    return PLAN.decoder_model(wildcards.round, wildcards.direction)


def r2l_option(wildcards):
    return "--r2l" if wildcards.direction == "r2l" else ""


def decoder_inputs(wildcards):
    return PLAN.decoder_inputs(wildcards.round, wildcards.set, wildcards.direction)


def direction_nbest(wildcards):
    return PLAN.direction_nbest(wildcards.round, wildcards.set, wildcards.shard)


def merge_options(wildcards):
    return PLAN.merge_options(wildcards.round, wildcards.set, wildcards.shard)


def scorer_inputs(wildcards):
    w = wildcards
    return PLAN.scorer_inputs(w.round, w.set, w.shard, w.scorer)


def scorer_model_option(wildcards):
    return PLAN.scorer_model_option(wildcards.round, wildcards.scorer)


def scorer_option(name):
    def option(wildcards):
        return PLAN.scorers[wildcards.scorer].get(name)

    return option


def scorer_python(wildcards):
    return PLAN.scorer_python(wildcards.scorer, COMET_PYTHON)


def scorer_env(wildcards):
    return PLAN.scorer_env(wildcards.scorer)


def scorer_gpus(wildcards):
    return int(PLAN.scorers[wildcards.scorer].get("gpu", False))


def round_costs(wildcards):
    return {
        "records": PLAN.scorer_costs(wildcards.round, selected_scorers(wildcards.round))
    }


def selected_features(wildcards):
    """Feature tables of the scorers the round's reranker selected (waits on the checkpoint)."""
    w = wildcards
    return {"records": PLAN.feature_shards(w.round, w.set, selected_scorers(w.round))}


# Reranker and labels


def reranker_inputs(wildcards):
    return PLAN.reranker_inputs(wildcards.round)


def label_inputs(wildcards):
    return PLAN.label_inputs(wildcards.round, wildcards.strategy, wildcards.set)


def mbr_option(wildcards):
    return PLAN.mbr_option(wildcards.strategy)


# Students


def student_inputs(wildcards):
    return PLAN.student_inputs(wildcards.round, wildcards.system)


def tokenizer_labels(wildcards):
    return PLAN.system_labels(wildcards.round, wildcards.labels)


def student_seed(wildcards):
    return PLAN.system_seed(wildcards.system)


def objective_inputs(wildcards):
    return PLAN.objective_inputs(wildcards.round, wildcards.student)


def objective_options(wildcards):
    return PLAN.objective_options(wildcards.round, wildcards.student)


def topk_labels(wildcards):
    return PLAN.topk_labels(wildcards.round, wildcards.labels)


def acceptance_inputs(wildcards):
    return PLAN.acceptance_inputs(wildcards.round, wildcards.labels)


# Retrieval-augmented KD


def kb_projection_inputs(wildcards):
    return PLAN.kb_projection_inputs(wildcards.round, wildcards.labels)


def build_kb_inputs(wildcards):
    return PLAN.build_kb_inputs(wildcards.round, wildcards.labels, wildcards.set)


def build_kb_options(wildcards):
    return PLAN.build_kb_options(wildcards.set)


def retrieval_inputs(wildcards):
    return PLAN.retrieval_inputs(wildcards.round, wildcards.student)


def retrieval_options(wildcards):
    return PLAN.retrieval_options(wildcards.student)


# Evaluation and report


def system_model(wildcards):
    return PLAN.model_of(wildcards.round, wildcards.system)


def evaluate_translator(wildcards):
    return PLAN.evaluate_translator(wildcards.round, wildcards.system)


def evaluate_backend_option(wildcards):
    return PLAN.evaluate_backend_option(wildcards.round, wildcards.system)


def evaluate_retrieval(wildcards):
    return PLAN.evaluate_retrieval(wildcards.round, wildcards.system)


def evaluate_retrieval_option(wildcards):
    return PLAN.evaluate_retrieval_option(wildcards.round, wildcards.system)


def system_strategy(wildcards):
    return PLAN.system_strategy(wildcards.system)


def round_evaluations(wildcards):
    return PLAN.round_evaluations(wildcards.round)


def figure_inputs(wildcards):
    return PLAN.figure_inputs()


def report_inputs(wildcards):
    return PLAN.report_inputs()
