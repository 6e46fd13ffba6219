"""Train one shared SentencePiece vocabulary on the training text (both sides)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .core.io import atomic_path, read_table

from .core.cli import run_main
from .models import train_tokenizer


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--train", required=True, help="training table (Parquet) with source and target")
    p.add_argument("--vocab-size", type=int, default=8000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True, help="tokenizer directory to write")
    return p.parse_args(argv)


def run(args) -> None:
    train = read_table(args.train, columns=["source", "target"])
    texts = list(train.source) + list(train.target)
    with atomic_path(args.out) as tmp:
        train_tokenizer(texts, args.vocab_size, Path(tmp), seed=args.seed, threads=args.threads)


def main(argv=None) -> int:
    return run_main(run, parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
