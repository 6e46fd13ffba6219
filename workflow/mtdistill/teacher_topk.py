"""Precompute the teacher's top-k next-token log-probabilities on a student's label sequences.

Word-level KD then needs no teacher in the training loop: the KL is truncated to these k tokens
(the teacher renormalised over them). Rows follow the training tables exactly as `train` reads
them (the same files, in the same order, rows without a label dropped), and the file records their
sent_ids, which `train` checks. Output: a torch file {teacher, k, max_len, sent_ids, ids, logprobs},
one (tokens, k) int32 / float16 pair per row; `max_len` is the truncation the rows were encoded
with, named when a training run with a longer one finds labels its rows do not cover.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from tqdm import tqdm

from . import models
from .core.io import atomic_path, read_tables
from .core.cli import run_main
from .training.batches import autocast, collate, encode, resolve_precision, token_batches


def frozen_teacher(path: str):
    """The teacher in eval mode on this job's device, its tokenizer and the device."""
    teacher, tokenizer = models.load(path, "--teacher")
    device = models.device()
    return teacher.to(device).eval(), tokenizer, device


def add_teacher_forcing_options(p: argparse.ArgumentParser) -> None:
    """The options of every step that forces the teacher on label tables (teacher_topk, kb_projection, build_kb)."""
    p.add_argument("--teacher", required=True)
    p.add_argument("--label-column", default="label")
    p.add_argument("--max-len", type=int, default=128, help="label tokens kept, as training truncates them")
    p.add_argument("--batch-tokens", type=int, default=4096)
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                   help="the teacher's forward pass: auto is bf16 on a GPU that supports it, else fp32")
    p.add_argument("--threads", type=int, default=1)


@torch.no_grad()
def teacher_forced(teacher, pairs, pad: int, k: int, batch_tokens: int, precision: str, device,
                   states: bool = False) -> dict:
    """Per row: the teacher's top-k next-token ids (int32) and log-probs (float16) at every label
    position and, with `states`, its final decoder states there (float32, the knowledge base's keys)."""
    precision = resolve_precision(precision, device)
    rows = {"ids": [None] * len(pairs), "logprobs": [None] * len(pairs)}
    if states:
        rows["states"] = [None] * len(pairs)
    for indices in tqdm(token_batches(pairs, batch_tokens, np.random.default_rng(0)), desc="teacher forced",
                        mininterval=30):
        batch, labels = collate(pairs, indices, pad, device, teacher.config.decoder_start_token_id)
        with autocast(device, precision):
            out = teacher(**batch, output_hidden_states=states)
        top = torch.log_softmax(out.logits.float(), -1).topk(k, -1)
        for row, index in enumerate(indices):
            length = len(pairs[index][1])
            rows["ids"][index] = top.indices[row, :length].to(torch.int32).cpu()
            rows["logprobs"][index] = top.values[row, :length].to(torch.float16).cpu()
            if states:
                rows["states"][index] = out.decoder_hidden_states[-1][row, :length].float().cpu().numpy()
    return rows


def label_pairs(tokenizer, table, label_column: str, max_len: int):
    """The rows with a label and their (source ids, label ids) pairs, encoded as `train` encodes them."""
    table = table.dropna(subset=[label_column])
    return table, encode(tokenizer, list(table.source), list(table[label_column]), max_len)


def teacher_topk(teacher_path: str, tables: list[str], label_column: str, k: int, max_len: int, batch_tokens: int,
                 precision: str = "auto") -> dict:
    teacher, tokenizer, device = frozen_teacher(teacher_path)
    table, pairs = label_pairs(tokenizer, read_tables(tables), label_column, max_len)
    rows = teacher_forced(teacher, pairs, tokenizer.pad_token_id, k, batch_tokens, precision, device)
    return {"teacher": teacher_path, "k": k, "max_len": max_len, "sent_ids": list(table.sent_id), **rows}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    add_teacher_forcing_options(p)
    p.add_argument("--train", nargs="+", required=True, help="the student's training tables")
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--out", required=True)
    return p.parse_args(argv)


def run(args) -> None:
    models.set_threads(args.threads)
    cache = teacher_topk(args.teacher, args.train, args.label_column, args.k, args.max_len, args.batch_tokens, args.precision)
    with atomic_path(args.out) as tmp:
        torch.save(cache, tmp)


def main(argv=None) -> int:
    return run_main(run, parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
