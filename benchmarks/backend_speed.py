"""Side-by-side speed of the two inference backends on one model: `transformers` (hf) vs CTranslate2.

Converts the model (`mtdistill.ct2`), then, interleaving the backends rep by rep in one process on
the CPU: n-best decoding (sentences/s, `Translator.translate`) and forced-decoding scoring of those
n-best lists (hypotheses/s, `Translator.forced_logprobs`), for each thread count. It also reports how
well the backends agree (same top hypothesis, largest score difference), so a faster but different
result cannot pass for a speed-up.

    python benchmarks/backend_speed.py --model results/models/teacher --input results/data/tune.parquet

Writes benchmarks/results/backend_speed.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import ctranslate2
import numpy as np
import pandas as pd
import torch

from mtdistill import models
from mtdistill.backends import ctranslate2 as ct2
from mtdistill.backends.hf import HFTranslator
from mtdistill.core.io import read_table

OUT = Path(__file__).resolve().parent / "results"


def timed(func):
    started = time.perf_counter()
    result = func()
    return result, time.perf_counter() - started


def measure(reference, translator, sources: list[str], threads: int, args) -> list[dict]:
    """Rows of sentences/s and hypotheses/s of both backends at one thread count (median of the reps)."""
    torch.set_num_threads(threads)
    options = {"beam": args.beam, "nbest": args.nbest, "batch_size": args.batch_size, "max_len_a": args.max_len_a,
               "max_len_b": args.max_len_b}
    seconds = {key: [] for key in ("hf decode", "ct2 decode", "hf score", "ct2 score")}
    for rep in range(args.reps):
        hf, t = timed(lambda: reference.translate(sources, **options))
        seconds["hf decode"].append(t)
        fast, t = timed(lambda: translator.translate(sources, **options))
        seconds["ct2 decode"].append(t)
        outputs = [[h for h, _ in nbest] for nbest in hf]
        hf_scores, t = timed(lambda: reference.forced_logprobs(sources, outputs, args.score_batch_size))
        seconds["hf score"].append(t)
        fast_scores, t = timed(lambda: translator.forced_logprobs(sources, outputs, args.score_batch_size))
        seconds["ct2 score"].append(t)
    hypotheses = sum(map(len, outputs))
    same_top = float(np.mean([a[0][0] == b[0][0] for a, b in zip(hf, fast)]))
    beam_diff = max((abs(x[1] - y[1]) for a, b in zip(hf, fast) for x, y in zip(a, b) if x[0] == y[0]), default=float("nan"))
    forced_diff = max(abs(a[0] - b[0]) for a, b in zip(hf_scores, fast_scores))
    median = {key: float(np.median(values)) for key, values in seconds.items()}
    decode_row = {
        "task": f"n-best decoding (beam {args.beam}, {args.nbest}-best, batch {args.batch_size})", "threads": threads,
        "unit": "sentences/s", "hf": len(sources) / median["hf decode"], "ctranslate2": len(sources) / median["ct2 decode"],
        "agreement": f"top-1 same {same_top:.1%}, score diff <= {beam_diff:.1e}",
    }
    score_row = {
        "task": f"forced-decoding scoring (batch {args.score_batch_size} sources)", "threads": threads,
        "unit": "hypotheses/s", "hf": hypotheses / median["hf score"], "ctranslate2": hypotheses / median["ct2 score"],
        "agreement": f"log-prob diff <= {forced_diff:.1e}",
    }
    rows = [decode_row, score_row]
    for row in rows:
        row["speedup"] = row["ctranslate2"] / row["hf"]
        print(f"{threads} thread(s) {row['task']:60s} hf {row['hf']:8.1f}  ct2 {row['ctranslate2']:8.1f} {row['unit']}"
              f"  x{row['speedup']:.2f}  ({row['agreement']})", flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="results/models/teacher", help="Hugging Face seq2seq model directory")
    p.add_argument("--input", default="results/data/tune.parquet", help="sentence table with a source column")
    p.add_argument("--sentences", type=int, default=200, help="first this many sources (all if fewer)")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--nbest", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32, help="decoding: source sentences per batch")
    p.add_argument("--score-batch-size", type=int, default=16, help="scoring: source sentences per batch")
    p.add_argument("--max-len-a", type=float, default=1.5)
    p.add_argument("--max-len-b", type=int, default=10)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--reps", type=int, default=3, help="interleaved repetitions; the median counts")
    p.add_argument("--out-dir", default=str(OUT))
    args = p.parse_args(argv)
    sources = list(read_table(args.input).source[: args.sentences])
    model, tokenizer = models.load(args.model)
    reference = HFTranslator(model, tokenizer)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        converted = ct2.convert(args.model, Path(tmp) / "ct2")
        for threads in args.threads:
            translator = ct2.load(converted, threads=threads)
            translator.translate(sources[:8], beam=args.beam, nbest=args.nbest)  # warm-up
            reference.translate(sources[:8], beam=args.beam, nbest=args.nbest)
            rows.extend(measure(reference, translator, sources, threads, args))
            del translator
    meta = {"machine": platform.processor() or platform.machine(), "device": str(next(model.parameters()).device),
            "ctranslate2_device": ct2.device(), "model": args.model,
            "parameters": models.count_parameters(model), "input": args.input, "sentences": len(sources),
            "reps": args.reps, "torch": torch.__version__, "ctranslate2": ctranslate2.__version__}
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "backend_speed.json").write_text(json.dumps({**meta, "results": rows}, indent=2) + "\n")
    table = pd.DataFrame(rows)[["task", "threads", "unit", "hf", "ctranslate2", "speedup", "agreement"]]
    (out / "backend_speed.md").write_text(
        f"# Inference backends: transformers (hf) vs CTranslate2, side by side\n\n"
        f"{args.model} ({meta['parameters']:,} parameters), {len(sources)} sentences of {args.input}, median of "
        f"{args.reps} interleaved reps; float32 on both sides, device {meta['device']}.\n\n" + table.to_markdown(index=False, floatfmt=".2f") + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
