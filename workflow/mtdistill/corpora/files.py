"""The user's own corpus (data.files): parallel plain files or a TSV, optional document ids and
monolingual files, split by whole documents at random."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..core.io import InputError, read_lines
from .base import HELD_OUT, READERS, monolingual


@READERS.register("files")
def read_parallel_files(spec: dict, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """User bitext (two plain files or one TSV with a header), optional monolingual sources and targets."""
    parallel = spec["parallel"]
    if "tsv" in parallel:
        path = parallel["tsv"]
        if not Path(path).exists():
            raise InputError(f"config key data.files.parallel.tsv: {path}: file not found")
        df = pd.read_csv(path, sep="\t", dtype=str, quoting=3, keep_default_na=False)
        missing = {"source", "target"} - set(df.columns)
        if missing:
            raise InputError(f"{path}: header lacks column(s) {', '.join(sorted(missing))}")
        ref_columns = [c for c in df.columns if c.startswith("ref")]
        df["references"] = df[ref_columns].values.tolist() if ref_columns else [[] for _ in range(len(df))]
        line_numbers = np.arange(2, len(df) + 2)  # line 1 is the header
    else:
        src, tgt = read_lines(parallel["source"]), read_lines(parallel["target"])
        if len(src) != len(tgt):
            raise InputError(
                f"parallel files differ in length: {parallel['source']} has {len(src)} lines, "
                f"{parallel['target']} has {len(tgt)} lines"
            )
        df = pd.DataFrame({"source": src, "target": tgt})
        df["references"] = [[] for _ in range(len(df))]
        line_numbers = np.arange(1, len(df) + 1)
        if spec.get("doc_ids"):
            doc_ids = read_lines(spec["doc_ids"])
            if len(doc_ids) != len(df):
                raise InputError(f"{spec['doc_ids']} has {len(doc_ids)} lines, the parallel files {len(df)}")
            df["doc_id"] = doc_ids
    if "doc_id" not in df.columns:  # no document ids: contiguous blocks stand in for documents
        df["doc_id"] = [f"block{i // spec['lines_per_doc']:06d}" for i in range(len(df))]
    df["sent_id"] = [f"L{n:08d}" for n in line_numbers]

    docs = sorted(df.doc_id.unique())
    order = np.random.default_rng(seed).permutation(len(docs))
    split, start = {}, 0
    for name in HELD_OUT:
        count = max(1, round(spec[f"{name}_fraction"] * len(docs)))
        split.update({docs[i]: name for i in order[start : start + count]})
        start += count
    if start >= len(docs):
        raise InputError(f"only {len(docs)} documents: too few to hold out test, dev and tune sets")
    df["split"] = df.doc_id.map(split).fillna("train")

    def side(key: str, prefix: str, column: str) -> pd.DataFrame:
        return monolingual([([f"{prefix}{k}:{n:08d}" for n in range(1, len(lines) + 1)], f"{key}{k}", lines)
                            for k, path in enumerate(spec.get(key, [])) for lines in [read_lines(path)]], column)

    return df, side("mono", "M", "source"), side("mono_target", "T", "target")
