"""Shared fixtures: a tiny Bible corpus and a tiny teacher, built once per test session."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
# Rules call `python -m mtdistill.<step>`: the interpreter running the tests must be that python.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def tiny_config() -> dict:
    return yaml.safe_load((REPO / "tests" / "configs" / "tiny.yaml").read_text())


@pytest.fixture(scope="session")
def config():
    return tiny_config()


@pytest.fixture
def config_copy(config):
    return copy.deepcopy(config)


def data_spec(config: dict) -> str:
    return json.dumps({**config["data"], "seed": config["seed"]})


def train_args(config: dict, section: str) -> list[str]:
    return [item for key, value in config[section]["train"].items() for item in (f"--{key.replace('_', '-')}", str(value))]


@pytest.fixture(scope="session")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("steps")


@pytest.fixture(scope="session")
def data_dir(work, config) -> Path:
    from mtdistill import prepare_data

    assert prepare_data.main(["--spec", data_spec(config), "--outdir", str(work / "data")]) == 0
    return work / "data"


@pytest.fixture(scope="session")
def tokenizer_dir(work, data_dir, config) -> Path:
    from mtdistill import train_tokenizer

    out = work / "tokenizer"
    assert train_tokenizer.main(["--train", str(data_dir / "train.parquet"), "--vocab-size", str(config["tokenizer"]["vocab_size"]), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def teacher_dir(work, data_dir, tokenizer_dir, config) -> Path:
    from mtdistill import train

    out = work / "teacher"
    argv = ["--train", str(data_dir / "train.parquet"), "--dev", str(data_dir / "dev.parquet"),
            "--tokenizer", str(tokenizer_dir), "--arch", json.dumps(config["teacher"]["arch"]),
            *train_args(config, "teacher"), "--seed", "1", "--threads", "2", "--out", str(out)]
    assert train.main(argv) == 0
    return out


@pytest.fixture(scope="session")
def kd_labels(work, data_dir) -> Path:
    """Distillation labels: the bitext's references in a `label` column."""
    import pandas as pd

    out = work / "kd_train.parquet"
    pd.read_parquet(data_dir / "bitext.parquet").assign(label=lambda d: d.target).to_parquet(out)
    return out


def interrupt_and_rerun(argv: list[str], out: Path, max_steps: int) -> int:
    """Start a training command, SIGKILL it and its children (torchrun's workers, which run in
    sessions of their own) as soon as it has written a checkpoint, and run it again to the end;
    `max_steps` must leave it time to die. Returns the step it resumed from."""
    import psutil
    import torch

    checkpoint = out.with_name(out.name + ".resume") / "last.pt"
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not checkpoint.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    family = []
    with contextlib.suppress(psutil.NoSuchProcess):  # if it has finished, the assertions below say so
        family = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    for member in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()  # SIGKILL
    process.wait()
    assert checkpoint.exists(), "training finished before it could be interrupted"
    assert not out.exists()  # no half-written model
    killed_at = torch.load(checkpoint, weights_only=False)["step"]
    assert 0 < killed_at < max_steps
    result = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=600)
    assert f"resumed from {checkpoint} at step" in result.stderr
    assert not checkpoint.parent.exists()  # cleaned up after the final save
    return killed_at


TIMINGS = ("seconds", "target_tokens_per_s", "seconds_per_step")


def training_record(outdir: Path) -> dict:
    """training.json without what differs between identical runs: paths and timings."""
    summary = json.loads((outdir / "training.json").read_text())
    history = [{k: v for k, v in h.items() if k not in TIMINGS} for h in summary["history"]]
    best = {k: v for k, v in summary["best"].items() if k not in TIMINGS}
    return {**{k: v for k, v in summary.items() if k not in ("arguments", *TIMINGS)}, "history": history, "best": best}


def assert_same_weights(a: Path, b: Path) -> None:
    """Two model directories with the same weights, bit for bit."""
    import torch
    from safetensors.torch import load_file

    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), (a, b)


def assert_same_training(a: Path, b: Path) -> None:
    """Two model directories with the same weights, bit for bit, and the same training record."""
    assert_same_weights(a, b)
    assert training_record(a) == training_record(b)


def resume_check(argv, work: Path, name: str, steps: int) -> dict:
    """argv(out) run uninterrupted and killed and resumed ends alike; the resumed run's training.json."""
    reference, interrupted = work / f"{name}_reference", work / f"{name}_interrupted"
    subprocess.run(argv(reference), check=True, capture_output=True, timeout=600)
    killed_at = interrupt_and_rerun(argv(interrupted), interrupted, steps)
    assert_same_training(reference, interrupted)
    summary = json.loads((interrupted / "training.json").read_text())
    assert summary["best_step"] > killed_at  # the weights compared were trained after the restart
    return summary


# the teacher keeps the student's free samples only if in its top 2: the sampling generator's
# state decides the sequences, hence the weights and the acceptance record
SKD_OPTIONS = ["--objective", "skd", "--k", "2", "--gamma", "3", "--student-temperature", "1", "--student-top-p", "1"]


def student_arch(tokenizer_dir: Path, config: dict, dropout: float = 0.1) -> list[str]:
    """A fresh tiny student; with dropout, the restored random state decides its masks."""
    return ["--tokenizer", str(tokenizer_dir), "--arch", json.dumps({**config["student"]["arch"], "dropout": dropout})]


def decode_set(work: Path, data_dir: Path, teacher_dir: Path, config: dict, name: str) -> Path:
    from mtdistill import decode

    out = work / "nbest" / f"{name}.parquet"
    nbest = config["decode"]["nbest"]
    assert decode.main(["--model", str(teacher_dir), "--input", str(data_dir / f"{name}.parquet"), "--beam", str(nbest),
                        "--nbest", str(nbest), "--threads", "2", "--out", str(out)]) == 0
    return out


def score_set(work: Path, data_dir: Path, teacher_dir: Path, nbest: Path, name: str) -> list[Path]:
    """Teacher and length features, laid out as the workflow does: features/<set>/<scorer>/<shard>."""
    from mtdistill import score

    outs = [work / "features" / name / scorer / "0.parquet" for scorer in ("teacher", "length")]
    common = ["--nbest", str(nbest), "--sources", str(data_dir / f"{name}.parquet")]
    assert score.main(["--name", "teacher", "--kind", "forced_decoding", "--model", str(teacher_dir), *common, "--out", str(outs[0])]) == 0
    assert score.main(["--name", "length", "--kind", "length", *common, "--out", str(outs[1])]) == 0
    return outs


@pytest.fixture(scope="session")
def tune_nbest(work, data_dir, teacher_dir, config) -> Path:
    return decode_set(work, data_dir, teacher_dir, config, "tune")


@pytest.fixture(scope="session")
def dev_nbest(work, data_dir, teacher_dir, config) -> Path:
    return decode_set(work, data_dir, teacher_dir, config, "dev")


@pytest.fixture(scope="session")
def tune_features(work, data_dir, teacher_dir, tune_nbest) -> list[Path]:
    return score_set(work, data_dir, teacher_dir, tune_nbest, "tune")


@pytest.fixture(scope="session")
def dev_features(work, data_dir, teacher_dir, dev_nbest) -> list[Path]:
    return score_set(work, data_dir, teacher_dir, dev_nbest, "dev")


def reranker_args(data_dir, tune_nbest, tune_features, dev_nbest, dev_features) -> list[str]:
    return ["--tune-nbest", str(tune_nbest), "--tune-features", *map(str, tune_features),
            "--tune-references", str(data_dir / "tune.parquet"),
            "--dev-nbest", str(dev_nbest), "--dev-features", *map(str, dev_features),
            "--dev-references", str(data_dir / "dev.parquet")]


@pytest.fixture(scope="session")
def reranker(work, data_dir, tune_nbest, tune_features, dev_nbest, dev_features) -> tuple[Path, Path]:
    """(weights, diagnostics) of every tuner on the tiny tune/dev sets."""
    from mtdistill import tune_reranker

    out = work / "reranker"
    assert tune_reranker.main([*reranker_args(data_dir, tune_nbest, tune_features, dev_nbest, dev_features),
                               "--tuners", "mira", "pro", "expected", "--evaluations", "5", "--metric", "chrf",
                               "--weights", str(out / "weights.json"), "--diagnostics", str(out / "diagnostics.json")]) == 0
    return out / "weights.json", out / "diagnostics.json"


@pytest.fixture(scope="session")
def weights(reranker) -> Path:
    return reranker[0]


def train_helper(work: Path, data_dir: Path, tokenizer_dir: Path, config: dict, name: str, mode: list[str]) -> Path:
    """A helper model (r2l, backward, lm) trained on the tiny data as the workflow's rule does."""
    from mtdistill import train

    out = work / name
    tables = [str(data_dir / "train.parquet")] + ([str(data_dir / "lm.parquet")] if name == "lm" else [])
    options = {**config["teacher"]["train"], **config[name]["train"]}
    argv = ["--train", *tables, "--dev", str(data_dir / "dev.parquet"), "--tokenizer", str(tokenizer_dir), *mode,
            "--arch", json.dumps(config[name]["arch"]), *[x for k, v in options.items() for x in (f"--{k.replace('_', '-')}", str(v))],
            "--seed", "1", "--threads", "2", "--out", str(out)]
    assert train.main(argv) == 0
    return out


@pytest.fixture(scope="session")
def r2l_dir(work, data_dir, tokenizer_dir, config) -> Path:
    return train_helper(work, data_dir, tokenizer_dir, config, "r2l", ["--direction", "r2l"])


@pytest.fixture(scope="session")
def backward_dir(work, data_dir, tokenizer_dir, config) -> Path:
    return train_helper(work, data_dir, tokenizer_dir, config, "backward", ["--direction", "backward"])


@pytest.fixture(scope="session")
def lm_dir(work, data_dir, tokenizer_dir, config) -> Path:
    return train_helper(work, data_dir, tokenizer_dir, config, "lm", ["--task", "lm"])
