"""Figures of the test-set evaluation: BLEU with confidence intervals per system, the teacher-student gap."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..core.io import InputError, read_json
from .drawing import DECODINGS, FIGURES, METRICS, bar_note, legend_below, new_figure, register, require, save


@register("bleu_ci", "Test BLEU per system with 95% confidence intervals", ("evaluations", "significance"))
def bleu_ci(evaluations: list[dict], significance: list[dict], out) -> pd.DataFrame:
    """BLEU per system and round: the paired-bootstrap 95% CI where significance was computed, else plain
    beam-search BLEU. A dashed line marks the teacher when the comparison leaves it out."""
    by_round = {sig["round"]: sig for sig in significance}
    student_rounds = {ev["round"] for ev in evaluations if ev["system"] != "teacher"}
    rounds = sorted(set(by_round) | student_rounds) or sorted({ev["round"] for ev in evaluations})
    rows = []
    for round_ in rounds:
        sig = by_round.get(round_)
        if sig:
            for system, scores in sig["systems"].items():
                bleu = scores["bleu"]
                lo, hi = bleu.get("ci") or (np.nan, np.nan)
                rows.append({"round": round_, "system": system, "bleu": bleu["score"], "ci_low": lo, "ci_high": hi,
                             "p_value": bleu.get("p_value"), "baseline": system == sig.get("baseline")})
        else:
            rows += [{"round": round_, "system": ev["system"], "bleu": ev["beam"]["bleu"], "ci_low": np.nan,
                      "ci_high": np.nan, "p_value": None, "baseline": False}
                     for ev in evaluations if ev["round"] == round_]
    table = pd.DataFrame(rows, columns=["round", "system", "bleu", "ci_low", "ci_high", "p_value", "baseline"])
    teachers = {ev["round"]: ev["beam"]["bleu"] for ev in evaluations if ev["system"] == "teacher"}

    heights = [max(1, (table["round"] == r).sum()) for r in rounds]
    figure, axes = new_figure(len(rounds), 1, (7, max(3.0, 1.4 + 0.4 * sum(heights))), height_ratios=heights)
    for ax, round_ in zip(axes[:, 0], rounds):
        part = table[table["round"] == round_].reset_index(drop=True)
        y = np.arange(len(part))
        has_ci = part.ci_low.notna()
        significant = pd.to_numeric(part.p_value) < 0.05  # the baseline's p is None: not significant
        colours = np.where(part.baseline, "tab:gray", np.where(significant, "tab:blue", "lightsteelblue"))
        colours[(part.system == "teacher").to_numpy()] = "darkslategray"
        ax.barh(y, part.bleu, color=colours)
        if has_ci.any():  # the interval need not contain the full-sample score: whiskers span it as given
            ax.errorbar((part.ci_low + part.ci_high) / 2, y, xerr=(part.ci_high - part.ci_low) / 2, fmt="none",
                        ecolor="black", elinewidth=1, capsize=3)
        for i, row in part.iterrows():
            note = f"{row.bleu:.2f}" + (f" [{row.ci_low:.2f}, {row.ci_high:.2f}]" if has_ci[i] else "")
            if row.baseline:
                note += " baseline"
            elif pd.notna(row.p_value):
                note += f" p={row.p_value:.3f}"
            bar_note(ax, row.ci_high if has_ci[i] else row.bleu, i, note)
        ax.set_yticks(y, part.system)
        ax.invert_yaxis()
        if round_ in teachers and "teacher" not in set(part.system):
            ax.axvline(teachers[round_], color="black", ls="--", lw=1, label=f"teacher {teachers[round_]:.2f}")
            ax.legend(loc="lower right", fontsize=7)
        sig = by_round.get(round_)
        detail = (f"paired bootstrap, {sig.get('samples', '?')} resamples, p against {sig.get('baseline')}" if sig
                  else "beam search; no significance test in this run")
        ax.set_title(f"Round {round_}: {detail}", fontsize=9)
        ax.set_xlabel("test BLEU")
        right = np.nanmax(np.concatenate([part.bleu.to_numpy(float), part.ci_high.to_numpy(float)])) if len(part) else 1
        ax.set_xlim(0, max(right, 1) * 1.45)
        ax.grid(axis="x", alpha=0.3)
    figure.suptitle(FIGURES["bleu_ci"].title, fontsize=11)
    save(figure, out)
    return table


@register("teacher_gap", "Teacher-student gap on the test set", ("evaluations",))
def teacher_gap(evaluations: list[dict], out) -> pd.DataFrame:
    """Each student's test BLEU and chrF minus its round's teacher's, for greedy and beam search."""
    teachers = {ev["round"]: ev for ev in evaluations if ev["system"] == "teacher"}
    students = [ev for ev in evaluations if ev["system"] != "teacher"]
    several = len({ev["round"] for ev in students}) > 1
    rows = []
    for ev in students:
        teacher = teachers.get(ev["round"])
        if teacher is None:
            raise InputError(f"--evaluations: no teacher evaluation for round {ev['round']} (student {ev['system']})")
        label = f"{ev['system']} (round {ev['round']})" if several else ev["system"]
        rows += [{"system": label, "round": ev["round"], "metric": metric, "decoding": decoding,
                  "student": ev[decoding][metric], "teacher": teacher[decoding][metric],
                  "gap": ev[decoding][metric] - teacher[decoding][metric]}
                 for metric in METRICS for decoding in DECODINGS]
    table = pd.DataFrame(rows, columns=["system", "round", "metric", "decoding", "student", "teacher", "gap"])

    systems = list(dict.fromkeys(table.system))
    figure, axes = new_figure(1, 2, (10, 1.4 + 0.45 * max(1, len(systems))), sharey=True)
    axes = axes[0]
    y = np.arange(len(systems))
    for ax, metric in zip(axes, METRICS):
        for offset, decoding, colour in ((-0.2, "greedy", "tab:orange"), (0.2, "beam", "tab:blue")):
            part = table[(table.metric == metric) & (table.decoding == decoding)].set_index("system").loc[systems]
            ax.barh(y + offset, part.gap, height=0.4, color=colour, label=decoding)
            for yi, gap in zip(y + offset, part.gap):
                bar_note(ax, gap, yi, f"{gap:+.2f}", ha="left" if gap >= 0 else "right")
        ax.axvline(0, color="black", lw=1)
        title = f"{METRICS[metric]}: student minus teacher"
        if len(teachers) == 1 and not several:
            teacher = next(iter(teachers.values()))
            title += f"\n(teacher: greedy {teacher['greedy'][metric]:.2f}, beam {teacher['beam'][metric]:.2f})"
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(f"test {METRICS[metric]} difference")
        ax.margins(x=0.25)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, systems)
    axes[0].invert_yaxis()
    legend_below(figure, axes[0])
    figure.suptitle(FIGURES["teacher_gap"].title, fontsize=11)
    save(figure, out)
    return table


def load_evaluation(path) -> dict:
    ev = require(read_json(path), ("system", "round", "greedy", "beam"), path)
    for decoding in DECODINGS:
        require(ev[decoding], METRICS, path, f"{decoding}: ")
    return ev


def load_significance(path) -> dict:
    sig = require(read_json(path), ("round", "systems"), path)
    for system, scores in sig["systems"].items():
        require(scores.get("bleu", {}), ("score",), path, f"systems.{system}.bleu: ")
    return sig
