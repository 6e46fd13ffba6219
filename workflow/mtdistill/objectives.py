"""Student objectives other than cross-entropy: the keys each one owns, its defaults, named recipes.

One table that the workflow (config checks, command lines) and `distill` both read, so a key an
objective does not use is refused wherever it is given instead of being silently ignored.
"""

from __future__ import annotations

# Objective -> its own hyper-parameters (config key -> default). `distill` has the same defaults.
OBJECTIVE_KEYS = {
    "word_kd": {"alpha": 0.5, "tau": 1.0, "topk": 0},
    "skd": {"k": 25, "gamma": 5, "student_temperature": 0.5, "student_top_p": 0.5,
            "teacher_temperature": 0.2, "teacher_top_p": 0.5},
    "supervised_kd": {},
    "prune": {"prune": 0.5},
}
# Training settings an objective brings that override student.train (a variant's own `train` wins):
# the SKD paper fine-tunes at 1e-5 (Xu et al. 2024, released code).
OBJECTIVE_TRAIN = {"skd": {"lr": 1e-5}, "supervised_kd": {"lr": 1e-5}}
# Keys every variant may have, whatever its objective.
VARIANT_KEYS = {"name", "recipe", "objective", "labels", "init", "train"}

# The papers' named recipes: a variant `{name: ..., recipe: <name>}` gets these keys; its own keys win.
RECIPES = {
    # Kim & Rush (2016) word-level KD: (1 - alpha) NLL + alpha KL on the gold references
    "word_kd": {"objective": "word_kd", "labels": "ref-bitext", "alpha": 0.5},
    # Kim & Rush's Seq-KD + Word-KD: word-level KD on the teacher's beam best
    "seq_kd_word_kd": {"objective": "word_kd", "labels": "top1-bitext", "alpha": 0.5},
    # Xu et al. (2024) supervised KD: the token-level KL on the gold references
    "supervised_kd": {"objective": "supervised_kd", "labels": "ref-bitext"},
    # Xu et al.'s speculative KD and its two limits, fine-tuning a sequence-level KD student
    "skd": {"objective": "skd", "labels": "top1-bitext", "init": "top1-bitext", "k": 25, "gamma": 5},
    "on_policy": {"objective": "skd", "labels": "top1-bitext", "init": "top1-bitext", "k": -1},
    "teacher_generated": {"objective": "skd", "labels": "top1-bitext", "init": "top1-bitext", "k": 0},
}


def expand(variant: dict) -> dict:
    """A variant with its recipe's keys filled in (its own keys win)."""
    recipe = variant.get("recipe")
    if recipe is None:
        return dict(variant)
    if recipe not in RECIPES:
        raise ValueError(f"recipe {recipe!r} is not one of {', '.join(RECIPES)}")
    return {**RECIPES[recipe], **variant}


def unused_keys(variant: dict) -> list[str]:
    """Keys of an (expanded) variant that its objective does not use."""
    own = OBJECTIVE_KEYS[variant["objective"]]
    return [key for key in variant if key not in VARIANT_KEYS and key not in own]


def check(variant: dict, where: str) -> dict:
    """The expanded variant, or a ValueError naming the config key its objective would ignore."""
    try:
        expanded = expand(variant)
    except ValueError as error:
        raise ValueError(f"config key {where}.recipe: {error}") from None
    for key in ("objective", "labels"):
        if key not in expanded:
            raise ValueError(f"config key {where}.{key}: required (or a `recipe` that sets it)")
    if expanded["objective"] not in OBJECTIVE_KEYS:
        raise ValueError(f"config key {where}.objective: {expanded['objective']!r} is not one of {', '.join(OBJECTIVE_KEYS)}")
    unused = unused_keys(expanded)
    if unused:
        raise ValueError(f"config key {where}.{unused[0]}: objective {expanded['objective']} does not use it "
                         f"(its keys: {', '.join(OBJECTIVE_KEYS[expanded['objective']]) or 'none'})")
    return expanded


def train_settings(variant: dict, student_train: dict) -> dict:
    """student.train, then the objective's own settings, then the variant's `train`."""
    return {**student_train, **OBJECTIVE_TRAIN.get(variant["objective"], {}), **variant.get("train", {})}


def options(variant: dict) -> dict:
    """The objective and its hyper-parameters that the variant sets (distill's defaults fill the rest)."""
    own = OBJECTIVE_KEYS[variant["objective"]]
    chosen = {key: value for key, value in variant.items() if key in own and key != "topk"}
    return {"objective": variant["objective"], **chosen}
