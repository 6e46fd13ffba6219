"""Figures of the report: test BLEU with confidence intervals, the teacher-student gap, reranker weights,
the oracle / top-1 / reranked gap, training curves, the speculative KD acceptance rate and label diagnostics.

Each --out file is one PNG; its name says which figure (see FIGURES), e.g. results/figures/bleu_ci.png.
Every drawing function returns the values it plots as a table.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd

from .. import reranker_diagnostics
from ..core.cli import run_main
from ..labels import quality as label_quality
# Importing a subject module registers its figures: this order is FIGURES' order, so the figures rule's outputs'.
from . import evaluation, reranker, training, labels  # isort: skip
from .drawing import FIGURES
from .evaluation import load_evaluation, load_significance
from .training import load_trainings

__all__ = ["FIGURES", "parse_args", "run", "main", "evaluation", "reranker", "training", "labels"]
log = logging.getLogger("mtdistill")


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m mtdistill.figures", description=__doc__,  # not "__main__.py"
                                formatter_class=argparse.RawDescriptionHelpFormatter)
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
