"""Shared fixtures: a tiny Bible corpus and a tiny teacher, built once per test session (helpers.py
holds the functions the tests share)."""

from __future__ import annotations

import copy
import json
import os
import sys
from pathlib import Path

import pytest

from helpers import data_spec, decode_set, helper_args, plan_of, reranker_args, score_set, tiny_config, train_args

# Rules call `python -m mtdistill.<step>`: the interpreter running the tests must be that python.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for a module's tests (CTranslate2 comparisons: the two share the cores)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def config():
    return tiny_config()


@pytest.fixture
def config_copy(config):
    return copy.deepcopy(config)


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


def train_helper(work: Path, data_dir: Path, tokenizer_dir: Path, config: dict, name: str) -> Path:
    """A helper model (r2l, backward, lm) trained on the tiny data with rule train_helper's options."""
    from mtdistill import train

    out = work / name
    tables = [str(data_dir / Path(table).name) for table in plan_of(config).helper_inputs(name)["train"]]
    argv = ["--train", *tables, "--dev", str(data_dir / "dev.parquet"), "--tokenizer", str(tokenizer_dir),
            *helper_args(config, name), "--seed", "1", "--threads", "2", "--out", str(out)]
    assert train.main(argv) == 0
    return out


@pytest.fixture(scope="session")
def r2l_dir(work, data_dir, tokenizer_dir, config) -> Path:
    return train_helper(work, data_dir, tokenizer_dir, config, "r2l")


@pytest.fixture(scope="session")
def backward_dir(work, data_dir, tokenizer_dir, config) -> Path:
    return train_helper(work, data_dir, tokenizer_dir, config, "backward")


@pytest.fixture(scope="session")
def lm_dir(work, data_dir, tokenizer_dir, config) -> Path:
    return train_helper(work, data_dir, tokenizer_dir, config, "lm")


@pytest.fixture(scope="session")
def kb_shards(work, kd_labels, teacher_dir, config) -> list[Path]:
    """A two-shard flat knowledge base of the tiny teacher on `kd_labels`, keys of the student's width."""
    from mtdistill import build_kb, kb_projection

    projection = work / "kb" / "projection.pt"
    assert kb_projection.main(["--teacher", str(teacher_dir), "--labels", str(kd_labels),
                               "--dim", str(config["student"]["arch"]["d_model"]), "--sentences", "200",
                               "--epochs", "3", "--out", str(projection)]) == 0
    shards = [work / "kb" / f"bitext.{shard}" for shard in range(2)]
    for shard, out in enumerate(shards):
        assert build_kb.main(["--teacher", str(teacher_dir), "--projection", str(projection), "--labels",
                              str(kd_labels), "--shard", str(shard), "--num-shards", "2", "--values-k", "8",
                              "--out", str(out)]) == 0
    return shards
