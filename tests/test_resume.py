"""Training killed mid-run resumes from its newest checkpoint and ends with the same model and record."""

from __future__ import annotations

import sys

import pytest

from helpers import SKD_OPTIONS, resume_check, student_arch

pytestmark = pytest.mark.slow  # each model is trained twice


def test_killed_training_resumes_to_the_same_model(work, data_dir, tokenizer_dir, config):
    def argv(out):
        return [sys.executable, "-m", "mtdistill.train", "--train", str(data_dir / "train.parquet"),
                "--dev", str(data_dir / "dev.parquet"), *student_arch(tokenizer_dir, config),
                "--max-steps", "60", "--eval-every", "4", "--batch-tokens", "512", "--seed", "3", "--out", str(out)]

    history = resume_check(argv, work, "resume", 60)["history"]
    assert [h["step"] for h in history] == list(range(4, 61, 4))


OBJECTIVES = {  # objective: options, steps (enough to be killed before the end)
    "skd": ([*SKD_OPTIONS, "--teacher", "{teacher}"], 16),
    "word_kd": (["--objective", "word_kd", "--teacher", "{teacher}", "--alpha", "0.5"], 60),
    "prune": (["--objective", "prune", "--prune", "0.5"], 60),  # prepare prunes, then the checkpoint's weights and masks load
}


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_killed_distillation_resumes_to_the_same_model_and_summary(work, kd_labels, data_dir, tokenizer_dir, teacher_dir,
                                                                   config, objective):
    options, steps = OBJECTIVES[objective]

    def argv(out):
        return [sys.executable, "-m", "mtdistill.train", *[o.format(teacher=teacher_dir) for o in options],
                "--train", str(kd_labels), "--label-column", "label", "--dev", str(data_dir / "dev.parquet"),
                *student_arch(tokenizer_dir, config), "--max-steps", str(steps), "--eval-every", "4", "--batch-tokens", "512",
                "--lr", "3e-3", "--warmup", "2", "--max-len", "64", "--seed", "3", "--out", str(out)]

    summary = resume_check(argv, work, f"resume_{objective}", steps)
    if objective == "skd":
        assert len(summary["acceptance_per_step"]) == steps and 0 < max(summary["acceptance_per_step"]) < 1
