"""n-best tables: their keys, joining feature tables, each hypothesis's references, reranker scores, picking."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from .io import InputError, read_tables
from .metrics import reference_streams

KEYS = ["sent_id", "hyp_id"]


def load_scored_nbest(nbest_paths, feature_paths) -> pd.DataFrame:
    """n-best rows with every feature column joined on (sent_id, hyp_id).

    The beam `score` is left out: hypotheses of a merged list that only the right-to-left
    decoder found have none; forced-decoding scorers give every hypothesis the same evidence.
    """
    table = read_tables(nbest_paths).drop(columns="score")
    features: dict[str, list] = {}
    for path in feature_paths:  # shards of one scorer share their columns: concatenate, then join
        features.setdefault(tuple(pq.read_schema(path).names), []).append(path)
    for paths in features.values():
        part = read_tables(paths)
        table = table.merge(part, on=KEYS, how="left", validate="one_to_one")
    missing = table.columns[table.isna().any()].tolist()
    if missing:
        raise InputError(f"feature column(s) {', '.join(missing)} missing for some hypotheses of {nbest_paths[0]}")
    return table


def feature_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if c not in KEYS and c != "hypothesis" and pd.api.types.is_numeric_dtype(table[c])]


def per_hypothesis_refs(nbest: pd.DataFrame, sentences: pd.DataFrame, first_only: bool = False) -> list[list[str]]:
    """Each hypothesis's references: all streams, or only the target (Seq-Inter's single reference)."""
    streams = [list(sentences.target)] if first_only else reference_streams(sentences)
    refs = dict(zip(sentences.sent_id, zip(*streams)))
    return [list(refs[s]) for s in nbest.sent_id]


def rerank_scores(table: pd.DataFrame, weights: dict) -> np.ndarray:
    """The tuned log-linear score: standardised features (tune-set statistics) dot weights."""
    missing = set(weights["features"]) - set(table.columns)
    if missing:
        raise InputError(f"reranker weights need feature(s) {', '.join(sorted(missing))}, not in the scored n-best list")
    x = (table[weights["features"]].to_numpy(float) - weights["mean"]) / weights["std"]
    return x @ np.asarray(weights["weights"])


def pick(table: pd.DataFrame, values: np.ndarray) -> pd.DataFrame:
    """Per sentence, the row with the largest value (ties: the lowest hyp_id)."""
    table = table.assign(_value=values)
    best = table.sort_values(["sent_id", "_value", "hyp_id"], ascending=[True, False, True]).drop_duplicates("sent_id")
    return best.drop(columns="_value")
