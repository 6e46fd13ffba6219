"""Weight tuners for the log-linear n-best reranker (knowledge distillation by n-best reranking, Setiawan 2024).

Each tuner turns fixed, scored n-best lists into exactly `evaluations` candidate weight vectors, and
`tune` keeps the candidate whose reranked picks score best on the corpus metric. Giving every tuner
the same number of corpus evaluations makes comparisons with random search fair.

Every tuner starts from the teacher's own ranking: its first candidate is `top1_weights`, all zeros,
which scores every hypothesis alike, so the ties go to each list's first row, the teacher's top-1
(hyp_id 0; `features.pick` breaks labelling ties towards the lowest hyp_id the same way). `tune` keeps
the first best candidate, so top-1 stays chosen unless a candidate beats it: the weights handed to
labelling are never below top-1 on the tune set. The tuners optimise surrogates of the corpus metric
(margins, pairs, expected sentence gain), and on a strong teacher with weak features their own
candidates can all fall below top-1 (MIRA 13.76 and random search 13.31 tune BLEU against top-1's
13.94 in one run); top-1 then labels, not a reranker worse than the teacher's own choice.

- mira: batch hope/fear MIRA (Chiang 2012; Cherry & Foster 2012) with weight averaging, from w = 0;
- pro: pairwise ranking optimisation (Hopkins & May 2011), one logistic regression per L2 strength;
- expected: expected sentence gain under a softmax over each list, maximised with Adam from w = 0;
- random: after the top-1 weights, directions drawn uniformly on the unit sphere, the baseline.

Sentence gains are on sacrebleu's 0-100 scale; the tuners use them as fractions (g = gains / 100),
the scale that MIRA's margins and PRO's pair threshold were defined on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property
from itertools import zip_longest

import numpy as np
import torch
from sacrebleu.metrics import BLEU, CHRF

log = logging.getLogger("mtdistill")


@dataclass
class NBest:
    x: np.ndarray  # (n_hyps, d) features, already standardised by the caller
    lists: list[np.ndarray]  # per sentence, the row indices of its hypotheses (rows ordered by hyp_id: top-1 first)
    gains: np.ndarray  # (n_hyps,) sentence-level metric of each hypothesis, 0-100 scale

    @classmethod
    def from_table(cls, sent_ids: np.ndarray, x: np.ndarray, gains: np.ndarray) -> NBest:
        """Lists in order of each sentence's first row; rows of one sentence need not be contiguous."""
        ids, first, group = np.unique(np.asarray(sent_ids), return_index=True, return_inverse=True)
        rows = np.split(np.argsort(group, kind="stable"), np.cumsum(np.bincount(group, minlength=len(ids)))[:-1])
        return cls(np.asarray(x, float), [rows[k] for k in np.argsort(first)], np.asarray(gains, float))

    @cached_property
    def padded(self) -> tuple[np.ndarray, np.ndarray]:
        """(n_lists, longest) row indices, padding repeats row 0, and the mask of real entries."""
        width = max(map(len, self.lists), default=0)
        index = np.zeros((len(self.lists), width), dtype=int)
        mask = np.arange(width) < np.array([len(rows) for rows in self.lists])[:, None]
        index[mask] = np.concatenate(self.lists) if self.lists else []
        return index, mask


class CorpusMetric:
    """Corpus BLEU or chrF of any pick of one hypothesis per sentence, from per-hypothesis sufficient statistics computed once.

    references[i] holds the reference strings of hypothesis i's sentence. Scores equal sacrebleu's
    corpus_bleu / corpus_chrf with default settings on the picked hypotheses.
    """

    def __init__(self, hypotheses: list[str], references: list[list[str]], metric: str = "bleu"):
        if metric not in ("bleu", "chrf"):
            raise ValueError(f"unknown corpus metric {metric!r}, expected 'bleu' or 'chrf'")
        # sacrebleu.corpus_bleu / corpus_chrf defaults; their scores are a function of summed integer statistics
        self.scorer = BLEU() if metric == "bleu" else CHRF()
        # all hypotheses of a sentence share its references: extract their n-grams once per sentence
        distinct: dict[tuple, int] = {}
        which = [distinct.setdefault(tuple(refs), len(distinct)) for refs in references]
        # reference streams; None pads sentences with fewer references, which sacrebleu skips
        cache = self.scorer._cache_references(list(zip_longest(*distinct))) if distinct else []
        self.stats = np.array(
            [self.scorer._compute_segment_statistics(self.scorer._preprocess_segment(h), cache[k]) for h, k in zip(hypotheses, which)],
            dtype=np.int64,
        )

    def __call__(self, rows: np.ndarray) -> float:
        return self.scorer._compute_score_from_stats(self.stats[rows].sum(0).tolist()).score


def pick_rows(nbest: NBest, scores: np.ndarray) -> np.ndarray:
    """Per list, the row with the highest score; ties go to the earliest row of the list."""
    index, mask = nbest.padded
    values = np.where(mask, np.asarray(scores)[index], -np.inf)
    return index[np.arange(len(index)), values.argmax(1)]  # argmax returns the first maximum


def top1_weights(nbest: NBest) -> np.ndarray:
    """Weights that pick each list's top-1, the teacher's own ranking: all zeros tie every hypothesis, and
    ties go to the list's first row (`pick_rows`), which is hyp_id 0, as in labelling (`features.pick`)."""
    return np.zeros(nbest.x.shape[1])


def mira(nbest: NBest, evaluations: int, seed: int, C: float = 0.01) -> list[np.ndarray]:
    """Batch hope/fear MIRA over the fixed lists from the top-1 weights (the first candidate); after each
    further epoch, the average of w over every sentence visit so far."""
    rng = np.random.default_rng(seed)
    per_list = [(nbest.x[rows], nbest.gains[rows] / 100) for rows in nbest.lists]
    w = top1_weights(nbest)
    total, steps, candidates = np.zeros(nbest.x.shape[1]), 0, [w.copy()]
    for _ in range(evaluations - 1):
        for i in rng.permutation(len(per_list)):
            f, g = per_list[i]
            s = f @ w
            hope, fear = np.argmax(s + g), np.argmax(s - g)
            df = f[hope] - f[fear]
            loss, norm = (g[hope] - g[fear]) - w @ df, df @ df
            if loss > 0 and norm > 0:  # norm 0: a one-hypothesis list or identical features, nothing to learn
                w = w + min(C, loss / norm) * df
            total, steps = total + w, steps + 1
        candidates.append(total / max(steps, 1))  # averaging smooths the order-dependent last iterate
    return candidates


def pro_pairs(nbest: NBest, rng: np.random.Generator, samples: int = 5000, keep: int = 50, min_gap: float = 0.01) -> np.ndarray:
    """(better row, worse row): per list, the `keep` most distinct of `samples` random pairs whose gains differ by > min_gap."""
    pairs = []
    for rows in nbest.lists:
        if len(rows) < 2:
            continue
        a, b = rng.integers(0, len(rows), (2, samples))
        # short lists repeat pairs many times: without deduplication the best-vs-worst pair would fill `keep`
        ab = np.unique(np.minimum(a, b) * len(rows) + np.maximum(a, b))
        a, b = rows[ab // len(rows)], rows[ab % len(rows)]
        gap = (nbest.gains[a] - nbest.gains[b]) / 100
        chosen = np.flatnonzero(np.abs(gap) > min_gap)
        chosen = chosen[np.argsort(-np.abs(gap[chosen]), kind="stable")][:keep]
        better = gap[chosen] > 0
        pairs.append(np.stack([np.where(better, a[chosen], b[chosen]), np.where(better, b[chosen], a[chosen])], 1))
    return np.concatenate(pairs) if pairs else np.zeros((0, 2), dtype=int)


def fit_pro(diffs: torch.Tensor, l2: float) -> np.ndarray:
    """Logistic regression that scores each better-minus-worse difference positive, by L-BFGS (deterministic)."""
    w = torch.zeros(diffs.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        # without a bias, adding the flipped pairs with label 0 gives exactly this loss again
        loss = torch.nn.functional.softplus(-(diffs @ w)).mean() + l2 * (w @ w)
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy()


def pro(nbest: NBest, evaluations: int, seed: int, samples: int = 5000, keep: int = 50, min_gap: float = 0.01) -> list[np.ndarray]:
    """The top-1 weights, then PRO on one set of pairs, one fit per L2 strength on a log-spaced path from 1e-4 to 10."""
    pairs = pro_pairs(nbest, np.random.default_rng(seed), samples, keep, min_gap)
    if len(pairs) == 0:
        log.warning("no hypothesis pair's gains differ by more than %s: PRO weights stay zero", min_gap)
        return [top1_weights(nbest) for _ in range(evaluations)]
    diffs = torch.tensor(nbest.x[pairs[:, 0]] - nbest.x[pairs[:, 1]], dtype=torch.float64)
    # only the direction of w changes the picks, and it is what L2 strength trades against fitting every pair
    return [top1_weights(nbest), *(fit_pro(diffs, l2) for l2 in np.logspace(-4, 1, evaluations - 1))]


def expected_metric(nbest: NBest, evaluations: int, seed: int, steps: int = 300, lr: float = 0.05, l2: float = 1e-3) -> list[np.ndarray]:
    """Maximise each list's expected gain under softmax(x @ w) with Adam from the top-1 weights (the first
    candidate); then w at `evaluations` - 1 evenly spaced steps.

    w starts at zero and full-batch gradients are exact, so nothing is random: `seed` is unused.
    """
    index, mask = nbest.padded
    x = torch.tensor(nbest.x[index], dtype=torch.float64)
    g = torch.tensor(nbest.gains[index] / 100, dtype=torch.float64)
    mask = torch.tensor(mask)
    w = torch.tensor(top1_weights(nbest), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([w], lr=lr)
    candidates, later = [w.detach().numpy().copy()], evaluations - 1
    if later < 1:
        return candidates
    # later candidate k (1-based) is w after ceil(k * steps / later) steps: exactly `evaluations` in all
    due = np.bincount(-(-np.arange(1, later + 1) * steps // later), minlength=steps + 1)
    for step in range(1, steps + 1):
        opt.zero_grad()
        p = torch.softmax((x @ w).masked_fill(~mask, -torch.inf), dim=1)
        loss = -(p * g).sum(1).mean() + l2 * (w @ w)
        loss.backward()
        opt.step()
        candidates += [w.detach().numpy().copy()] * due[step]
    return candidates


def random_search(nbest: NBest, evaluations: int, seed: int) -> list[np.ndarray]:
    """The top-1 weights, then directions uniform on the unit sphere: only the direction of w changes the picks."""
    w = np.random.default_rng(seed).standard_normal((evaluations - 1, nbest.x.shape[1]))
    return [top1_weights(nbest), *(w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12))]


TUNERS = {"mira": mira, "pro": pro, "expected": expected_metric, "random": random_search}


def tune(method: str, nbest: NBest, metric: CorpusMetric, evaluations: int = 20, seed: int = 1) -> tuple[np.ndarray, list[float]]:
    """The first best of `method`'s candidates by corpus `metric` of its picks, and every candidate's score.

    Every tuner's first candidate is `top1_weights`, so a tie keeps the teacher's top-1: the chosen
    weights score at least top-1 on `metric`. `metric` may be any callable from picked rows to a
    score, e.g. a mean of gains in tests.
    """
    if method not in TUNERS:
        raise ValueError(f"unknown tuner {method!r}, expected one of {', '.join(TUNERS)}")
    if evaluations < 1:
        raise ValueError(f"a tuner needs at least 1 evaluation (the top-1 weights), got {evaluations}")
    candidates = TUNERS[method](nbest, evaluations, seed)
    scores = [float(metric(pick_rows(nbest, nbest.x @ w))) for w in candidates]
    return candidates[int(np.argmax(scores))], scores
