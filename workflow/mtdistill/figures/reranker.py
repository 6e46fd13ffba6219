"""Figures of the reranker: every tuner's feature weights, and the oracle / top-1 / reranked gap."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import reranker_diagnostics
from .drawing import FIGURES, METRICS, colour, legend_below, new_figure, register, save


@register("reranker_weights", "Reranker weights per tuner", ("diagnostics",))
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


@register("reranker_gap", "Oracle, top-1 and reranked picks on tune and dev", ("diagnostics",))
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
