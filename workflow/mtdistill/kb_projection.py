"""Train the teacher's projection head of a knowledge base (ReAugKD's step 1, token level).

The teacher is forced on (source, label) pairs of the transfer labels (`--sentences` of them, drawn
with the seed); its final decoder state at every label position is mapped to `--dim` (the student's
width) by a linear head trained with a supervised contrastive loss whose positives share the next
token (`mtdistill.retrieval.projection`). `build_kb` projects every key with it.
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np

from . import models
from .core.cli import run_main
from .core.io import InputError, read_tables
from .retrieval.head import save_linear
from .retrieval.projection import train_projection
from .teacher_topk import add_teacher_forcing_options, frozen_teacher, label_pairs, teacher_forced

log = logging.getLogger("mtdistill")


def projection(args) -> None:
    started = time.perf_counter()
    teacher, tokenizer, device = frozen_teacher(args.teacher)
    table, pairs = label_pairs(tokenizer, read_tables(args.labels), args.label_column, args.max_len)
    if not pairs:
        raise InputError(f"{args.labels[0]}: no labelled rows to train the projection on")
    rng = np.random.default_rng(args.seed)
    chosen = np.sort(rng.choice(len(pairs), size=min(args.sentences, len(pairs)), replace=False))
    pairs = [pairs[i] for i in chosen]
    rows = teacher_forced(teacher, pairs, tokenizer.pad_token_id, 1, args.batch_tokens, args.precision, device,
                          states=True)
    states = np.concatenate(rows["states"])
    next_tokens = np.concatenate([label for _, label in pairs]).astype(np.int64)
    head, record = train_projection(states, next_tokens, args.dim, args.temperature, args.epochs, args.batch_size,
                                    args.lr, args.max_per_token, args.seed)
    log.info("projection %d -> %d on %d of %d positions (%d next tokens): contrastive loss per epoch %s",
             states.shape[1], args.dim, record["kept_tokens"], record["tokens"], record["token_types"],
             " ".join(f"{x:.4f}" for x in record["loss_per_epoch"]))
    save_linear(head, args.out, teacher=args.teacher, sentences=len(pairs), temperature=args.temperature,
                epochs=args.epochs, max_per_token=args.max_per_token, seconds=time.perf_counter() - started,
                **record)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    add_teacher_forcing_options(p)
    p.add_argument("--labels", nargs="+", required=True, help="label tables (the knowledge base's transfer labels)")
    p.add_argument("--dim", type=int, required=True, help="key dimension: the student's d_model")
    p.add_argument("--sentences", type=int, default=2000, help="label rows the head is trained on")
    p.add_argument("--temperature", type=float, default=0.1, help="of the contrastive loss")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=1024, help="positions per contrastive batch")
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--max-per-token", type=int, default=50, help="positions kept per next token (subsampling)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", required=True, help="the head (torch file)")
    args = p.parse_args(argv)
    for name in ("dim", "sentences", "epochs", "batch_size", "max_per_token"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.temperature <= 0:
        p.error("--temperature must be positive")
    return args


def run(args) -> None:
    models.set_threads(args.threads)
    projection(args)


def main(argv=None) -> int:
    return run_main(run, parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
