"""Training killed mid-run resumes from its newest checkpoint and ends with the same model."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import torch
from safetensors.torch import load_file


def test_killed_training_resumes_to_the_same_model(work, data_dir, tokenizer_dir, config):
    def argv(out):
        return [sys.executable, "-m", "mtdistill.train", "--train", str(data_dir / "train.parquet"),
                "--dev", str(data_dir / "dev.parquet"), "--tokenizer", str(tokenizer_dir),
                "--arch", json.dumps({**config["student"]["arch"], "dropout": 0.1}),
                "--max-steps", "60", "--eval-every", "4", "--batch-tokens", "512", "--seed", "3", "--out", str(out)]

    reference = work / "resume_reference"
    subprocess.run(argv(reference), check=True, capture_output=True, timeout=600)

    interrupted = work / "resume_interrupted"
    checkpoint = work / "resume_interrupted.resume" / "last.pt"
    process = subprocess.Popen(argv(interrupted), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not checkpoint.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert checkpoint.exists(), "training finished before it could be interrupted"
    assert not interrupted.exists()  # no half-written model
    killed_at = torch.load(checkpoint, weights_only=False)["step"]
    assert 0 < killed_at < 60

    result = subprocess.run(argv(interrupted), check=True, capture_output=True, text=True, timeout=600)
    assert f"resumed from {checkpoint} at step" in result.stderr
    assert not checkpoint.parent.exists()  # cleaned up after the final save
    a, b = load_file(reference / "model.safetensors"), load_file(interrupted / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    history = json.loads((interrupted / "training.json").read_text())["history"]
    assert [h["step"] for h in history] == list(range(4, 61, 4))
