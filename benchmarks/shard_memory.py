"""Peak memory of decoding and scoring one shard at 1x and 4x its size, side by side in one run.

Each step runs as its own process (as a Snakemake job does) on n-best shards built from real
training sentences; its peak resident memory comes from the OS. Memory that stays nearly flat
from 1x to 4x means a step streams its shard in batches, so a transfer set of any size fits by
adding shards, not memory.

    python benchmarks/shard_memory.py --run results [--sentences 300]

--run is a finished workflow run (its results/ directory): its teacher, helper models and
training data are used. Writes benchmarks/results/shard_memory.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__file__).resolve().parent / "results"


def peak_rss_mb(argv: list[str]) -> tuple[float, float]:
    """(peak RSS in MB, seconds) of one child process; children are measured one at a time."""
    started = time.perf_counter()
    pid = subprocess.Popen([sys.executable, "-m", *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE).pid
    _, status, usage = os.wait4(pid, 0)
    if status != 0:
        raise SystemExit(f"{' '.join(argv)} failed with status {status}")
    return usage.ru_maxrss / 1024, time.perf_counter() - started


def shard(sentences: pd.DataFrame, hypotheses: int, rng: np.random.Generator) -> pd.DataFrame:
    """An n-best shard: per sentence its reference and copies with one word dropped."""
    rows = []
    for sent_id, target in zip(sentences.sent_id, sentences.target):
        words = target.split()
        for k in range(hypotheses):
            drop = rng.integers(len(words)) if k and len(words) > 1 else None
            rows.append((sent_id, k, " ".join(w for i, w in enumerate(words) if i != drop), 0.0))
    return pd.DataFrame(rows, columns=["sent_id", "hyp_id", "hypothesis", "score"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default="results", help="results/ directory of a finished run")
    p.add_argument("--sentences", type=int, default=300, help="sentences in the 1x shard")
    p.add_argument("--hypotheses", type=int, default=8)
    args = p.parse_args(argv)
    run = Path(args.run)
    train = pd.read_parquet(run / "data" / "train.parquet")
    rng = np.random.default_rng(1)
    steps = {
        "decode (teacher, beam 8)": lambda s, n: ["mtdistill.decode", "--model", str(run / "models/teacher"), "--input", s,
                                                  "--beam", "8", "--nbest", "8", "--out", f"{n}.out.parquet"],
        "score forced_decoding": lambda s, n: ["mtdistill.score", "--kind", "forced_decoding", "--name", "t", "--model",
                                               str(run / "models/teacher"), "--nbest", n, "--sources", s, "--out", f"{n}.f"],
        "score backward": lambda s, n: ["mtdistill.score", "--kind", "backward", "--name", "b", "--model",
                                        str(run / "models/backward"), "--batch-size", "64", "--nbest", n, "--sources", s, "--out", f"{n}.b"],
        "score lm": lambda s, n: ["mtdistill.score", "--kind", "lm", "--name", "l", "--model", str(run / "models/lm"),
                                  "--batch-size", "64", "--nbest", n, "--sources", s, "--out", f"{n}.l"],
        "score mbr": lambda s, n: ["mtdistill.score", "--kind", "mbr", "--name", "m", "--nbest", n, "--sources", s, "--out", f"{n}.m"],
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for scale in (1, 4):
            sentences = train.sample(args.sentences * scale, random_state=scale)
            files[scale] = (f"{tmp}/sentences{scale}.parquet", f"{tmp}/nbest{scale}.parquet")
            sentences.to_parquet(files[scale][0])
            shard(sentences, args.hypotheses, rng).to_parquet(files[scale][1])
        for step, command in steps.items():
            if "backward" in step and not (run / "models/backward").exists() or "lm" in step and not (run / "models/lm").exists():
                continue
            (mb1, s1), (mb4, s4) = (peak_rss_mb(command(*files[scale])) for scale in (1, 4))
            rows.append({"step": step, "peak_mb_1x": mb1, "peak_mb_4x": mb4, "memory_ratio_4x_1x": mb4 / mb1,
                         "seconds_1x": s1, "seconds_4x": s4})
            print(f"{step:28s} {mb1:8.0f} MB {mb4:8.0f} MB  x{mb4 / mb1:.2f}", flush=True)
    table = pd.DataFrame(rows)
    OUT.mkdir(exist_ok=True)
    meta = {"sentences_1x": args.sentences, "hypotheses": args.hypotheses, "machine": platform.machine(), "cpus": os.cpu_count()}
    (OUT / "shard_memory.json").write_text(json.dumps({**meta, "steps": rows}, indent=2) + "\n")
    (OUT / "shard_memory.md").write_text(
        f"Peak memory per job, shard of {args.sentences} sentences (1x) and {4 * args.sentences} (4x), "
        f"{args.hypotheses} hypotheses each:\n\n" + table.to_markdown(index=False, floatfmt=".2f") + "\n")
    print(table.to_markdown(index=False, floatfmt=".2f"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
