"""Training objectives, one class each in the `OBJECTIVES` registry: cross_entropy (the default),
word_kd, skd, supervised_kd, prune and reaugkd (retrieval-augmented KD). A class owns its config
keys and defaults, the training settings it brings, whether it needs the teacher and its
command-line options (see `cross_entropy.CrossEntropy`); an extension is one module that registers
a subclass.

The workflow (config checks, command lines) and `train` read the same classes, so a key an
objective does not use is refused wherever it is given instead of being silently ignored.
"""

from __future__ import annotations

from .base import OBJECTIVES, register  # noqa: F401  (register: what an extension module calls)

# the built-ins register themselves, in this order (cross_entropy, word_kd, skd, supervised_kd, prune, reaugkd)
from . import cross_entropy, word_kd, speculative, prune, reaugkd  # noqa: E402,F401,I001

# Keys every student objective entry may have, whatever its objective.
ENTRY_KEYS = {"name", "recipe", "objective", "labels", "init", "train"}

# The papers' named recipes: an entry `{name: ..., recipe: <name>}` gets these keys; its own keys win.
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


def expand(entry: dict) -> dict:
    """An entry with its recipe's keys filled in (its own keys win)."""
    recipe = entry.get("recipe")
    if recipe is None:
        return dict(entry)
    if recipe not in RECIPES:
        raise ValueError(f"recipe {recipe!r} is not one of {', '.join(RECIPES)}")
    return {**RECIPES[recipe], **entry}


def unused_keys(entry: dict) -> list[str]:
    """Keys of an (expanded) entry that its objective does not use."""
    own = OBJECTIVES[entry["objective"]].keys
    return [key for key in entry if key not in ENTRY_KEYS and key not in own]


def check(entry: dict, where: str) -> dict:
    """The expanded entry, or a ValueError naming the config key its objective would ignore."""
    try:
        expanded = expand(entry)
    except ValueError as error:
        raise ValueError(f"config key {where}.recipe: {error}") from None
    for key in ("objective", "labels"):
        if key not in expanded:
            raise ValueError(f"config key {where}.{key}: required (or a `recipe` that sets it)")
    if expanded["objective"] not in OBJECTIVES:
        raise ValueError(f"config key {where}.objective: {expanded['objective']!r} is not one of {', '.join(OBJECTIVES)}")
    unused = unused_keys(expanded)
    if unused:
        raise ValueError(f"config key {where}.{unused[0]}: objective {expanded['objective']} does not use it "
                         f"(its keys: {', '.join(OBJECTIVES[expanded['objective']].keys) or 'none'})")
    return expanded


def train_settings(entry: dict, student_train: dict) -> dict:
    """student.train, then the objective's own settings, then the entry's `train`."""
    return {**student_train, **OBJECTIVES[entry["objective"]].train, **entry.get("train", {})}


def options(entry: dict) -> dict:
    """The objective and its hyper-parameters that the entry sets (the objective's defaults fill the rest)."""
    own = OBJECTIVES[entry["objective"]].option_keys()
    chosen = {key: value for key, value in entry.items() if key in own}
    return {"objective": entry["objective"], **chosen}
