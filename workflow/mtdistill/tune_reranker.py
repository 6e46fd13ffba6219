"""Tune log-linear reranker weights on the tune set by pairwise ranking optimisation (PRO).

PRO (Hopkins & May 2011): per sentence, sample hypothesis pairs, keep those whose sentence-level
BLEU differs most, and fit a logistic regression that ranks the better one higher. Features are
standardised with tune-set statistics, which the weights file carries so they can be applied to
other sets. The file also records tune-set corpus BLEU of the top-1, reranked and oracle picks.
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
import sacrebleu
import torch

from .features import feature_columns, load_scored_nbest, per_hypothesis_refs, pick, reference_streams, rerank_scores, sentence_gains
from .files import read_table, run_main, write_json

log = logging.getLogger("mtdistill")


def pro_pairs(table, gains: np.ndarray, rng: np.random.Generator, samples: int = 5000, keep: int = 50, min_gap: float = 0.05):
    """Feature differences and labels of the `keep` most distinct of `samples` random pairs per sentence."""
    diffs, labels = [], []
    for _, rows in table.groupby("sent_id", sort=False).indices.items():
        if len(rows) < 2:
            continue
        a, b = rng.integers(0, len(rows), (2, samples))
        gap = gains[rows[a]] - gains[rows[b]]
        chosen = np.flatnonzero(np.abs(gap) > min_gap)
        chosen = chosen[np.argsort(-np.abs(gap[chosen]), kind="stable")][:keep]
        for k in chosen:
            better, worse = (rows[a[k]], rows[b[k]]) if gap[k] > 0 else (rows[b[k]], rows[a[k]])
            diffs += [better, worse]
            labels += [1.0, 0.0]
    return np.array(diffs, dtype=int).reshape(-1, 2), np.array(labels[::2])


def fit_pro(x: np.ndarray, pairs: np.ndarray, l2: float = 1e-3) -> np.ndarray:
    """Logistic regression on pair differences, both orientations, fitted with L-BFGS (deterministic)."""
    d = torch.tensor(x[pairs[:, 0]] - x[pairs[:, 1]], dtype=torch.float64)
    d = torch.cat([d, -d])
    y = torch.cat([torch.ones(len(pairs)), torch.zeros(len(pairs))]).double()
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(d @ w, y) + l2 * (w @ w)
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy()


def corpus_bleu(picked, sentences) -> float:
    hyps = dict(zip(picked.sent_id, picked.hypothesis))
    return sacrebleu.corpus_bleu([hyps[s] for s in sentences.sent_id], reference_streams(sentences)).score


def tune(nbest_paths, feature_paths, references_path, metric: str = "bleu", seed: int = 1) -> dict:
    table = load_scored_nbest(nbest_paths, feature_paths)
    sentences = read_table(references_path)
    sentences = sentences[sentences.sent_id.isin(set(table.sent_id))]
    gains = sentence_gains(table.hypothesis, per_hypothesis_refs(table, sentences), metric)
    names = feature_columns(table)
    raw = table[names].to_numpy(float)
    mean, std = raw.mean(0), raw.std(0)
    std[std == 0] = 1.0
    pairs, _ = pro_pairs(table, gains, np.random.default_rng(seed))
    if len(pairs) == 0:
        log.warning("no hypothesis pair differs in %s by more than the margin: the weights stay zero", metric)
    weights = fit_pro((raw - mean) / std, pairs)
    result = {"method": "pro", "metric": metric, "seed": seed, "features": names, "weights": weights.tolist(),
              "mean": mean.tolist(), "std": std.tolist(), "pairs": int(len(pairs))}
    result["tune"] = {
        "sentences": int(len(sentences)),
        "top1_bleu": corpus_bleu(table[table.hyp_id == 0], sentences),
        "reranked_bleu": corpus_bleu(pick(table, rerank_scores(table, result)), sentences),
        "oracle_bleu": corpus_bleu(pick(table, gains), sentences),
    }
    if "from_l2r" in table:  # merged lists: what the right-to-left hypotheses add
        l2r = table.from_l2r.to_numpy() == 1
        result["lists"] = {
            "l2r": {"hypotheses": int(l2r.sum()), "top1_bleu": result["tune"]["top1_bleu"],
                    "oracle_bleu": corpus_bleu(pick(table[l2r], gains[l2r]), sentences)},
            "merged": {"hypotheses": len(table), "top1_bleu": result["tune"]["top1_bleu"],
                       "oracle_bleu": result["tune"]["oracle_bleu"]},
        }
    log.info("tune BLEU: %s", result["tune"])
    return result


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--nbest", nargs="+", required=True, help="tune-set n-best shards")
    p.add_argument("--features", nargs="+", required=True, help="tune-set feature tables")
    p.add_argument("--references", required=True, help="tune-set sentence table with target and references")
    p.add_argument("--metric", choices=["bleu", "chrf"], default="bleu", help="sentence-level gain")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", required=True, help="weights (JSON)")
    return p.parse_args(argv)


def run(args) -> None:
    write_json(tune(args.nbest, args.features, args.references, args.metric, args.seed), args.out)


def main(argv=None) -> int:
    return run_main(run, parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
