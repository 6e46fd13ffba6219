"""Degenerate-hypothesis filter and label diagnostics, shared by every label strategy.

A teacher's beam, even more so a merged or reranked n-best list, holds hallucinations a student
would learn verbatim: loops ("two hundred hundred hundred"), stuttered characters ("scoooooooo"),
far too short or long outputs, untranslated copies of the source and empty strings. Every n-best
strategy drops them before it picks, so strategies differ only in how they choose among the same
candidates; the diagnostics say how often the chosen labels still look like that.

Definitions (text casefolded, whitespace words):
  empty           no word at all (an empty hypothesis is flagged only as empty)
  source_copy     the hypothesis equals the source (whitespace-normalised, casefolded)
  length_ratio    hypothesis words / source words outside [min_length_ratio, max_length_ratio]
                  (not judged when the source has no word)
  repeated_ngram  some n-gram, n = 1..max_ngram, occurs more than max_repeats times in a row
  char_run        one character, other than a digit or whitespace, more than max_char_run times in a
                  row (numbers such as 10000 are not stutter)
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass

import pandas as pd

from ..core.io import InputError, read_json

REASONS = ("empty", "source_copy", "length_ratio", "repeated_ngram", "char_run")


@dataclass(frozen=True)
class FilterThresholds:
    """When a hypothesis counts as degenerate. A 0 or None disables that check (for the ratio,
    that bound only); drop_source_copies=False keeps copies. Empty hypotheses are always dropped."""

    max_ngram: int | None = 4
    max_repeats: int | None = 2
    max_char_run: int | None = 3
    min_length_ratio: float | None = 0.5
    max_length_ratio: float | None = 2.0
    drop_source_copies: bool = True


def _normalise(texts: pd.Series) -> pd.Series:
    return texts.fillna("").astype(str).str.split().str.join(" ").str.casefold()


def _repeat_pattern(max_ngram: int, max_repeats: int) -> re.Pattern:
    """1..max_ngram whole words, then that group again at least max_repeats more times."""
    return re.compile(rf"(?<!\S)(\S+(?: \S+){{0,{max_ngram - 1}}})(?: \1){{{max_repeats},}}(?!\S)")


def _matches(texts: pd.Series, pattern: re.Pattern) -> pd.Series:
    return texts.map(lambda text: pattern.search(text) is not None).astype(bool)


def degenerate_reasons(hypotheses, sources, thresholds: FilterThresholds = FilterThresholds()) -> pd.DataFrame:
    """One boolean column per reason (REASONS), one row per hypothesis (the hypotheses' index);
    sources are aligned by position. A disabled check is all False."""
    hyps = hypotheses if isinstance(hypotheses, pd.Series) else pd.Series(list(hypotheses), dtype=object)
    srcs = pd.Series(list(sources), index=hyps.index, dtype=object)
    text, source = _normalise(hyps), _normalise(srcs)
    n_hyp, n_src = text.str.split().str.len(), source.str.split().str.len()
    empty = n_hyp == 0
    none = pd.Series(False, index=hyps.index)
    t = thresholds
    reasons = pd.DataFrame({"empty": empty}, index=hyps.index)
    reasons["source_copy"] = ~empty & (text == source) if t.drop_source_copies else none
    ratio = n_hyp / n_src.where(n_src > 0)  # NaN where the source has no word: never flagged
    too_short = ratio < t.min_length_ratio if t.min_length_ratio else none
    too_long = ratio > t.max_length_ratio if t.max_length_ratio else none
    reasons["length_ratio"] = ~empty & (too_short | too_long)
    if t.max_ngram and t.max_repeats:
        reasons["repeated_ngram"] = _matches(text, _repeat_pattern(t.max_ngram, t.max_repeats))
    else:
        reasons["repeated_ngram"] = none
    if t.max_char_run:
        reasons["char_run"] = _matches(text, re.compile(rf"([^\s\d])\1{{{t.max_char_run},}}"))
    else:
        reasons["char_run"] = none
    return reasons.astype(bool)


def filter_nbest(nbest: pd.DataFrame, sources: dict, thresholds: FilterThresholds) -> tuple[pd.DataFrame, dict]:
    """The non-degenerate rows of an n-best table, and what was dropped (counts per reason; a
    hypothesis with several reasons counts under each, once in `hypotheses_dropped`)."""
    reasons = degenerate_reasons(nbest.hypothesis, nbest.sent_id.map(sources), thresholds)
    degenerate = reasons.any(axis=1)
    kept = nbest[~degenerate]
    sentences = nbest.sent_id.unique()
    lost = sorted(set(sentences) - set(kept.sent_id))
    counts = {
        "thresholds": asdict(thresholds),
        "hypotheses": int(len(nbest)),
        "hypotheses_dropped": int(degenerate.sum()),
        "dropped_by_reason": {r: int(reasons[r].sum()) for r in REASONS},
        "sentences": int(len(sentences)),
        "sentences_dropped": len(lost),
        "dropped_sent_ids": [str(s) for s in lost[:20]],  # the first few, to look at
    }
    return kept, counts


def _number(value) -> float | None:
    """A JSON-safe float: None for NaN (a rate over no labels)."""
    value = float(value)
    return None if math.isnan(value) else value


def label_diagnostics(labels: pd.DataFrame, sentences: pd.DataFrame, nbest: pd.DataFrame | None = None,
                      dropped_counts: dict | None = None,
                      thresholds: FilterThresholds = FilterThresholds()) -> dict:
    """How the chosen labels (`sent_id, source, label`) look: agreement with the teacher's unfiltered
    top-1 (hyp_id 0 of `nbest`; None without it), length ratio, and the rates of the filter's own
    definitions (None where `thresholds` disables that check). `dropped_counts` is filter_nbest's."""
    label = labels.label.fillna("").astype(str)
    checks = degenerate_reasons(label, labels.source, FilterThresholds(**{**asdict(thresholds), "drop_source_copies": True}))
    words = _normalise(label).str.split().str.len()
    source_words = _normalise(labels.source).str.split().str.len()
    ratio = (words / source_words.where(source_words > 0)).mean()
    differs = None
    if nbest is not None:
        top1 = nbest[nbest.hyp_id == 0].set_index("sent_id").hypothesis
        pairs = pd.DataFrame({"label": label.to_numpy(), "top1": labels.sent_id.map(top1).to_numpy()}).dropna()
        differs = _number((pairs.label != pairs.top1).mean()) if len(pairs) else None
    t = thresholds
    return {
        "sentences": int(len(sentences)),
        "labels": int(len(labels)),
        "differs_from_top1": differs,
        "length_ratio": _number(ratio),
        "source_copy_rate": _number(checks["source_copy"].mean()),
        "empty_rate": _number(checks["empty"].mean()),
        "repeated_ngram_rate": _number(checks["repeated_ngram"].mean()) if t.max_ngram and t.max_repeats else None,
        "char_run_rate": _number(checks["char_run"].mean()) if t.max_char_run else None,
        "filter": dropped_counts,
    }


def load_diagnostics(path) -> dict:
    """A label diagnostics file (select_labels --diagnostics), with its round from the path when it has one."""
    found = re.search(r"round(\d+)", str(path))
    diagnostics = read_json(path)
    missing = [key for key in ("strategy", "set") if key not in diagnostics]
    if missing:
        raise InputError(f"{path}: missing key(s) {', '.join(missing)}")
    return {**({"round": int(found.group(1))} if found else {}), **diagnostics}
