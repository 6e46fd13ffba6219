"""Student speed-up over the teacher on the CPU, at batch size 1 and batched, side by side in one run.

Takes a finished run's teacher and students (`--run results`), and on the same test sentences
measures, interleaving the models rep by rep in one process, greedy decoding one sentence at a time
(batch 1, the interactive case) and beam decoding in batches, with both inference backends
(`transformers` and CTranslate2, each model converted here). Every figure is sentences/s; the speed-up
is the student's throughput over the teacher's under the same backend, batch size and thread count.

    python benchmarks/student_speedup.py --run results [--sentences 100] [--threads 1]

Writes benchmarks/results/student_speedup.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mtdistill import models
from mtdistill.backends import ctranslate2 as ct2
from mtdistill.backends.hf import HFTranslator
from mtdistill.core.io import read_table

OUT = Path(__file__).resolve().parent / "results"


def systems(run: Path, round_: int | None) -> dict[str, Path]:
    """The teacher and every student directory of the run's last (or given) student round."""
    rounds = sorted(int(p.name.removeprefix("round")) for p in run.glob("round*") if (p / "students").is_dir())
    if not rounds:
        raise SystemExit(f"{run}: no round*/students directory; run the workflow first")
    chosen = rounds[-1] if round_ is None else round_
    found = {"teacher": run / "models" / "teacher"}
    found.update({p.name: p for p in sorted((run / f"round{chosen}" / "students").iterdir()) if (p / "config.json").is_file()})
    return found


def throughput(translator, sources: list[str], beam: int, batch_size: int) -> float:
    started = time.perf_counter()
    translator.translate(sources, beam=beam, nbest=1, batch_size=batch_size)
    return len(sources) / (time.perf_counter() - started)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default="results", help="a finished run's results directory")
    p.add_argument("--round", type=int, help="student round (default: the last one with students)")
    p.add_argument("--sentences", type=int, default=100, help="first this many test sentences")
    p.add_argument("--beam", type=int, default=5, help="beam of the batched pass")
    p.add_argument("--batch-size", type=int, default=32, help="sentences per batch of the batched pass")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=3, help="interleaved repetitions; the median counts")
    p.add_argument("--out-dir", default=str(OUT))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    run = Path(args.run)
    sources = list(read_table(run / "data" / "test.parquet").source[: args.sentences])
    modes = {"batch 1, greedy": (1, 1), f"batch {args.batch_size}, beam {args.beam}": (args.beam, args.batch_size)}
    seconds: dict[tuple, list[float]] = {}
    parameters = {}
    with tempfile.TemporaryDirectory() as tmp:
        decoders = {}
        for name, path in systems(run, args.round).items():
            model, tokenizer = models.load(path)
            parameters[name] = models.count_parameters(model)
            translator = ct2.load(ct2.convert(path, Path(tmp) / name), threads=args.threads)
            decoders[name] = {"hf": HFTranslator(model, tokenizer), "ctranslate2": translator}
        for _ in range(args.reps):
            for name, backends in decoders.items():
                for backend, translator in backends.items():
                    for mode, (beam, batch_size) in modes.items():
                        rate = throughput(translator, sources, beam, batch_size)
                        seconds.setdefault((name, backend, mode), []).append(rate)
    rows = []
    for (name, backend, mode), rates in seconds.items():
        teacher = float(np.median(seconds["teacher", backend, mode]))
        rows.append({"system": name, "parameters": parameters[name], "backend": backend, "mode": mode,
                     "sentences/s": float(np.median(rates)), "speed-up over teacher": float(np.median(rates)) / teacher})
    table = pd.DataFrame(rows)
    print(table.to_string(index=False), flush=True)
    meta = {"machine": platform.processor() or platform.machine(), "run": str(run), "sentences": len(sources),
            "threads": args.threads, "reps": args.reps, "torch": torch.__version__}
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "student_speedup.json").write_text(json.dumps({**meta, "results": rows}, indent=2) + "\n")
    (out / "student_speedup.md").write_text(
        "# Student speed-up over the teacher (CPU)\n\n"
        f"{len(sources)} test sentences of {run}, {args.threads} thread(s), median of {args.reps} interleaved reps; "
        "the speed-up divides a student's sentences/s by the teacher's under the same backend and mode.\n\n"
        + table.to_markdown(index=False, floatfmt=".2f") + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
