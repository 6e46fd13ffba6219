"""Figure of the labels: per strategy and transfer set, how they differ from top-1 and what was filtered."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..core.io import InputError
from .drawing import FIGURES, colour, legend_below, new_figure, register, save

LABEL_RATES = {"differs_from_top1": "differs from top-1", "source_copy_rate": "copy of the source",
               "repeated_ngram_rate": "repeated n-gram", "empty_rate": "empty", "dropped": "sentences dropped by filter",
               "hypotheses_dropped": "hypotheses dropped by filter"}


@register("label_diagnostics", "Labels per strategy and transfer set", ("labels",))
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
