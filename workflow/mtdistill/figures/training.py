"""Figures of training: dev loss and BLEU per step of every model, and the speculative KD acceptance rate."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.io import InputError
from ..training import record
from .drawing import FIGURES, colour, new_figure, register, require, save

log = logging.getLogger("mtdistill")
TEACHER_GROUP, STUDENT_GROUP = "teacher and helpers", "students"


def model_label(path) -> tuple[str, str, int | None]:
    """(group, name, round) of a model directory: results/models/<name>, results/round<r>/models/<name>
    (a decoder fine-tuned in self-training round r) or results/round<r>/students/<name>."""
    path = Path(path)
    round_ = next((int(part[5:]) for part in path.parts if re.fullmatch(r"round\d+", part)), None)
    if path.parent.name == "students":
        return STUDENT_GROUP, path.name, round_
    if round_ is not None:
        return TEACHER_GROUP, f"{path.name} (fine-tuned, round {round_})", round_
    return TEACHER_GROUP, path.name, None


@register("training_curves", "Training curves: dev loss and dev BLEU per step", ("trainings",))
def training_curves(trainings: list[tuple[str, str, dict]], out) -> pd.DataFrame:
    """Dev loss (and dev BLEU where recorded) per step of every (group, label, training.json); the circle marks
    the step each run kept."""
    rows = [{"group": group, "model": label, "step": h["step"], "dev_loss": h.get("dev_loss", np.nan),
             "dev_bleu": h.get("dev_bleu", np.nan), "kept": h["step"] == record.best_step(training)}
            for group, label, training in trainings for h in record.history(training)]
    table = pd.DataFrame(rows, columns=["group", "model", "step", "dev_loss", "dev_bleu", "kept"])

    panels = [(group, "dev_loss") for group in (TEACHER_GROUP, STUDENT_GROUP) if (table.group == group).any()]
    panels += [(None, "dev_bleu")] if table.dev_bleu.notna().any() else []
    figure, axes = new_figure(1, max(len(panels), 1), (5.2 * max(len(panels), 1), 4.5))
    models = list(dict.fromkeys(table.model))
    for ax, (group, column) in zip(axes[0], panels):
        part = table[(table.group == group) if group else table[column].notna()]
        for model in dict.fromkeys(part.model):
            curve = part[(part.model == model) & part[column].notna()]
            hue = colour(models.index(model))
            ax.plot(curve.step, curve[column], marker="o", ms=3, lw=1.2, color=hue, label=model)
            kept = curve[curve.kept]
            ax.plot(kept.step, kept[column], ls="none", marker="o", ms=9, mfc="none", color=hue)
        what = "dev loss (per target token)" if column == "dev_loss" else "dev BLEU (greedy)"
        ax.set_title(f"{group}: {what}" if group else what, fontsize=9)
        ax.set_xlabel("training step")
        ax.set_ylabel(what)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="best")
    figure.suptitle(FIGURES["training_curves"].title + " (circles: the kept checkpoint)", fontsize=11)
    save(figure, out)
    return table


@register("skd_acceptance", "Speculative KD acceptance rate per step", ("trainings",))
def skd_acceptance(trainings: list[tuple[str, str, dict]], out) -> pd.DataFrame:
    """Per step, the fraction of generated tokens the student drafted and the teacher kept, for every model
    trained with speculative KD; the thick line is a moving average over a twentieth of the steps."""
    curves = [(label, record.acceptance(training)) for _, label, training in trainings
              if record.acceptance(training)]
    if not curves:
        raise InputError("--models: no training.json has acceptance_per_step (no speculative KD student)")
    rows = []
    for label, rates in curves:
        window = max(1, len(rates) // 20)
        smoothed = pd.Series(rates, dtype=float).rolling(window, min_periods=1).mean()
        rows += [{"model": label, "step": step, "acceptance": rate, "smoothed": smooth}
                 for step, (rate, smooth) in enumerate(zip(rates, smoothed), 1)]
    table = pd.DataFrame(rows, columns=["model", "step", "acceptance", "smoothed"])

    figure, axes = new_figure(1, 1, (7, 4))
    ax = axes[0, 0]
    for i, (label, _) in enumerate(curves):
        curve = table[table.model == label]
        ax.plot(curve.step, curve.acceptance, lw=0.6, alpha=0.35, color=colour(i))
        ax.plot(curve.step, curve.smoothed, lw=2, color=colour(i),
                label=f"{label} (mean {curve.acceptance.mean():.2f})")
    ax.set(xlabel="training step", ylabel="student tokens kept / generated", ylim=(-0.02, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title(FIGURES["skd_acceptance"].title, fontsize=11)
    save(figure, out)
    return table


def load_trainings(model_dirs) -> list[tuple[str, str, dict]]:
    """(group, label, training.json) of every model directory that has one (an imported teacher has none)."""
    found = []
    for path in model_dirs:
        training = record.read(path)
        if training is None:
            log.info("%s: no training.json, no training curve", path)
            continue
        found.append((*model_label(path), require(training, ("history",), record.path(path))))
    several = len({round_ for group, _, round_, _ in found if group == STUDENT_GROUP}) > 1
    return [(group, f"{name} (round {round_})" if several and group == STUDENT_GROUP else name, training)
            for group, name, round_, training in found]
