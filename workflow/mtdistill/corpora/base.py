"""The corpus readers' registry and what readers share."""

from __future__ import annotations

import pandas as pd

from ..core.registry import Registry

READERS = Registry("corpora")
HELD_OUT = ("test", "dev", "tune")  # earlier sets win when a sentence occurs in several


def monolingual(parts: list[tuple], column: str) -> pd.DataFrame:
    """One monolingual table from (sent_ids, doc_ids, texts) parts, `column` holding the texts."""
    frames = [pd.DataFrame({"sent_id": ids, "doc_id": docs, column: texts}) for ids, docs, texts in parts]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["sent_id", "doc_id", column])

