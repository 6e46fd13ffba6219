"""Fast exact MBR consensus: each hypothesis's mean sentence chrF / BLEU against the rest of its n-best list.

Same numbers as sacrebleu's `sentence_score` on every ordered pair, but n-grams are extracted once per
hypothesis and clipped matches (symmetric) once per unordered pair, vectorised over the list's vocabulary;
only sacrebleu's own score-from-statistics step runs per ordered pair.
"""

from __future__ import annotations

from collections import Counter
from itertools import pairwise

import numpy as np
import pandas as pd
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.metrics.helpers import extract_all_char_ngrams, extract_all_word_ngrams
from tqdm import tqdm

from ..core.nbest import KEYS

METRICS = ("chrf", "bleu")
_CHRF = CHRF()
_BLEU = BLEU(effective_order=True)


def _ngrams(hypothesis: str, metric: str) -> list[Counter]:
    """One hypothesis's n-gram Counters; a key's length is its order (characters for chrF, tokens for BLEU)."""
    if metric == "chrf":
        return extract_all_char_ngrams(_CHRF._preprocess_segment(hypothesis), _CHRF.char_order, _CHRF.whitespace)
    return [extract_all_word_ngrams(_BLEU._preprocess_segment(hypothesis), 1, _BLEU.max_ngram_order)[0]]


def _statistics(grams: list[list[Counter]], orders: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-hypothesis n-gram totals (n, orders) and clipped matches (n, n, orders) of every pair."""
    vocab: dict = {}
    rows, cols, values = [], [], []
    for i, counters in enumerate(grams):
        for g in counters:
            rows += [i] * len(g)
            cols += [vocab.setdefault(gram, len(vocab)) for gram in g]
            values += g.values()
    counts = np.zeros((len(grams), len(vocab)))
    counts[rows, cols] = values
    # counts are small integers, so float64 matmuls that sum them per order are exact
    by_order = np.zeros((len(vocab), orders))
    by_order[np.arange(len(vocab)), [len(gram) - 1 for gram in vocab]] = 1
    totals = (counts @ by_order).astype(np.int64)
    matches = np.zeros((len(grams), len(grams), orders), dtype=np.int64)
    for i in range(len(grams) - 1):
        m = (np.minimum(counts[i], counts[i + 1:]) @ by_order).astype(np.int64)
        matches[i, i + 1:] = m
        matches[i + 1:, i] = m
    return totals, matches


def _chrf(hyp_totals: list[int], ref_totals: list[int], matches: list[int]) -> float:
    stats = []
    for h, r, m in zip(hyp_totals, ref_totals, matches):
        stats += [h if r else 0, r, m]  # sacrebleu drops hypothesis counts of orders the reference lacks
    return _CHRF._compute_score_from_stats(stats).score


def _bleu(hyp_totals: list[int], ref_totals: list[int], matches: list[int]) -> float:
    # unigram totals are the token counts, i.e. hypothesis and reference lengths
    return _BLEU._compute_score_from_stats([hyp_totals[0], ref_totals[0], *matches, *hyp_totals]).score


def mbr_utilities(hypotheses: list[str], metric: str) -> np.ndarray:
    """Mean `metric` ("chrf" or "bleu") sentence score of each hypothesis with each other one as the reference."""
    if metric not in METRICS:
        raise ValueError(f"unknown MBR metric {metric!r}, expected one of {METRICS}")
    n = len(hypotheses)
    if n < 2:
        return np.zeros(n)
    orders = _CHRF.char_order if metric == "chrf" else _BLEU.max_ngram_order
    totals, matches = _statistics([_ngrams(h, metric) for h in hypotheses], orders)
    totals, matches = totals.tolist(), matches.tolist()  # python ints, as sacrebleu sees them
    score = _chrf if metric == "chrf" else _bleu
    utility = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i != j:
                utility[i, j] = score(totals[i], totals[j], matches[i][j])
    return utility.sum(1) / (n - 1)  # same summation as the naive loop, so results match bit for bit


def score_mbr(nbest: pd.DataFrame, sentences, name: str, options) -> pd.DataFrame:
    """The mbr kind: consensus under every metric."""
    return consensus_features(nbest, name)


def consensus_features(nbest: pd.DataFrame, name: str, metrics=METRICS) -> pd.DataFrame:
    """`KEYS` in `nbest`'s row order plus one `{name}_{metric}` utility column per metric."""
    hypotheses = nbest["hypothesis"].tolist()
    sent_ids = nbest["sent_id"].to_numpy()
    # rows of one sentence are contiguous: split where sent_id changes
    starts = [0, *(np.flatnonzero(sent_ids[1:] != sent_ids[:-1]) + 1).tolist(), len(sent_ids)] if len(nbest) else [0]
    columns = {f"{name}_{metric}": np.zeros(len(nbest)) for metric in metrics}
    for start, end in tqdm(list(pairwise(starts)), desc="mbr", unit="sent", mininterval=30):
        for metric in metrics:
            columns[f"{name}_{metric}"][start:end] = mbr_utilities(hypotheses[start:end], metric)
    return nbest[KEYS].reset_index(drop=True).assign(**columns)
