"""Figures of the report: test BLEU with confidence intervals, the teacher-student gap, reranker weights,
the oracle / top-1 / reranked gap, training curves, the speculative KD acceptance rate and label diagnostics.

Each --out file is one PNG; its name says which figure (see FIGURES), e.g. results/figures/bleu_ci.png.
Every drawing function returns the values it plots as a table.
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from . import reranker_diagnostics
from .labels import quality as label_quality
from .core.io import InputError, atomic_path, read_json

from .core.cli import run_main
from .training import record

log = logging.getLogger("mtdistill")
DPI = 110
METRICS = {"bleu": "BLEU", "chrf": "chrF"}
DECODINGS = ("greedy", "beam")
TEACHER_GROUP, STUDENT_GROUP = "teacher and helpers", "students"


def new_figure(rows: int, cols: int, size: tuple[float, float], **kwargs) -> tuple[Figure, np.ndarray]:
    """A figure (no pyplot: no global state, no display) and its 2-D array of axes."""
    figure = Figure(figsize=size, layout="constrained")
    return figure, figure.subplots(rows, cols, squeeze=False, **kwargs)


def save(figure: Figure, path) -> None:
    """Write the PNG (Agg) atomically, without the software version, so equal data give equal bytes."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})


def require(data: dict, keys, path, what: str = "") -> dict:
    missing = [key for key in keys if key not in data]
    if missing:
        raise InputError(f"{path}: {what}missing key(s) {', '.join(missing)}")
    return data


def bar_note(axes, x, y, text, ha: str = "left") -> None:
    """A small label just past the end of a horizontal bar."""
    axes.annotate(text, (x, y), xytext=(3 if ha == "left" else -3, 0), textcoords="offset points", ha=ha,
                  va="center", fontsize=7, bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.7, "pad": 0.5})


def legend_below(figure: Figure, axes, columns: int = 6) -> None:
    """One legend for the figure, under the axes, where it hides no bar."""
    handles, labels = axes.get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=min(columns, len(labels)), fontsize=8)


def colour(i: int):
    """Distinct hues first (tab20's strong colours), then their light variants."""
    return colormaps["tab20"]((2 * i) % 20 + (2 * i) // 20 % 2)


# (a) test BLEU per system with 95% confidence intervals
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


# (b) the teacher-student gap
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


# (c) reranker weights per tuner
def reranker_weights(diagnostics: list[dict], out) -> pd.DataFrame:
    """Every tuner's weights on the standardised features, scaled so its largest |weight| is 1 (a log-linear
    ranking does not change with the scale); the features the labelling reranker keeps are in bold."""
    rows = []
    for round_, diag in enumerate(diagnostics):
        weights = pd.DataFrame(diag["weights"])  # features x tuners
        scale = weights.abs().max().replace(0, 1.0)
        for tuner in weights.columns:
            rows += [{"round": round_, "tuner": tuner, "feature": feature, "weight": weight,
                      "normalised": weight / scale[tuner]} for feature, weight in weights[tuner].items()]
    table = pd.DataFrame(rows, columns=["round", "tuner", "feature", "weight", "normalised"])

    most = max(table.groupby("round").feature.nunique().max() if len(table) else 1, 1)
    figure, axes = new_figure(1, len(diagnostics), (4.5 * len(diagnostics) + 1.5, 1.5 + 0.32 * most))
    for ax, (round_, diag) in zip(axes[0], enumerate(diagnostics)):
        part = table[table["round"] == round_]
        features = list(dict.fromkeys(part.feature))
        tuners = list(dict.fromkeys(part.tuner))
        height = 0.8 / max(len(tuners), 1)
        y = np.arange(len(features))
        for i, tuner in enumerate(tuners):
            values = part[part.tuner == tuner].set_index("feature").normalised.reindex(features)
            label = f"{tuner} (labels)" if tuner == diag["labeller"] else tuner
            ax.barh(y - 0.4 + height * (i + 0.5), values, height=height, color=colour(i), label=label)
        ax.set_yticks(y, features, fontsize=7)
        kept = set(diag.get("selection", {}).get("weights", {}))
        for tick, feature in zip(ax.get_yticklabels(), features):
            tick.set_fontweight("bold" if feature in kept else "normal")
        ax.invert_yaxis()
        ax.axvline(0, color="black", lw=1)
        ax.set_xlim(-1.1, 1.1)
        ax.set_xlabel("weight / largest |weight| of the tuner")
        ax.set_title(f"Round {round_}", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    legend_below(figure, axes[0, 0])
    figure.suptitle(FIGURES["reranker_weights"].title, fontsize=11)
    save(figure, out)
    return table


# (d) oracle / top-1 / reranked gap
def reranker_gap(diagnostics: list[dict], out) -> pd.DataFrame:
    """Corpus BLEU and chrF of the anti-oracle, top-1, reranked and oracle picks on tune and dev, per round."""
    rows = []
    for round_, diag in enumerate(diagnostics):
        by_system = reranker_diagnostics.by_system(diag)
        picks = (("anti-oracle", "anti-oracle"), ("top-1", "top1"), (f"reranked ({diag['labeller']})", diag["labeller"]),
                 ("oracle", "oracle"))
        rows += [{"round": round_, "set": split, "pick": pick.split(" (")[0], "system": system,
                  **{metric: by_system[system][split][metric] for metric in METRICS}}
                 for pick, system in picks for split in ("tune", "dev")]
    table = pd.DataFrame(rows, columns=["round", "set", "pick", "system", *METRICS])

    rounds = sorted(set(table["round"]))
    picks = list(dict.fromkeys(table.pick))
    colours = {"anti-oracle": "tab:red", "top-1": "tab:gray", "reranked": "tab:blue", "oracle": "tab:green"}
    figure, axes = new_figure(2, 2, (4 + 1.5 * len(rounds), 6), sharex=True)
    width = 0.8 / len(picks)
    x = np.arange(len(rounds))
    for row, metric in enumerate(METRICS):
        for col, split in enumerate(("tune", "dev")):
            ax = axes[row, col]
            part = table[table.set == split]
            for i, pick in enumerate(picks):
                values = part[part.pick == pick].set_index("round")[metric].reindex(rounds)
                ax.bar(x - 0.4 + width * (i + 0.5), values, width=width, color=colours[pick], label=pick)
            for xi, round_ in zip(x, rounds):
                scores = part[part["round"] == round_].set_index("pick")[metric]
                gap = scores["reranked"] - scores["top-1"]
                ax.annotate(f"reranked - top-1: {gap:+.2f}", (xi, scores.max()), xytext=(0, 3),
                            textcoords="offset points", ha="center", fontsize=7)
            ax.set_title(f"{split}: corpus {METRICS[metric]}", fontsize=9)
            ax.set_xticks(x, [f"round {r}" for r in rounds])
            ax.margins(y=0.15)
            ax.grid(axis="y", alpha=0.3)
    legend_below(figure, axes[0, 0])
    labellers = ", ".join(dict.fromkeys(d["labeller"] for d in diagnostics))
    figure.suptitle(f"{FIGURES['reranker_gap'].title} (reranked by {labellers})", fontsize=11)
    save(figure, out)
    return table


# (e) training curves
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


# (f) speculative KD acceptance
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


# (g) label diagnostics per strategy and transfer set
LABEL_RATES = {"differs_from_top1": "differs from top-1", "source_copy_rate": "copy of the source",
               "repeated_ngram_rate": "repeated n-gram", "empty_rate": "empty", "dropped": "sentences dropped by filter",
               "hypotheses_dropped": "hypotheses dropped by filter"}


def label_diagnostics(labels: list[dict], out) -> pd.DataFrame:
    """Per strategy and transfer set, the shares of labels that differ from the teacher's top-1, copy the
    source, repeat an n-gram or are empty, what the degenerate-hypothesis filter dropped, and the mean
    label/source length ratio."""
    rows = []
    for diag in labels:
        filtered = diag.get("filter") or {}
        rows.append({
            "labels": f"{diag['strategy']}-{diag['set']}" + (f" (round {diag['round']})" if "round" in diag else ""),
            **{key: diag.get(key) for key in ("differs_from_top1", "source_copy_rate", "repeated_ngram_rate", "empty_rate")},
            "dropped": filtered.get("sentences_dropped", 0) / max(filtered.get("sentences", 0), 1) if filtered else np.nan,
            "hypotheses_dropped": filtered.get("hypotheses_dropped", 0) / max(filtered.get("hypotheses", 0), 1)
            if filtered else np.nan,
            "length_ratio": diag.get("length_ratio"),
        })
    if not rows:
        raise InputError("--labels: no label diagnostics")
    table = pd.DataFrame(rows).astype({key: float for key in [*LABEL_RATES, "length_ratio"]})

    figure, axes = new_figure(1, 2, (11, 0.45 * len(table) + 2), gridspec_kw={"width_ratios": [3, 1]})
    rates, ratios = axes[0]
    y = np.arange(len(table))
    height = 0.8 / len(LABEL_RATES)
    for i, (key, name) in enumerate(LABEL_RATES.items()):
        rates.barh(y + (i - len(LABEL_RATES) / 2 + 0.5) * height, table[key].fillna(0), height, label=name,
                   color=colour(i))
    rates.set(yticks=y, yticklabels=table["labels"], xlabel="share", xlim=(0, 1))
    rates.invert_yaxis()
    rates.grid(axis="x", alpha=0.3)
    ratios.barh(y, table.length_ratio.fillna(0), color="grey")
    ratios.axvline(1, color="black", lw=0.8)
    ratios.set(yticks=y, yticklabels=[], xlabel="label / source words")
    ratios.invert_yaxis()
    legend_below(figure, rates, columns=3)
    figure.suptitle(FIGURES["label_diagnostics"].title, fontsize=11)
    save(figure, out)
    return table


class Drawing(NamedTuple):
    title: str
    draw: Callable
    inputs: tuple[str, ...]


FIGURES = {
    "bleu_ci": Drawing("Test BLEU per system with 95% confidence intervals", bleu_ci, ("evaluations", "significance")),
    "teacher_gap": Drawing("Teacher-student gap on the test set", teacher_gap, ("evaluations",)),
    "reranker_weights": Drawing("Reranker weights per tuner", reranker_weights, ("diagnostics",)),
    "reranker_gap": Drawing("Oracle, top-1 and reranked picks on tune and dev", reranker_gap, ("diagnostics",)),
    "training_curves": Drawing("Training curves: dev loss and dev BLEU per step", training_curves, ("trainings",)),
    "skd_acceptance": Drawing("Speculative KD acceptance rate per step", skd_acceptance, ("trainings",)),
    "label_diagnostics": Drawing("Labels per strategy and transfer set", label_diagnostics, ("labels",)),
}


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


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--evaluations", nargs="+", required=True, help="evaluation JSON of every system and round")
    p.add_argument("--significance", nargs="*", default=[], help="paired-bootstrap JSON, one per round compared")
    p.add_argument("--diagnostics", nargs="*", default=[], help="reranker diagnostics JSON, one per round in order")
    p.add_argument("--models", nargs="*", default=[], help="model directories whose training.json to plot")
    p.add_argument("--labels", nargs="*", default=[], help="label diagnostics JSON (mtdistill.select_labels)")
    p.add_argument("--out", nargs="+", required=True, help=f"PNG files named <figure>.png: {', '.join(FIGURES)}")
    args = p.parse_args(argv)
    unknown = [out for out in args.out if Path(out).stem not in FIGURES or Path(out).suffix != ".png"]
    if unknown:
        p.error(f"--out: unknown figure(s) {', '.join(unknown)} (known: {', '.join(f'{n}.png' for n in FIGURES)})")
    needs_diagnostics = [out for out in args.out if "diagnostics" in FIGURES[Path(out).stem].inputs]
    if needs_diagnostics and not args.diagnostics:
        p.error(f"--out {' '.join(needs_diagnostics)} needs --diagnostics")
    return args


def run(args) -> dict[str, pd.DataFrame]:
    inputs = {
        "evaluations": [load_evaluation(p) for p in args.evaluations],
        "significance": [load_significance(p) for p in args.significance],
        "diagnostics": [reranker_diagnostics.load(p) for p in args.diagnostics],
        "trainings": load_trainings(args.models),
        "labels": [label_quality.load_diagnostics(p) for p in args.labels],
    }
    plotted = {}
    for out in args.out:
        figure = FIGURES[Path(out).stem]
        plotted[Path(out).stem] = figure.draw(*(inputs[name] for name in figure.inputs), out)
        log.info("wrote %s", out)
    return plotted


def main(argv=None) -> int:
    return run_main(run, parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
