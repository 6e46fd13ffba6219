"""Metrics shared by training, evaluation, reranking and labels: sacreBLEU reference streams and
sentence-level gains."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sacrebleu.metrics import BLEU, CHRF

def reference_streams(table: pd.DataFrame) -> list[list[str]]:
    """sacreBLEU reference streams: the target, then each extra reference."""
    extra = [list(r) if r is not None else [] for r in table.references]
    count = min(len(r) for r in extra) if extra else 0
    return [list(table.target)] + [[r[k] for r in extra] for k in range(count)]


def sentence_gains(hypotheses: pd.Series, refs: list[list[str]], metric: str = "bleu") -> np.ndarray:
    """Smoothed sentence-level BLEU (exp smoothing, as Kim & Rush's toolkit) or chrF per hypothesis."""
    scorer = BLEU(effective_order=True) if metric == "bleu" else CHRF()
    return np.array([scorer.sentence_score(h, r).score for h, r in zip(hypotheses, refs)])
