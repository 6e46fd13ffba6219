"""What decoding with retrieval costs: a retrieval-augmented student with and without its knowledge
base, side by side in one run.

Takes a finished run (`--run results`) and, for every student with a tuned kNN weight
(results/round<r>/retrieval/<student>.json), decodes the same test sentences with the student alone
and with p = (1 - beta) p_student + beta p_kNN at its tuned beta (beta 0.5 where it tuned 0, so the
search is measured), interleaving the two rep by rep: greedy at batch size 1 (the interactive case)
and beam in batches. Figures are milliseconds per sentence; the overhead is their difference and
ratio. The knowledge base's memory is what decoding holds (index and values).

    python benchmarks/retrieval_latency.py --run results [--sentences 50] [--threads 1]

Writes benchmarks/results/retrieval_latency.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mtdistill import models
from mtdistill.backends.hf import HFTranslator
from mtdistill.core.io import read_json, read_table
from mtdistill.retrieval.knn import Retrieval, set_search_threads

OUT = Path(__file__).resolve().parent / "results"


def ms_per_sentence(translator, sources: list[str], beam: int, batch_size: int) -> float:
    started = time.perf_counter()
    translator.translate(sources, beam=beam, nbest=1, batch_size=batch_size)
    return 1000 * (time.perf_counter() - started) / len(sources)


def measure(run: Path, tuned_path: Path, sources: list[str], reps: int, beam: int, batch_size: int) -> dict:
    tuned = read_json(tuned_path)
    student = run.parent / tuned["model"] if not Path(tuned["model"]).is_absolute() else Path(tuned["model"])
    shards = [str(run.parent / shard) for shard in tuned["kb"]]
    model, tokenizer = models.load(student)
    beta = tuned["best_beta"] or 0.5
    plain = HFTranslator(model.eval(), tokenizer)
    mixed = HFTranslator(model, tokenizer, Retrieval.load(student, shards, beta))
    modes = {"batch1_greedy": (1, 1), "batched_beam": (beam, batch_size)}
    timings = {(name, mode): [] for name in ("plain", "retrieval") for mode in modes}
    for _ in range(reps):
        for mode, (width, size) in modes.items():
            for name, translator in (("plain", plain), ("retrieval", mixed)):
                timings[name, mode].append(ms_per_sentence(translator, sources, width, size))
    result = {"student": student.name, "beta": beta, "tuned_beta": tuned["best_beta"], "neighbours": tuned["neighbours"],
              "kb_tokens": mixed.retrieval.kb.size, "kb_memory_mb": mixed.retrieval.describe()["kb_memory_mb"],
              "index": mixed.retrieval.kb.metas[0]["index"]["kind"]}
    for mode in modes:
        plain_ms, knn_ms = (float(np.median(timings[name, mode])) for name in ("plain", "retrieval"))
        result[mode] = {"plain_ms": plain_ms, "retrieval_ms": knn_ms, "overhead_ms": knn_ms - plain_ms,
                        "ratio": knn_ms / plain_ms}
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default="results", help="a finished run's results directory")
    p.add_argument("--sentences", type=int, default=50, help="first this many test sentences")
    p.add_argument("--beam", type=int, default=5, help="beam of the batched pass")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=3, help="interleaved repetitions; the median counts")
    p.add_argument("--out", default=str(OUT / "retrieval_latency"), help="output path without extension")
    args = p.parse_args(argv)
    run = Path(args.run)
    tuned = sorted(run.glob("round*/retrieval/*.json"))
    if not tuned:
        raise SystemExit(f"{run}: no round*/retrieval/*.json; run a config with a reaugkd student first")
    torch.set_num_threads(args.threads)
    set_search_threads(args.threads)
    sources = list(read_table(run / "data" / "test.parquet").source[: args.sentences])
    results = [{"round": int(path.parent.parent.name.removeprefix("round")),
                **measure(run, path, sources, args.reps, args.beam, args.batch_size)} for path in tuned]
    record = {"run": str(run), "sentences": len(sources), "threads": args.threads, "reps": args.reps,
              "machine": f"{platform.machine()}, {torch.get_num_threads()} torch thread(s)", "students": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps(record, indent=1))
    rows = [{"student": r["student"], "round": r["round"], "index": r["index"], "KB tokens": r["kb_tokens"],
             "KB MB": r["kb_memory_mb"], "beta": r["beta"], "k": r["neighbours"],
             **{f"{mode} {key}": r[mode][key] for mode in ("batch1_greedy", "batched_beam")
                for key in ("plain_ms", "retrieval_ms", "overhead_ms", "ratio")}} for r in results]
    table = pd.DataFrame(rows).to_markdown(index=False, floatfmt=".2f")
    text = (f"# Decoding with retrieval: latency\n\n{len(sources)} test sentences of `{run}`, {args.threads} thread(s), "
            f"median of {args.reps} interleaved reps; ms per sentence without and with the knowledge base.\n\n{table}\n")
    Path(f"{args.out}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
