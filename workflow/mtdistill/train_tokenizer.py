"""Train one shared SentencePiece vocabulary (Marian layout, <pad> last) on the text of some columns
of some tables: the training data's source and target, or a student's label files' source and label
(rows without a label are dropped, as the students' training drops them)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from .core.io import InputError, atomic_path, read_table

from .core.cli import run_main
from .models import train_tokenizer


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--train", nargs="+", required=True, help="training table(s) (Parquet) with the --columns")
    p.add_argument("--columns", nargs="+", default=["source", "target"], help="text columns (source target)")
    p.add_argument("--vocab-size", type=int, default=8000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True, help="tokenizer directory to write")
    return p.parse_args(argv)


def texts(paths: list[str], columns: list[str]) -> list[str]:
    """Every column's text of the tables' rows that have all of them, one column after the other."""
    tables = []
    for path in paths:
        if not Path(path).exists():
            raise InputError(f"{path}: file not found")
        names = pq.read_schema(path).names
        missing = [column for column in columns if column not in names]
        if missing:
            raise InputError(f"{path}: no column {missing[0]!r} (has {', '.join(names)})")
        tables.append(read_table(path, columns=columns))
    rows = pd.concat(tables, ignore_index=True).dropna()
    if rows.empty:
        raise InputError(f"{', '.join(paths)}: no row with {' and '.join(columns)} to train a vocabulary on")
    return [text for column in columns for text in rows[column]]


def run(args) -> None:
    with atomic_path(args.out) as tmp:
        train_tokenizer(texts(args.train, args.columns), args.vocab_size, Path(tmp), seed=args.seed,
                        threads=args.threads)


def main(argv=None) -> int:
    return run_main(run, parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
