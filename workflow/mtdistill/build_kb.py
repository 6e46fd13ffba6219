"""Build one shard of a teacher knowledge base (ReAugKD adapted to generation, as kNN-MT).

The teacher is forced on the labelled rows of shard `--shard` of `--labels` (the same contiguous
split as decoding's; rows without a label dropped, labels truncated to --max-len as `train` truncates
them). Every label position becomes an entry: its key is the teacher's final decoder state projected
by `--projection` and L2-normalised, its value the teacher's top `--values-k` next-token log-probs
there (as teacher_topk computes). The keys go into a FAISS index (`--index flat` exact, `ivfpq`
approximate, for large bases). kb.json records the size, memory per million target tokens and build
time. Output: a shard directory (mtdistill.retrieval.kb).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from . import models
from .core.cli import run_main
from .core.io import atomic_path, read_table
from .decode import shard_rows
from .retrieval import kb
from .retrieval.head import load_linear
from .retrieval.projection import project
from .teacher_topk import add_teacher_forcing_options, frozen_teacher, label_pairs, teacher_forced

log = logging.getLogger("mtdistill")


def build_shard(args) -> dict:
    started = time.perf_counter()
    teacher, tokenizer, device = frozen_teacher(args.teacher)
    head, head_meta = load_linear(args.projection, "mtdistill.kb_projection")
    table = shard_rows(read_table(args.labels), args.shard, args.num_shards)
    table, pairs = label_pairs(tokenizer, table, args.label_column, args.max_len)
    rows = teacher_forced(teacher, pairs, tokenizer.pad_token_id, args.values_k, args.batch_tokens, args.precision,
                          device, states=True)
    teacher_seconds = time.perf_counter() - started
    width = head.in_features
    states = np.concatenate(rows["states"]) if pairs else np.zeros((0, width), dtype=np.float32)
    keys = project(head, states)
    value_ids = np.concatenate([r.numpy() for r in rows["ids"]]) if pairs else np.zeros((0, args.values_k), np.int32)
    value_logprobs = (np.concatenate([r.float().numpy() for r in rows["logprobs"]]) if pairs
                      else np.zeros((0, args.values_k), np.float32))
    next_tokens = np.concatenate([label for _, label in pairs]) if pairs else np.zeros(0, np.int64)
    settings = kb.IndexSettings(args.index, args.nlist, args.pq_m, args.pq_bits, args.nprobe, args.seed)
    index_started = time.perf_counter()
    index = kb.build_index(keys, settings, f"{args.labels} shard {args.shard}")
    index_seconds = time.perf_counter() - index_started
    meta = {"teacher": args.teacher, "projection": args.projection, "labels": args.labels, "shard": args.shard,
            "num_shards": args.num_shards, "max_len": args.max_len, "index": vars(settings),
            "projection_temperature": head_meta.get("temperature"), "device": str(device),
            "teacher_seconds": teacher_seconds, "index_seconds": index_seconds}
    with atomic_path(args.out) as tmp:
        meta = kb.write_shard(Path(tmp), index, keys, value_ids, value_logprobs, next_tokens,
                              [len(label) for _, label in pairs], list(table.sent_id),
                              {**meta, "build_seconds": time.perf_counter() - started})
    log.info("%d entries from %d rows, %s index %.1f MB + values %.1f MB (%.1f MB per million target tokens), "
             "built in %.1f s", meta["tokens"], meta["rows"], args.index, meta["memory_bytes"]["index"] / 2**20,
             meta["memory_bytes"]["values"] / 2**20, meta["mb_per_million_tokens"], meta["build_seconds"])
    return meta


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    add_teacher_forcing_options(p)
    p.add_argument("--projection", required=True, help="the teacher's projection head (mtdistill.kb_projection)")
    p.add_argument("--labels", required=True, help="a label table")
    p.add_argument("--shard", type=int, default=0)
    p.add_argument("--num-shards", type=int, default=1)
    p.add_argument("--values-k", type=int, default=16, help="teacher next-token probabilities kept per entry")
    p.add_argument("--index", choices=kb.INDEXES, default="flat")
    p.add_argument("--nlist", type=int, default=64, help="ivfpq: inverted lists")
    p.add_argument("--pq-m", type=int, default=16, help="ivfpq: sub-quantizers (bytes per key at 8 bits)")
    p.add_argument("--pq-bits", type=int, default=8, help="ivfpq: bits per code")
    p.add_argument("--nprobe", type=int, default=8, help="ivfpq: lists searched per query")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", required=True, help="the shard directory")
    args = p.parse_args(argv)
    if not 0 <= args.shard < args.num_shards:
        p.error(f"--shard must be in [0, {args.num_shards})")
    if args.values_k < 1:
        p.error("--values-k must be at least 1")
    return args


def run(args) -> None:
    models.set_threads(args.threads)
    import faiss

    faiss.omp_set_num_threads(args.threads)
    build_shard(args)


def main(argv=None) -> int:
    return run_main(run, parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
