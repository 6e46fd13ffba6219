"""Speculative KD's acceptance rate against K, measured before training, to choose K.

SKD (Xu et al. 2024) interpolates between on-policy KD (every student draft kept) and
teacher-generated sequences (none kept); which K puts a student in between depends on the student
and teacher. For each --k-values K this runs the generation SKD trains on (`objectives.speculator`,
built as `SpeculativeKD` builds it, its sampling defaults the objective's) with the student
in eval mode over a seeded sample of the training sources, and reports (`sweep`, one row per K)

    acceptance = student tokens kept / tokens generated

with the tokens generated and the seconds taken. `chosen_k` is the K whose acceptance is closest to
TARGET among those within ACCEPTANCE_RANGE (ties: the smaller K), null if none is;
`train --objective skd --k auto --acceptance <out>` trains with it. Every K starts from the same generator state (--seed), so the
output is deterministic given --seed except for the seconds.

    python -m mtdistill.skd_acceptance --student S --teacher T --labels train.parquet --k-values 1 2 3 5 10 25 --out acceptance.json
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np
import torch

from . import models
from .core.io import InputError, read_tables, write_json
from .core.cli import run_main
from .objectives.speculative import SpeculativeKD
from .objectives.speculator import speculator
from .objectives.teacher import load_teacher

log = logging.getLogger("mtdistill")

TARGET = 0.55
ACCEPTANCE_RANGE = (0.3, 0.8)
CHOICE = (f"the K whose acceptance is closest to {TARGET} among those with {ACCEPTANCE_RANGE[0]} <= acceptance <= "
          f"{ACCEPTANCE_RANGE[1]} (ties: the smaller K); null if none")


def choose_k(results: list[dict]) -> int | None:
    """The rule in CHOICE, over sweep rows with `k` and `acceptance`."""
    low, high = ACCEPTANCE_RANGE
    inside = [r for r in results if low <= r["acceptance"] <= high]
    if not inside:
        return None
    # distances rounded, so that 0.5 and 0.6 tie around 0.55 despite floating point
    return min(inside, key=lambda r: (round(abs(r["acceptance"] - TARGET), 9), r["k"]))["k"]


def sample_sources(tables: list[str], sentences: int, seed: int) -> list[str]:
    """A seeded sample of the tables' sources, in table order (the same sample whatever the K)."""
    table = read_tables(tables)
    if "source" not in table.columns:
        raise InputError(f"{tables[0]}: no column 'source' (has {', '.join(table.columns)})")
    sources = [s for s in table.source if isinstance(s, str) and s]
    if not sources:
        raise InputError(f"{', '.join(tables)}: no source sentences")
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(sources), size=min(sentences, len(sources)), replace=False))
    return [sources[i] for i in chosen]


def batches(tokenizer, sources: list[str], batch_size: int, max_len: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(input_ids, attention_mask) as training collates sources: truncated at max_len, padded with <pad>."""
    ids = tokenizer(sources, truncation=True, max_length=max_len)["input_ids"]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # little padding; stable, so deterministic
    pad, out = tokenizer.pad_token_id, []
    for start in range(0, len(order), batch_size):
        rows = [torch.tensor(ids[i]) for i in order[start:start + batch_size]]
        input_ids = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=pad)
        out.append((input_ids, input_ids != pad))
    return out


def measure(student_path: str, teacher_path: str, tables: list[str], k_values: list[int], gamma: int,
            sentences: int = 128, batch_size: int = 16, max_len_a: float = 1.5, max_len_b: int = 10,
            max_len: int = 128, seed: int = 1, student_sampling: tuple[float, float] | None = None,
            teacher_sampling: tuple[float, float] | None = None) -> dict:
    """Acceptance, tokens and seconds of SKD generation per K, and the K the rule chooses."""
    defaults = SpeculativeKD.keys
    student_sampling = student_sampling or (defaults["student_temperature"], defaults["student_top_p"])
    teacher_sampling = teacher_sampling or (defaults["teacher_temperature"], defaults["teacher_top_p"])
    device = models.device()
    student, tokenizer = models.load(student_path, "--student")
    student = student.to(device).eval()  # drafting as SpeculativeKD.sequence_batch does: no dropout
    teacher = load_teacher(teacher_path, tokenizer, device)
    sources = sample_sources(tables, sentences, seed)
    inputs = [(ids.to(device), mask.to(device)) for ids, mask in batches(tokenizer, sources, batch_size, max_len)]
    generator = torch.Generator()
    results = []
    for k in k_values:
        generator.manual_seed(seed)  # every K from the same state: K alone differs
        spec = speculator(student, teacher, tokenizer, k, gamma, student_sampling, teacher_sampling, max_len,
                          generator, max_len_a, max_len_b)
        kept = generated = 0
        started = time.perf_counter()
        for input_ids, attention_mask in inputs:
            _, batch_kept, batch_generated = spec.generate(input_ids, attention_mask)
            kept, generated = kept + batch_kept, generated + batch_generated
        seconds = time.perf_counter() - started
        results.append({"k": k, "k_tokens": spec.k, "acceptance": kept / max(generated, 1), "student_tokens_kept": kept,
                        "tokens_generated": generated, "seconds": seconds, "tokens_per_s": generated / max(seconds, 1e-9)})
        log.info("K %d: acceptance %.3f (%d of %d tokens), %.1f s", k, results[-1]["acceptance"], kept, generated, seconds)
    return {"student": str(student_path), "teacher": str(teacher_path), "labels": [str(t) for t in tables],
            "sentences": len(sources), "seed": seed, "gamma": gamma, "batch_size": batch_size,
            "max_len_a": max_len_a, "max_len_b": max_len_b, "max_len": max_len,
            "student_sampling": {"temperature": student_sampling[0], "top_p": student_sampling[1]},
            "teacher_sampling": {"temperature": teacher_sampling[0], "top_p": teacher_sampling[1]},
            "sweep": results, "chosen_k": choose_k(results), "choice": CHOICE}


def parse_args(argv=None):
    skd = SpeculativeKD.keys
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--student", required=True, help="the student SKD starts from (model directory)")
    p.add_argument("--teacher", required=True, help="the SKD teacher (model directory)")
    p.add_argument("--labels", nargs="+", required=True, help="the training tables (Parquet); their `source` is sampled")
    p.add_argument("--k-values", type=int, nargs="+", required=True, help="the K to measure (-1: the vocabulary)")
    p.add_argument("--gamma", type=int, default=skd["gamma"], help="tokens the student drafts per teacher pass")
    p.add_argument("--student-temperature", type=float, default=skd["student_temperature"])
    p.add_argument("--student-top-p", type=float, default=skd["student_top_p"])
    p.add_argument("--teacher-temperature", type=float, default=skd["teacher_temperature"])
    p.add_argument("--teacher-top-p", type=float, default=skd["teacher_top_p"])
    p.add_argument("--sentences", type=int, default=128, help="sources sampled (seeded) from --labels")
    p.add_argument("--batch-size", type=int, default=16, help="sentences generated together")
    p.add_argument("--max-len-a", type=float, default=1.5, help="generation stops at a * source tokens + b")
    p.add_argument("--max-len-b", type=int, default=10)
    p.add_argument("--max-len", type=int, default=128, help="tokens per side, as training's --max-len")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True, help="results (JSON)")
    args = p.parse_args(argv)
    if any(k < -1 for k in args.k_values):
        p.error("--k-values: each K is -1 (the vocabulary), 0 or a positive number of top tokens")
    if len(set(args.k_values)) != len(args.k_values):
        p.error("--k-values: a K is repeated")
    for name in ("gamma", "sentences", "batch_size", "max_len"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def run(args) -> None:
    models.set_threads(args.threads)
    result = measure(args.student, args.teacher, args.labels, args.k_values, args.gamma, args.sentences, args.batch_size,
                     args.max_len_a, args.max_len_b, args.max_len, args.seed,
                     (args.student_temperature, args.student_top_p), (args.teacher_temperature, args.teacher_top_p))
    log.info("chosen K: %s (%s)", result["chosen_k"], CHOICE)
    write_json(result, args.out)


def main(argv=None) -> int:
    return run_main(run, parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
