"""Data-parallel training under torchrun, on the CPU (gloo): two ranks train as one process
accumulating two batches per step, and a killed run resumes on every rank."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from helpers import SKD_OPTIONS, resume_check, student_arch

pytestmark = pytest.mark.slow  # torchrun processes, each model trained twice

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def test_two_ranks_train_as_one_process_accumulating_two_batches(work, data_dir, tokenizer_dir, config):
    options = ["--train", str(data_dir / "train.parquet"), "--dev", str(data_dir / "dev.parquet"),
               *student_arch(tokenizer_dir, config, dropout=0.0), "--max-steps", "12", "--eval-every", "4",
               "--batch-tokens", "512", "--lr", "3e-3", "--warmup", "2", "--seed", "3"]
    single, ranks = work / "accumulate2", work / "ddp2"
    # a process of its own, as each rank: in this one torch's thread pool would shrink and grow again (slow)
    subprocess.run([sys.executable, "-m", "mtdistill.train", *options, "--accumulate", "2", "--out", str(single)],
                   check=True, capture_output=True, timeout=600)
    result = subprocess.run([*TORCHRUN, "-m", "mtdistill.train", *options, "--out", str(ranks)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("step 4 train_loss") == 1  # rank 0 alone logs

    summaries = [json.loads((d / "training.json").read_text()) for d in (single, ranks)]
    assert [s["world_size"] for s in summaries] == [1, 2] and summaries[1]["precision"] == "fp32"
    history = summaries[1]["history"]
    assert history[-1]["dev_loss"] < history[0]["dev_loss"]
    # the same batches, gradients summed in another order: equal up to float rounding (in practice bit for bit)
    for a, b in zip(*(s["history"] for s in summaries)):
        assert abs(a["train_loss"] - b["train_loss"]) < 1e-5 and abs(a["dev_loss"] - b["dev_loss"]) < 1e-5
    a, b = load_file(single / "model.safetensors"), load_file(ranks / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_killed_data_parallel_skd_resumes_on_every_rank(work, kd_labels, data_dir, tokenizer_dir, teacher_dir, config):
    """Each rank has its own dropout and sampling states: the checkpoint keeps them all."""
    def argv(out):
        return [*TORCHRUN, "-m", "mtdistill.train", *SKD_OPTIONS, "--teacher", str(teacher_dir),
                "--train", str(kd_labels), "--label-column", "label", "--dev", str(data_dir / "dev.parquet"),
                *student_arch(tokenizer_dir, config), "--max-steps", "8", "--eval-every", "2", "--batch-tokens", "512",
                "--lr", "3e-3", "--warmup", "2", "--max-len", "64", "--seed", "3", "--out", str(out)]

    summary = resume_check(argv, work, "ddp_skd", 8)
    assert summary["world_size"] == 2 and len(summary["acceptance_per_step"]) == 8
