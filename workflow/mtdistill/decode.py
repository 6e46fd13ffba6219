"""Teacher n-best decoding of one shard of a sentence table.

Output (Parquet): `sent_id, hyp_id, hypothesis, score`, where hyp_id 0 is the beam's best and
score is the length-normalised log-probability (sum of token log-probs including EOS, divided by
the number of target tokens; a forced language token or a causal teacher's prompt never counts), the
same value CTranslate2 reports. `--search sample` draws the n-best list instead (seeded), hyp_id in
the order drawn. `--backend ctranslate2` decodes
with a model converted by `mtdistill.ct2` (the same n-best lists, 3-4x faster on CPU).
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
import pandas as pd

from . import backends, models
from .core.io import read_table, write_table
from .core.cli import run_main

log = logging.getLogger("mtdistill")


def shard_rows(table: pd.DataFrame, shard: int, num_shards: int) -> pd.DataFrame:
    """Contiguous slice `shard` of `num_shards`; every row lands in exactly one shard."""
    bounds = np.linspace(0, len(table), num_shards + 1).round().astype(int)
    return table.iloc[bounds[shard] : bounds[shard + 1]]


def decode_table(translator, table: pd.DataFrame, beam: int, nbest: int, batch_size: int, max_len_a: float,
                 max_len_b: int, r2l: bool = False, sampling: backends.Sampling | None = None) -> pd.DataFrame:
    hyps = translator.translate(list(table.source), beam, nbest, batch_size, max_len_a, max_len_b, progress=True, r2l=r2l,
                                sampling=sampling)
    rows = [
        (sent_id, hyp_id, text, score)
        for sent_id, nbest_list in zip(table.sent_id, hyps)
        for hyp_id, (text, score) in enumerate(nbest_list)
    ]
    return pd.DataFrame(rows, columns=["sent_id", "hyp_id", "hypothesis", "score"])


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", required=True, help="model directory or Hugging Face id")
    p.add_argument("--input", required=True, help="sentence table (Parquet) with sent_id and source")
    p.add_argument("--shard", type=int, default=0)
    p.add_argument("--num-shards", type=int, default=1)
    p.add_argument("--beam", type=int, default=8)
    p.add_argument("--nbest", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=32, help="source sentences per batch")
    p.add_argument("--max-len-a", type=float, default=1.5)
    p.add_argument("--max-len-b", type=int, default=10)
    p.add_argument("--r2l", action="store_true", help="the model writes right to left (trained with --direction r2l)")
    p.add_argument("--backend", choices=backends.BACKENDS, default="hf",
                   help="ctranslate2: --model is a directory converted by mtdistill.ct2")
    p.add_argument("--compute-type", default="default", help="ctranslate2 compute type (default: as converted)")
    p.add_argument("--search", choices=["beam", "sample"], default="beam",
                   help="sample: --nbest draws per source (--beam unused) with --temperature and --top-p")
    p.add_argument("--temperature", type=float)
    p.add_argument("--top-p", type=float)
    p.add_argument("--seed", type=int, default=1, help="the draws of --search sample (with the shard)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if not 0 <= args.shard < args.num_shards:
        p.error(f"--shard must be in [0, {args.num_shards})")
    if args.search == "beam" and args.nbest > args.beam:
        p.error("--nbest cannot exceed --beam")
    if args.search == "beam" and (args.temperature is not None or args.top_p is not None):
        p.error("--temperature and --top-p: only --search sample draws")
    return args


def sampling(args) -> backends.Sampling | None:
    """The draws of --search sample: each shard its own seed, so shards do not repeat each other's draws."""
    if args.search != "sample":
        return None
    return backends.Sampling(args.temperature or 1.0, args.top_p or 1.0, args.seed * 1000 + args.shard)


def run(args) -> None:
    models.set_threads(args.threads)
    translator = backends.load(args.model, args.backend, threads=args.threads, compute_type=args.compute_type)
    table = shard_rows(read_table(args.input), args.shard, args.num_shards)
    draws = sampling(args)
    search = f"{args.nbest} samples ({draws})" if draws else f"beam {args.beam}, {args.nbest}-best"
    log.info("decoding %d sentences (shard %d/%d) with %s, %s%s", len(table), args.shard, args.num_shards,
             args.backend, search, ", right to left" if args.r2l else "")
    nbest = decode_table(translator, table, args.beam, args.nbest, args.batch_size, args.max_len_a, args.max_len_b,
                         args.r2l, draws)
    write_table(nbest, args.out)


def main(argv=None) -> int:
    return run_main(run, parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
