"""Label a transfer set with one strategy (mtdistill.labels: ref, top1, seqinter, rerank, mbr and any
registered extension); record, per sentence, the chosen hypothesis.

Every n-best strategy first drops degenerate hypotheses (labels/quality.py: loops, character runs,
length ratio, source copies, empty); a sentence without any candidate left is left out of the labels
and counted. `ref` is not filtered. Output (Parquet), one row per kept sentence:
`sent_id, source, label, hyp_id, strategy` (hyp_id -1 for the reference), plus `from_l2r`/`from_r2l`
when the lists were merged: which decoder found the chosen hypothesis. --diagnostics writes
labels.quality.label_diagnostics as JSON, with the strategy and the set's name.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import fields

import pandas as pd

from .core.cli import run_main
from .core.io import InputError, read_json, read_table, read_tables, write_json, write_table
from .core.nbest import load_scored_nbest
from .labels import STRATEGIES, LabelOptions
from .labels.quality import FilterThresholds, filter_nbest, label_diagnostics

log = logging.getLogger("mtdistill")
SEQINTER_CANDIDATES = ("l2r", "merged")
SEQINTER_REFERENCES = ("first", "all")


def teacher_beam(nbest: pd.DataFrame) -> pd.DataFrame:
    """The left-to-right teacher's own hypotheses of a merged list (all rows of an unmerged one)."""
    return nbest[nbest.from_l2r == 1] if "from_l2r" in nbest else nbest


def label(name: str, sentences: pd.DataFrame, nbest_paths=(), feature_paths=(), weights_path=None,
          mbr_feature: str = "mbr_chrf", thresholds: FilterThresholds = FilterThresholds(),
          seqinter_candidates: str = "l2r", seqinter_references: str = "first"
          ) -> tuple[pd.DataFrame, pd.DataFrame | None, dict | None]:
    """The labels, the unfiltered n-best table and the filter's counts (both None without an n-best list)."""
    if name not in STRATEGIES:
        raise InputError(f"unknown label strategy {name!r} (known: {', '.join(STRATEGIES)})")
    strategy = STRATEGIES[name]
    if strategy.needs_reference and sentences.target.isna().any():
        raise InputError(f"label strategy {name!r} needs references, but the transfer set has sentences without a target")
    if seqinter_candidates not in SEQINTER_CANDIDATES or seqinter_references not in SEQINTER_REFERENCES:
        raise InputError(f"seqinter candidates {seqinter_candidates!r} / references {seqinter_references!r}: expected "
                         f"one of {', '.join(SEQINTER_CANDIDATES)} / {', '.join(SEQINTER_REFERENCES)}")
    options = LabelOptions(weights_path, mbr_feature, thresholds, seqinter_candidates, seqinter_references)
    if not strategy.uses_nbest:
        references = sentences.assign(hypothesis=sentences.target, hyp_id=-1)
        return _labelled(name, sentences, strategy.choose(references, sentences, options)), None, None
    table = load_scored_nbest(nbest_paths, feature_paths) if strategy.inputs else read_tables(nbest_paths)
    table = table[table.sent_id.isin(set(sentences.sent_id))]
    missing = len(set(sentences.sent_id) - set(table.sent_id))
    if missing:
        raise InputError(f"{missing} transfer sentences have no hypothesis in the n-best lists")
    # top-1 and Kim & Rush's Seq-Inter choose within the teacher's own beam; the filter counts what each chooses among
    candidates = strategy.candidate_rows(options)
    kept, counts = filter_nbest(teacher_beam(table) if candidates == "l2r" else table,
                                dict(zip(sentences.sent_id, sentences.source)), thresholds)
    counts["candidates"] = candidates
    chosen = strategy.choose(kept, sentences, options)
    log.info("%s: %d of %d candidate hypotheses degenerate %s; %d of %d sentences left without a label",
             name, counts["hypotheses_dropped"], counts["hypotheses"], counts["dropped_by_reason"],
             counts["sentences_dropped"], counts["sentences"])
    if counts["sentences_dropped"] == counts["sentences"]:
        log.warning("%s: every hypothesis is degenerate, no labels (relax the filter: labels.filter)", name)
    return _labelled(name, sentences, chosen), table, counts


def _labelled(strategy: str, sentences: pd.DataFrame, chosen: pd.DataFrame) -> pd.DataFrame:
    """The output table: the sentences that have a chosen hypothesis, in the transfer set's order."""
    chosen = chosen.set_index("sent_id")
    labelled = sentences.loc[sentences.sent_id.isin(chosen.index), ["sent_id", "source"]].reset_index(drop=True)
    labelled = labelled.assign(label=labelled.sent_id.map(chosen.hypothesis),
                               hyp_id=labelled.sent_id.map(chosen.hyp_id).astype(int), strategy=strategy)
    for flag in ("from_l2r", "from_r2l"):
        if flag in chosen:
            labelled[flag] = labelled.sent_id.map(chosen[flag]).fillna(0).astype(int)
    return labelled


def select(strategy: str, sentences: pd.DataFrame, nbest_paths=(), feature_paths=(), weights_path=None,
           mbr_feature: str = "mbr_chrf", **options) -> pd.DataFrame:
    """The labels alone (label()'s first part); options: thresholds, seqinter_candidates, seqinter_references."""
    return label(strategy, sentences, nbest_paths, feature_paths, weights_path, mbr_feature, **options)[0]


def _optional(kind):
    """An argparse type that reads 'none'/'null' (a disabled check, from a YAML null) as None."""
    def parse(text: str):
        return None if text.strip().lower() in ("none", "null", "") else kind(text)
    parse.__name__ = kind.__name__
    return parse


def thresholds_from(args) -> FilterThresholds:
    return FilterThresholds(**{f.name: getattr(args, f.name) for f in fields(FilterThresholds)})


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--strategy", required=True, choices=list(STRATEGIES))
    p.add_argument("--sentences", required=True, help="transfer-set table (sent_id, source[, target, references])")
    p.add_argument("--nbest", nargs="*", default=[],
                   help="n-best shards of the transfer set (ref: optional, for the differs-from-top-1 diagnostic)")
    p.add_argument("--features", nargs="*", default=[], help="feature tables of those shards (rerank, mbr)")
    p.add_argument("--feature-list", help="JSON list of more feature tables (the scorers a reranker selected)")
    p.add_argument("--weights", help="reranker weights JSON (rerank)")
    p.add_argument("--mbr-feature", default="mbr_chrf", help="MBR utility column (mbr)")
    default = FilterThresholds()
    f = p.add_argument_group("degenerate-hypothesis filter (every strategy but ref; 0 or none disables a check)")
    f.add_argument("--max-ngram", type=_optional(int), default=default.max_ngram,
                   help="longest n-gram checked for consecutive repeats (default %(default)s)")
    f.add_argument("--max-repeats", type=_optional(int), default=default.max_repeats,
                   help="an n-gram may occur this many times in a row (default %(default)s)")
    f.add_argument("--max-char-run", type=_optional(int), default=default.max_char_run,
                   help="a character (not a digit) may occur this many times in a row (default %(default)s)")
    f.add_argument("--min-length-ratio", type=_optional(float), default=default.min_length_ratio,
                   help="least hypothesis/source word ratio (default %(default)s)")
    f.add_argument("--max-length-ratio", type=_optional(float), default=default.max_length_ratio,
                   help="largest hypothesis/source word ratio (default %(default)s)")
    f.add_argument("--drop-source-copies", dest="drop_source_copies", action="store_true", default=default.drop_source_copies,
                   help="drop hypotheses that copy the source (the default)")
    f.add_argument("--keep-source-copies", dest="drop_source_copies", action="store_false")
    p.add_argument("--seqinter-candidates", choices=SEQINTER_CANDIDATES, default="l2r",
                   help="seqinter chooses within the teacher's beam (l2r, Kim & Rush) or the merged list")
    p.add_argument("--seqinter-references", choices=SEQINTER_REFERENCES, default="first",
                   help="seqinter's sentence BLEU against the target only (first, Kim & Rush) or every reference")
    p.add_argument("--diagnostics", help="write the label diagnostics (JSON) here")
    p.add_argument("--set-name", help="the transfer set's name, for the diagnostics")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if args.feature_list:
        args.features += read_json(args.feature_list)
    if STRATEGIES[args.strategy].uses_nbest and not args.nbest:
        p.error(f"strategy {args.strategy} needs --nbest")
    inputs = STRATEGIES[args.strategy].inputs
    if "reranker" in inputs and not (args.features and args.weights):
        p.error(f"strategy {args.strategy} needs --features and --weights")
    if "mbr" in inputs and not args.features:
        p.error(f"strategy {args.strategy} needs --features (the MBR scorer's)")
    for name in ("max_ngram", "max_repeats", "max_char_run", "min_length_ratio", "max_length_ratio"):
        if (getattr(args, name) or 0) < 0:
            p.error(f"--{name.replace('_', '-')} must not be negative")
    if args.min_length_ratio and args.max_length_ratio and args.min_length_ratio > args.max_length_ratio:
        p.error("--min-length-ratio is above --max-length-ratio")
    return args


def run(args) -> None:
    sentences = read_table(args.sentences)
    thresholds = thresholds_from(args)
    labelled, nbest, counts = label(args.strategy, sentences, args.nbest, args.features, args.weights, args.mbr_feature,
                                    thresholds, args.seqinter_candidates, args.seqinter_references)
    write_table(labelled, args.out)
    if args.diagnostics:
        if nbest is None and args.nbest:  # ref: the n-best list only for its top-1
            nbest = read_tables(args.nbest)
        diagnostics = {"strategy": args.strategy, "set": args.set_name,
                       **label_diagnostics(labelled, sentences, nbest, counts, thresholds)}
        if args.strategy == "seqinter":
            diagnostics.update(seqinter_candidates=args.seqinter_candidates, seqinter_references=args.seqinter_references)
        write_json(diagnostics, args.diagnostics)


def main(argv=None) -> int:
    return run_main(run, parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
