"""The built-in label strategies.

  ref       the original reference (bitext only)
  top1      the (left-to-right) teacher's best non-degenerate beam hypothesis: sequence-level KD
            (Kim & Rush 2016)
  seqinter  the candidate with the best smoothed sentence BLEU against the reference (Seq-Inter).
            By default Kim & Rush's form: the teacher's own (left-to-right) beam against the first
            reference (`target`); candidates `merged` and references `all` score the merged list
            against every reference stream
  rerank    the argmax of the tuned reranker score (Setiawan 2024)
  mbr       the hypothesis with the highest MBR consensus utility (the `mbr_feature` column)
"""

from __future__ import annotations

import pandas as pd

from ..core.io import InputError, read_json
from ..core.metrics import sentence_gains
from ..core.nbest import feature_columns, per_hypothesis_refs, pick, rerank_scores
from .base import LabelOptions, strategy


@strategy("ref", needs_reference=True, uses_nbest=False)
def reference(candidates: pd.DataFrame, sentences: pd.DataFrame, options: LabelOptions) -> pd.DataFrame:
    return candidates


@strategy("top1", candidates="l2r")
def top1(candidates: pd.DataFrame, sentences: pd.DataFrame, options: LabelOptions) -> pd.DataFrame:
    return candidates.sort_values(["sent_id", "hyp_id"]).drop_duplicates("sent_id")


@strategy("seqinter", needs_reference=True, candidates=lambda options: options.seqinter_candidates)
def seqinter(candidates: pd.DataFrame, sentences: pd.DataFrame, options: LabelOptions) -> pd.DataFrame:
    refs = per_hypothesis_refs(candidates, sentences, first_only=options.seqinter_references == "first")
    return pick(candidates, sentence_gains(candidates.hypothesis, refs))


@strategy("rerank", inputs=("reranker",))
def rerank(candidates: pd.DataFrame, sentences: pd.DataFrame, options: LabelOptions) -> pd.DataFrame:
    return pick(candidates, rerank_scores(candidates, read_json(options.weights_path)))


@strategy("mbr", inputs=("mbr",))
def mbr(candidates: pd.DataFrame, sentences: pd.DataFrame, options: LabelOptions) -> pd.DataFrame:
    if options.mbr_feature not in candidates:
        raise InputError(f"label strategy mbr needs feature {options.mbr_feature!r}; the feature tables have "
                         f"{', '.join(feature_columns(candidates))}")
    return pick(candidates, candidates[options.mbr_feature].to_numpy())
