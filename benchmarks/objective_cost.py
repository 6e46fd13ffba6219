"""Cost of one training step of every student objective against plain cross-entropy, side by side.

All objectives train the same student (a finished run's cross-entropy student) on the same
batches of the same labels, with the run's teacher, one after the other in one process, so the
ratios compare like with like. Speculative KD's cost includes drafting and the teacher passes.

    python benchmarks/objective_cost.py --run results [--student round0/students/top1-both] [--steps 8]

Writes benchmarks/results/objective_cost.{json,md}.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mtdistill import models
from mtdistill.objectives import OBJECTIVES
from mtdistill.training.batches import collate, encode, token_batches

OUT = Path(__file__).resolve().parent / "results"


def objectives(teacher: str, topk: str) -> dict:
    word_kd, skd = OBJECTIVES["word_kd"], OBJECTIVES["skd"]
    return {
        "cross_entropy": OBJECTIVES["cross_entropy"](0.1),
        "word_kd (teacher in the loop)": word_kd(teacher, 0.5, 1.0, 0.1),
        "word_kd (top-16 cache)": word_kd(teacher, 0.5, 1.0, 0.1, topk_path=topk),
        "supervised_kd": OBJECTIVES["supervised_kd"](teacher),
        "skd (K=25)": skd(teacher, 25, 5),
        "on-policy (K=vocabulary)": skd(teacher, -1, 5),
        "teacher-generated (K=0)": skd(teacher, 0, 5),
        "prune 50% + cross_entropy": OBJECTIVES["prune"](0.5, 0.1),
    }


def seconds_per_step(objective, student, tokenizer, table, pairs, batches) -> float:
    model = copy.deepcopy(student).train()
    objective.prepare(model, tokenizer, table, pairs, torch.device("cpu"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    times = []
    for indices in batches:
        batch, labels = collate(pairs, indices, tokenizer.pad_token_id, torch.device("cpu"))
        started = time.perf_counter()
        loss, tokens = objective(model, batch, labels, indices)
        optimizer.zero_grad()
        (loss / tokens).backward()
        optimizer.step()
        times.append(time.perf_counter() - started)
    return float(np.median(times[1:] if len(times) > 1 else times))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default="results")
    p.add_argument("--student", help="cross-entropy student, under --run (default: the last round's top1-both)")
    p.add_argument("--labels", help="labels, under --run (default: the last round's top1 bitext labels)")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--batch-tokens", type=int, default=1024)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    run = Path(args.run)
    last = max((p.parent.name for p in run.glob("round*/students")), key=lambda name: int(name.removeprefix("round")))
    args.student = args.student or f"{last}/students/top1-both"
    args.labels = args.labels or f"{last}/labels/top1/bitext.parquet"
    teacher = str(run / "models" / "teacher")
    student, tokenizer = models.load(run / args.student)
    table = pd.read_parquet(run / args.labels)
    pairs = encode(tokenizer, list(table.source), list(table.label), 128)
    batches = token_batches(pairs, args.batch_tokens, np.random.default_rng(0))[: args.steps]
    topk = Path("/tmp") / "objective_cost_topk.pt"
    from mtdistill import teacher_topk

    torch.save(teacher_topk.teacher_topk(teacher, [str(run / args.labels)], "label", 16, 128, 4096), topk)
    results = {}
    for name, objective in objectives(teacher, str(topk)).items():
        results[name] = seconds_per_step(objective, student, tokenizer, table, pairs, batches)
        print(f"{name:32s} {results[name]:.3f} s/step  x{results[name] / results['cross_entropy']:.2f}", flush=True)
    rows = [{"objective": n, "seconds_per_step": s, "vs_cross_entropy": s / results["cross_entropy"]} for n, s in results.items()]
    meta = {"machine": platform.processor() or platform.machine(), "threads": args.threads, "steps": len(batches),
            "batch_tokens": args.batch_tokens, "student": args.student, "parameters": models.count_parameters(student)}
    OUT.mkdir(exist_ok=True)
    (OUT / "objective_cost.json").write_text(json.dumps({**meta, "results": rows}, indent=2))
    (OUT / "objective_cost.md").write_text(
        f"# Student objectives: seconds per training step (median of {len(batches)}, {args.batch_tokens} batch tokens, "
        f"{args.threads} thread(s))\n\n" + pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3f") + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
