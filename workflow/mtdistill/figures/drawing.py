"""The figure registry and what every drawing shares: a pyplot-free figure, byte-stable PNGs, bar labels,
one legend, distinct colours."""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from ..core.io import InputError, atomic_path

DPI = 110
METRICS = {"bleu": "BLEU", "chrf": "chrF"}
DECODINGS = ("greedy", "beam")


class Drawing(NamedTuple):
    title: str
    draw: Callable
    inputs: tuple[str, ...]


FIGURES: dict[str, Drawing] = {}  # in the order the subject modules register them: the rule's outputs follow it


def register(name: str, title: str, inputs: tuple[str, ...]) -> Callable:
    """Decorator: `draw(*inputs, out)` becomes figure `name`, captioned `title`; `inputs` name what
    mtdistill.figures.run loads for it."""
    def add(draw: Callable) -> Callable:
        FIGURES[name] = Drawing(title, draw, inputs)
        return draw
    return add


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
