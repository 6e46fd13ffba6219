"""Student initialisation (none / bottom / spaced) and the self-training options of `train`."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from helpers import assert_same_weights
from mtdistill import models, train

DEEP = {"d_model": 32, "encoder_layers": 3, "decoder_layers": 3, "heads": 2, "ffn_dim": 64, "dropout": 0.0}
SHALLOW = {**DEEP, "encoder_layers": 2, "decoder_layers": 1}


def test_spaced_layers_keep_the_ends_and_spread_the_rest():
    assert models.spaced_layers(1, 3) == [2]  # one layer: the top one (distil-whisper)
    assert models.spaced_layers(2, 3) == [0, 2]
    assert models.spaced_layers(3, 3) == [0, 1, 2]
    assert models.spaced_layers(3, 6) == [0, 2, 5] or models.spaced_layers(3, 6) == [0, 3, 5]
    assert models.spaced_layers(2, 12) == [0, 11]


@pytest.fixture(scope="module")
def deep_teacher(tmp_path_factory, tokenizer_dir):
    torch.manual_seed(0)
    tokenizer = models.load_tokenizer(tokenizer_dir)
    out = tmp_path_factory.mktemp("deep") / "teacher"
    models.save(models.build_model(DEEP, tokenizer), tokenizer, out)
    return out


def layer(model, stack: str, i: int) -> torch.Tensor:
    return getattr(model.model, stack).layers[i].fc1.weight


@pytest.mark.parametrize("choice, encoder, decoder", [("bottom", [0, 1], [0]), ("spaced", [0, 2], [2])])
def test_students_copy_the_chosen_teacher_layers(deep_teacher, tokenizer_dir, choice, encoder, decoder):
    tokenizer = models.load_tokenizer(tokenizer_dir)
    teacher, _ = models.load(deep_teacher, "--teacher")
    torch.manual_seed(1)
    student = models.build_model(SHALLOW, tokenizer)
    copied = models.copy_matching_weights(student, deep_teacher, choice)
    assert "model.shared.weight" in copied
    for i, j in enumerate(encoder):
        assert torch.equal(layer(student, "encoder", i), layer(teacher, "encoder", j))
    for i, j in enumerate(decoder):
        assert torch.equal(layer(student, "decoder", i), layer(teacher, "decoder", j))
    assert not torch.equal(layer(student, "decoder", 0), layer(teacher, "decoder", 1))


def test_a_student_from_scratch_copies_nothing(work, data_dir, tokenizer_dir, deep_teacher):
    out = work / "scratch_student"
    argv = ["--train", str(data_dir / "train.parquet"), "--dev", str(data_dir / "dev.parquet"),
            "--tokenizer", str(tokenizer_dir), "--arch", json.dumps(SHALLOW), "--max-steps", "1", "--eval-every", "1",
            "--out", str(out)]
    assert train.main(argv) == 0
    student, _ = models.load(out, "--init")
    teacher, _ = models.load(deep_teacher, "--teacher")
    assert not torch.equal(student.model.shared.weight, teacher.model.shared.weight)


def finetune_argv(data_dir, teacher_dir, out, *extra):
    return ["--train", str(data_dir / "train.parquet"), "--dev", str(data_dir / "dev.parquet"), "--init", str(teacher_dir),
            "--max-steps", "4", "--eval-every", "2", "--warmup", "1", "--batch-tokens", "512", "--out", str(out), *extra]


def test_eval_at_start_keeps_the_starting_model_when_training_only_hurts(work, data_dir, teacher_dir):
    # a learning rate of 5 wrecks the model: no checkpoint beats the start on dev, which is kept
    out = work / "wrecked"
    assert train.main(finetune_argv(data_dir, teacher_dir, out, "--lr", "5", "--eval-at-start")) == 0
    summary = json.loads((out / "training.json").read_text())
    assert summary["kept_start"] and summary["best_step"] == 0 and summary["history"][0]["step"] == 0
    assert not any(h["dev_loss"] < summary["history"][0]["dev_loss"] for h in summary["history"][1:])  # worse or NaN
    assert_same_weights(out, teacher_dir)
    # without it the best checkpoint of the wrecked run is what is saved
    plain = work / "wrecked_plain"
    assert train.main(finetune_argv(data_dir, teacher_dir, plain, "--lr", "5")) == 0
    assert not json.loads((plain / "training.json").read_text())["kept_start"]


def test_mix_adds_the_bitext_references_to_the_labels(work, data_dir, teacher_dir, tmp_path):
    train_table = pd.read_parquet(data_dir / "train.parquet")
    labels = train_table.head(40).assign(label="a pseudo label")[["sent_id", "source", "label"]]
    labels.to_parquet(tmp_path / "labels.parquet")
    out = work / "mixed"
    argv = finetune_argv(data_dir, teacher_dir, out, "--lr", "1e-4")
    argv[1] = str(tmp_path / "labels.parquet")
    assert train.main([*argv, "--label-column", "label", "--mix", str(data_dir / "train.parquet")]) == 0
    assert json.loads((out / "training.json").read_text())["train_pairs"] == 40 + len(train_table)
