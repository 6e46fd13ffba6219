"""Tune the log-linear n-best reranker on the tune set, select scorers, and diagnose on tune and dev.

Every configured tuner (MIRA, PRO, expected metric; `tuners.py`) and a random search with the same
number of evaluations fit weights on the tune set; features are standardised with tune-set
statistics, which the weights file carries. The first tuner labels the transfer sets: it is re-tuned
on the k scorers with the largest absolute weight (a scorer's features count as one group), and
those scorers alone then score the transfer sets.

Every tuner starts from the teacher's own ranking: its first candidate, all-zero weights, picks each
list's top-1 (hyp_id 0, the first row of each list here; in labelling, `features.pick` breaks the
ties towards the lowest hyp_id), and a tuner keeps the first best candidate. So every tuner's
weights, and the re-tuned labelling weights, score at least top-1 on the tune set: a tuner whose own
candidates all fall below top-1 (MIRA 13.76 and random search 13.31 tune BLEU against top-1's 13.94
with a 12.7-BLEU teacher) hands labelling top-1, not worse weights. checks.tune_minus_top1 records
the margins (never negative).

Outputs:
  --weights      the labelling weights (features, weights, mean, std, selected scorers)
  --diagnostics  corpus BLEU and chrF on tune and dev of top-1, every tuner, oracle, anti-oracle,
                 each single feature and each feature-group ablation; weights per tuner; checks
                 (each tuner's tune margin over random search and over top-1, the dev gain)
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import reranker_diagnostics
from .core.nbest import feature_columns, load_scored_nbest, per_hypothesis_refs

from .core.metrics import sentence_gains
from .core.io import InputError, read_table, write_json
from .core.cli import run_main
from .tuners import TUNERS, CorpusMetric, NBest, pick_rows, tune

log = logging.getLogger("mtdistill")
PROVENANCE = ("from_l2r", "from_r2l")


class ScoredSet:
    """One held-out set's scored n-best lists, with per-hypothesis sentence gains and corpus metrics."""

    def __init__(self, nbest_paths, feature_paths, references_path, metric: str):
        table = load_scored_nbest(nbest_paths, feature_paths)
        # sentences in order of appearance, each one's rows by hyp_id (as written: a no-op then): the first row of
        # a list is the teacher's top-1, which the tuners' all-zero first candidate picks (ties go to the first row)
        order = np.lexsort((table.hyp_id.to_numpy(), pd.factorize(table.sent_id)[0]))
        self.table = table.iloc[order].reset_index(drop=True)
        sentences = read_table(references_path)
        self.sentences = sentences[sentences.sent_id.isin(set(self.table.sent_id))]
        refs = per_hypothesis_refs(self.table, self.sentences)
        hyps = list(self.table.hypothesis)
        self.corpus = {name: CorpusMetric(hyps, refs, name) for name in ("bleu", "chrf")}
        self.gains = sentence_gains(self.table.hypothesis, refs, metric)
        self.sent_ids = self.table.sent_id.to_numpy()

    def problem(self, features: list[str], mean: np.ndarray, std: np.ndarray) -> NBest:
        x = (self.table[features].to_numpy(float) - mean) / std
        return NBest.from_table(self.sent_ids, x, self.gains)

    def scores(self, rows: np.ndarray) -> dict:
        return {name: metric(rows) for name, metric in self.corpus.items()}


def feature_groups(table: pd.DataFrame, feature_paths) -> dict[str, list[str]]:
    """Feature columns per scorer (the directory of its shard: .../features/<set>/<scorer>/<shard>)."""
    groups: dict[str, list[str]] = {}
    for path in feature_paths:
        columns = [c for c in read_table(path).columns if c not in ("sent_id", "hyp_id")]
        groups.setdefault(Path(path).parent.name, columns)
    provenance = [c for c in PROVENANCE if c in table]
    if provenance:
        groups["provenance"] = provenance
    return groups


def statistics(table: pd.DataFrame, features: list[str]) -> tuple[np.ndarray, np.ndarray]:
    raw = table[features].to_numpy(float)
    mean, std = raw.mean(0), raw.std(0)
    std[std == 0] = 1.0
    return mean, std


class Reranker:
    """Tunes weights on tune over a subset of features and evaluates any weights on tune and dev."""

    def __init__(self, tune_set: ScoredSet, dev_set: ScoredSet, features: list[str], evaluations: int, seed: int, metric: str):
        self.sets = {"tune": tune_set, "dev": dev_set}
        self.features, self.evaluations, self.seed, self.metric = features, evaluations, seed, metric
        self.mean, self.std = statistics(tune_set.table, features)

    def fit(self, method: str, features: list[str]) -> tuple[np.ndarray, list[float]]:
        columns = [self.features.index(f) for f in features]
        problem = self.sets["tune"].problem(features, self.mean[columns], self.std[columns])
        return tune(method, problem, self.sets["tune"].corpus[self.metric], self.evaluations, self.seed)

    def evaluate(self, features: list[str], weights: np.ndarray) -> dict:
        columns = [self.features.index(f) for f in features]
        result = {}
        for name, scored in self.sets.items():
            problem = scored.problem(features, self.mean[columns], self.std[columns])
            result[name] = scored.scores(pick_rows(problem, problem.x @ weights))
        return result

    def by_gain(self, sign: float) -> dict:
        """Oracle (sign 1) or anti-oracle (sign -1) picks by sentence-level gain."""
        result = {}
        for name, scored in self.sets.items():
            problem = NBest.from_table(scored.sent_ids, np.zeros((len(scored.gains), 1)), scored.gains)
            result[name] = scored.scores(pick_rows(problem, sign * scored.gains))
        return result

    def top1(self) -> dict:
        result = {}
        for name, scored in self.sets.items():
            first = scored.table.hyp_id.to_numpy() == 0  # merged lists keep the L2R beam best first
            result[name] = scored.scores(np.flatnonzero(first))
        return result

    def weights_file(self, method: str, features: list[str], weights: np.ndarray, scorers: list[str]) -> dict:
        columns = [self.features.index(f) for f in features]
        return {"method": method, "metric": self.metric, "seed": self.seed, "scorers": scorers, "features": features,
                "weights": weights.tolist(), "mean": self.mean[columns].tolist(), "std": self.std[columns].tolist()}


def select_groups(groups: dict[str, list[str]], weights: dict[str, float], k: int) -> tuple[list[str], list]:
    """The k scorers whose largest absolute feature weight is largest, in their original order, and the ranking."""
    ranking = sorted(((g, max(abs(weights[f]) for f in cols)) for g, cols in groups.items() if g != "provenance"),
                     key=lambda item: -item[1])
    keep = {g for g, _ in (ranking[:k] if k > 0 else ranking)}
    return [g for g in groups if g in keep], [[g, round(w, 6)] for g, w in ranking]


def l2r_vs_merged(scored: ScoredSet) -> dict | None:
    """What the right-to-left hypotheses add: the oracle (by sentence gain) of the L2R part against the merged list."""
    table = scored.table
    if "from_l2r" not in table:
        return None
    result = {}
    for name, keep in (("l2r", table.from_l2r.to_numpy() == 1), ("merged", np.ones(len(table), bool))):
        rows = np.flatnonzero(keep)
        problem = NBest.from_table(scored.sent_ids[rows], np.zeros((len(rows), 1)), scored.gains[rows])
        oracle = rows[pick_rows(problem, scored.gains[rows])]
        result[name] = {"hypotheses": int(len(rows)),
                        "top1_bleu": scored.corpus["bleu"](np.flatnonzero(table.hyp_id.to_numpy() == 0)),
                        "oracle_bleu": scored.corpus["bleu"](oracle), "oracle_chrf": scored.corpus["chrf"](oracle)}
    return result


def run_tuning(tune_set: ScoredSet, dev_set: ScoredSet, groups: dict[str, list[str]], tuners: list[str], select: int,
               evaluations: int, seed: int, metric: str) -> tuple[dict, dict]:
    features = [f for cols in groups.values() for f in cols]
    reranker = Reranker(tune_set, dev_set, features, evaluations, seed, metric)
    rows = [{"system": "top1", **reranker.top1()}, {"system": "oracle", **reranker.by_gain(1)},
            {"system": "anti-oracle", **reranker.by_gain(-1)}]
    weights, traces = {}, {}
    for method in [*tuners, "random"]:
        w, traces[method] = reranker.fit(method, features)
        weights[method] = dict(zip(features, w.tolist()))
        rows.append({"system": method, **reranker.evaluate(features, w)})
        log.info("%s: %s", method, rows[-1])
    labeller = tuners[0]
    chosen = weights[labeller]

    selected, ranking = select_groups(groups, chosen, select)
    selected_features = [f for g in [*selected, "provenance"] if g in groups for f in groups[g]]
    w_selected, _ = reranker.fit(labeller, selected_features)
    labelling = {"system": f"{labeller} ({len(selected)} scorers)", **reranker.evaluate(selected_features, w_selected)}
    rows.append(labelling)

    singles = []
    for feature in features:  # oriented by the labeller's weight: a feature "alone" as the tuner would use it
        sign = -1.0 if chosen[feature] < 0 else 1.0
        singles.append({"feature": feature, "sign": sign, **reranker.evaluate([feature], np.array([sign]))})
    ablation = []
    for group in groups:
        rest = [f for f in features if f not in groups[group]]
        if rest:
            w, _ = reranker.fit(labeller, rest)
            ablation.append({"dropped": group, **reranker.evaluate(rest, w)})

    by_system = {row["system"]: row for row in rows}
    # every tuner's first candidate is the teacher's ranking and it keeps the first best: never below top-1 on tune
    top1_margins = {m: by_system[m]["tune"][metric] - by_system["top1"]["tune"][metric] for m in [*tuners, "random"]}
    top1_margins["labelling"] = labelling["tune"][metric] - by_system["top1"]["tune"][metric]  # the weights file
    if min(top1_margins.values()) < 0:  # only where some list lacks hyp_id 0
        log.warning("tuned weights below top-1 on tune (%s): some lists have no hyp_id 0?", top1_margins)
    diagnostics = reranker_diagnostics.build(
        labeller=labeller, metric=metric, evaluations=evaluations, seed=seed, groups=groups,
        sets={name: {"sentences": int(s.sentences.shape[0]), "hypotheses": int(len(s.table))}
              for name, s in reranker.sets.items()},
        rows=rows, weights=weights, traces=traces, single_features=singles, ablation=ablation,
        selection={"k": select, "ranking": ranking, "selected": selected,
                   "weights": dict(zip(selected_features, w_selected.tolist()))},
        checks={
            "tune_minus_random": {m: by_system[m]["tune"][metric] - by_system["random"]["tune"][metric] for m in tuners},
            "tune_minus_top1": top1_margins,
            "dev_bleu_reranked_minus_top1": by_system[labeller]["dev"]["bleu"] - by_system["top1"]["dev"]["bleu"],
        },
        lists=l2r_vs_merged(tune_set),
    )
    scorers = [g for g in selected if g != "provenance"]
    return reranker.weights_file(labeller, selected_features, w_selected, scorers), diagnostics


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    for name in ("tune", "dev"):
        p.add_argument(f"--{name}-nbest", nargs="+", required=True, help=f"{name}-set n-best shards")
        p.add_argument(f"--{name}-features", nargs="+", required=True, help=f"{name}-set feature tables")
        p.add_argument(f"--{name}-references", required=True, help=f"{name}-set sentence table with target and references")
    p.add_argument("--tuners", nargs="+", default=["mira"], help=f"from {', '.join(t for t in TUNERS if t != 'random')};"
                   " the first one labels")
    p.add_argument("--select", type=int, default=0, help="keep the k scorers with the largest weights (0: all)")
    p.add_argument("--evaluations", type=int, default=20, help="candidate weight vectors per tuner (and random search)")
    p.add_argument("--metric", choices=["bleu", "chrf"], default="bleu", help="sentence-level gain and selection metric")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=1, help="torch threads (the expected-gain tuner)")
    p.add_argument("--weights", required=True, help="labelling weights (JSON)")
    p.add_argument("--diagnostics", required=True, help="diagnostics (JSON)")
    args = p.parse_args(argv)
    unknown = set(args.tuners) - set(TUNERS)
    if unknown:
        p.error(f"unknown tuner(s) {', '.join(sorted(unknown))} (known: {', '.join(TUNERS)})")
    return args


def run(args) -> None:
    torch.set_num_threads(args.threads)
    tune_set = ScoredSet(args.tune_nbest, args.tune_features, args.tune_references, args.metric)
    dev_set = ScoredSet(args.dev_nbest, args.dev_features, args.dev_references, args.metric)
    groups = feature_groups(tune_set.table, args.tune_features)
    missing = [f for cols in groups.values() for f in cols if f not in dev_set.table]
    if missing:
        raise InputError(f"dev-set features lack {', '.join(missing)} (tune set has them)")
    unused = set(feature_columns(tune_set.table)) - {f for cols in groups.values() for f in cols}
    if unused:
        log.info("not used as features: %s", ", ".join(sorted(unused)))
    weights, diagnostics = run_tuning(tune_set, dev_set, groups, args.tuners, args.select, args.evaluations, args.seed,
                                      args.metric)
    reranker_diagnostics.write(diagnostics, args.diagnostics)
    write_json(weights, args.weights)  # last: the checkpoint's output means everything is there


def main(argv=None) -> int:
    return run_main(run, parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
