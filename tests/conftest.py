"""Shared fixtures: a tiny Bible corpus and a tiny teacher, built once per test session."""

from __future__ import annotations

import copy
import json
import os
import sys
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
