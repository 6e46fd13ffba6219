"""Label a transfer set with one strategy; record, per sentence, the chosen hypothesis.

Strategies:
  ref       the original reference (bitext only)
  top1      the (left-to-right) teacher's best beam hypothesis: sequence-level KD (Kim & Rush 2016)
  seqinter  the n-best hypothesis with the best smoothed sentence BLEU against the reference (Seq-Inter)
  rerank    the argmax of the tuned reranker score (Setiawan 2024)
  mbr       the hypothesis with the highest MBR consensus utility (the --mbr-feature column)
Output (Parquet): `sent_id, source, label, hyp_id, strategy` (hyp_id -1 for the reference), plus
`from_l2r`/`from_r2l` when the lists were merged: which decoder found the chosen hypothesis.
"""

from __future__ import annotations

import argparse

import pandas as pd

from .features import feature_columns, load_scored_nbest, per_hypothesis_refs, pick, rerank_scores, sentence_gains
from .files import InputError, read_json, read_table, read_tables, run_main, write_table

STRATEGIES = ("ref", "top1", "seqinter", "rerank", "mbr")
NEEDS_REFERENCE = {"ref", "seqinter"}


def select(strategy: str, sentences: pd.DataFrame, nbest_paths=(), feature_paths=(), weights_path=None,
           mbr_feature: str = "mbr_chrf") -> pd.DataFrame:
    if strategy in NEEDS_REFERENCE and sentences.target.isna().any():
        raise InputError(f"label strategy {strategy!r} needs references, but the transfer set has sentences without a target")
    if strategy == "ref":
        chosen = sentences.assign(hypothesis=sentences.target, hyp_id=-1)
    elif strategy == "top1":
        nbest = read_tables(nbest_paths)
        chosen = nbest[nbest.hyp_id == 0]  # merged lists keep the left-to-right beam best first
    elif strategy == "seqinter":
        nbest = read_tables(nbest_paths)
        chosen = pick(nbest, sentence_gains(nbest.hypothesis, per_hypothesis_refs(nbest, sentences)))
    elif strategy == "rerank":
        table = load_scored_nbest(nbest_paths, feature_paths)
        chosen = pick(table, rerank_scores(table, read_json(weights_path)))
    elif strategy == "mbr":
        table = load_scored_nbest(nbest_paths, feature_paths)
        if mbr_feature not in table:
            raise InputError(f"label strategy mbr needs feature {mbr_feature!r}; the feature tables have "
                             f"{', '.join(feature_columns(table))}")
        chosen = pick(table, table[mbr_feature].to_numpy())
    else:
        raise InputError(f"unknown label strategy {strategy!r} (known: {', '.join(STRATEGIES)})")
    chosen = chosen.set_index("sent_id")
    labelled = sentences[["sent_id", "source"]].assign(
        label=sentences.sent_id.map(chosen.hypothesis), hyp_id=sentences.sent_id.map(chosen.hyp_id)
    )
    if labelled.label.isna().any():
        raise InputError(f"{labelled.label.isna().sum()} transfer sentences have no hypothesis in the n-best lists")
    labelled = labelled.assign(hyp_id=labelled.hyp_id.astype(int), strategy=strategy)
    for flag in ("from_l2r", "from_r2l"):
        if flag in chosen:
            labelled[flag] = sentences.sent_id.map(chosen[flag]).fillna(0).astype(int)
    return labelled


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--strategy", required=True, choices=STRATEGIES)
    p.add_argument("--sentences", required=True, help="transfer-set table (sent_id, source[, target, references])")
    p.add_argument("--nbest", nargs="*", default=[], help="n-best shards of the transfer set")
    p.add_argument("--features", nargs="*", default=[], help="feature tables of those shards (rerank, mbr)")
    p.add_argument("--feature-list", help="JSON list of more feature tables (the scorers a reranker selected)")
    p.add_argument("--weights", help="reranker weights JSON (rerank)")
    p.add_argument("--mbr-feature", default="mbr_chrf", help="MBR utility column (mbr)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if args.feature_list:
        args.features += read_json(args.feature_list)
    if args.strategy != "ref" and not args.nbest:
        p.error(f"strategy {args.strategy} needs --nbest")
    if args.strategy == "rerank" and not (args.features and args.weights):
        p.error("strategy rerank needs --features and --weights")
    if args.strategy == "mbr" and not args.features:
        p.error("strategy mbr needs --features (the MBR scorer's)")
    return args


def run(args) -> None:
    labelled = select(args.strategy, read_table(args.sentences), args.nbest, args.features, args.weights, args.mbr_feature)
    write_table(labelled, args.out)


def main(argv=None) -> int:
    return run_main(run, parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
