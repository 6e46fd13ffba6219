"""The reaugkd objective: its relational loss, its KB alignment and neighbours, a training run that saves
the student's projection head beside the model, resuming, and what it refuses."""

from __future__ import annotations

import json
import math
import re
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import resume_check, student_arch
from mtdistill import build_kb, kb_projection, models, teacher_topk, train
from mtdistill.core.io import InputError
from mtdistill.objectives.reaugkd import ReAugKD, nearest_others, relational_kl
from mtdistill.objectives.word_kd import WordKD
from mtdistill.retrieval.head import HEAD_FILE
from mtdistill.retrieval.kb import KnowledgeBase
from mtdistill.training.batches import collate, encode

KB_DIM = 32  # the tiny student's d_model: its head starts as the identity


def test_relational_kl_on_a_hand_made_case():
    # two tokens, three neighbours each, in the plane; the neighbour keys need not be normalised
    neighbours = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]],
                               [[2.0, 0.0], [0.0, 1.0], [0.0, -1.0]]])
    teacher = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    student = torch.tensor([[0.0, 1.0], [0.0, 0.5]])  # row 2 points the teacher's way: no loss there

    def softmax(xs):
        total = sum(math.exp(x) for x in xs)
        return [math.exp(x) / total for x in xs]

    a_teacher, a_student = softmax([1, 0, -1]), softmax([0, 1, 0])  # row 1's cosines, tau 1
    expected = sum(p * math.log(p / q) for p, q in zip(a_teacher, a_student))
    assert relational_kl(teacher, student, neighbours, 1.0).item() == pytest.approx(expected, rel=1e-6)
    # a sharper temperature scales the cosines before the softmax
    a_teacher, a_student = softmax([10, 0, -10]), softmax([0, 10, 0])
    expected = sum(p * math.log(p / q) for p, q in zip(a_teacher, a_student))
    assert relational_kl(teacher, student, neighbours, 0.1).item() == pytest.approx(expected, rel=1e-5)


def test_relational_kl_is_zero_only_where_the_student_projects_as_the_teacher():
    generator = torch.Generator().manual_seed(0)
    teacher = torch.nn.functional.normalize(torch.randn(5, 8, generator=generator), dim=-1)
    neighbours = torch.randn(5, 4, 8, generator=generator)
    assert relational_kl(teacher, teacher, neighbours, 0.1).item() == pytest.approx(0.0, abs=1e-6)
    assert relational_kl(teacher, 3 * teacher, neighbours, 0.1).item() == pytest.approx(0.0, abs=1e-6)  # cosines
    assert relational_kl(teacher, torch.randn(5, 8, generator=generator), neighbours, 0.1).item() > 1e-3


def build_tiny_kb(work, teacher_dir, labels, name: str, max_len: int = 64, num_shards: int = 1) -> list[str]:
    """The teacher's projection head and a flat KB of `labels`, in `num_shards` shards."""
    projection = work / "kb_projection.pt"
    if not projection.exists():
        assert kb_projection.main(["--teacher", str(teacher_dir), "--labels", str(labels), "--dim", str(KB_DIM),
                                   "--sentences", "40", "--epochs", "1", "--batch-size", "256", "--max-len", "64",
                                   "--precision", "fp32", "--out", str(projection)]) == 0
    shards = [work / name / str(shard) for shard in range(num_shards)]
    for shard, out in enumerate(shards):
        assert build_kb.main(["--teacher", str(teacher_dir), "--projection", str(projection), "--labels", str(labels),
                              "--shard", str(shard), "--num-shards", str(num_shards), "--values-k", "8",
                              "--max-len", str(max_len), "--precision", "fp32", "--out", str(out)]) == 0
    return [str(shard) for shard in shards]


@pytest.fixture(scope="module")
def kb_shards(work, teacher_dir, kd_labels) -> list[str]:
    return build_tiny_kb(work, teacher_dir, kd_labels, "kb", num_shards=2)


@pytest.fixture(scope="module")
def student(teacher_dir):
    _, tokenizer = models.load(teacher_dir)
    torch.manual_seed(3)
    model = models.build_model({"d_model": KB_DIM, "encoder_layers": 1, "decoder_layers": 1, "heads": 2, "ffn_dim": 64,
                                "dropout": 0.0}, tokenizer)
    return model.eval(), tokenizer


def labelled(kd_labels):
    return pd.read_parquet(kd_labels).dropna(subset=["label"])


def test_neighbours_are_the_nearest_other_entries(kb_shards):
    kb = KnowledgeBase.load(kb_shards)
    neighbours = nearest_others(kb, 4, "--kb")
    keys = kb.keys(np.arange(kb.size))
    cosines = keys @ keys.T
    assert neighbours.shape == (kb.size, 4)
    assert not (neighbours == np.arange(kb.size)[:, None]).any()
    # exact search over both shards: the 4 best other cosines, up to float ties
    np.fill_diagonal(cosines, -np.inf)
    best = -np.sort(-cosines, 1)[:, :4]
    found = np.take_along_axis(cosines, neighbours.astype(np.int64), 1)
    np.testing.assert_allclose(found, best, atol=1e-4)


def test_kb_values_give_word_kd_truncated_to_the_same_top_k(student, kb_shards, teacher_dir, kd_labels, work):
    """Row i, position t is KB entry row_offsets[i] + t: the KL equals word_kd's from a top-k cache."""
    model, tokenizer = student
    cache = work / "reaugkd_topk8.pt"
    assert teacher_topk.main(["--teacher", str(teacher_dir), "--train", str(kd_labels), "--k", "8", "--max-len", "64",
                              "--precision", "fp32", "--out", str(cache)]) == 0
    table = labelled(kd_labels)
    pairs = encode(tokenizer, list(table.source), list(table.label), 64)
    rows = [31, 0, 17, 5]  # across the two shards
    batch, labels = collate(pairs, rows, tokenizer.pad_token_id, torch.device("cpu"))
    word = WordKD(str(teacher_dir), alpha=1.0, tau=2.0, topk_path=str(cache), max_len=64)
    reaug = ReAugKD(kb_shards, alpha=1.0, tau=2.0, relational_weight=0.0, neighbours=4, max_len=64)
    word.prepare(model, tokenizer, table, pairs, "cpu")
    reaug.prepare(model, tokenizer, table, pairs, "cpu")
    try:
        # the same teacher tokens at every label position (float rounding may swap near-ties)
        stored, _ = reaug.kb.values(reaug.entry_ids(labels, rows))
        cached = torch.cat([word.topk["ids"][row][:len(pairs[row][1])] for row in rows]).numpy()
        assert stored.shape == cached.shape and (stored[:, 0] == cached[:, 0]).mean() > 0.95
        (expected, tokens), (loss, n) = word(model, batch, labels, rows), reaug(model, batch, labels, rows)
        assert n == tokens and loss.item() == pytest.approx(expected.item(), rel=1e-4)
        metrics = reaug.window_metrics()
        assert metrics["relational_per_token"] > 0 and metrics["kl_per_token"] * 4 == pytest.approx(loss.item() / n)
        assert reaug.window_metrics()["relational_per_token"] == 0  # reset by the call before
    finally:
        reaug.finish(model)
    assert not hasattr(model, "retrieval_head")


def test_reaugkd_training_saves_the_head_beside_the_model(work, kd_labels, data_dir, teacher_dir, kb_shards):
    from safetensors.torch import load_file

    out = work / "reaugkd_student"
    # the teacher's d_model (64) is not the KB's (32): the head starts as a seeded Xavier projection
    assert train.main(["--objective", "reaugkd", "--kb", *kb_shards, "--neighbours", "4", "--relational-rows", "16",
                       "--train", str(kd_labels), "--label-column", "label", "--dev", str(data_dir / "dev.parquet"),
                       "--init", str(teacher_dir), "--max-steps", "4", "--eval-every", "2", "--batch-tokens", "512",
                       "--lr", "1e-3", "--warmup", "2", "--max-len", "64", "--out", str(out)]) == 0
    assert not [key for key in load_file(out / "model.safetensors") if "retrieval_head" in key]
    head = torch.load(out / HEAD_FILE, weights_only=False)
    assert head["weight"].shape == (KB_DIM, 64) and head["kb"] == kb_shards
    assert (head["neighbours"], head["relational_tau"], head["kb_dim"]) == (4, 0.1, KB_DIM)
    summary = json.loads((out / "training.json").read_text())
    kb = KnowledgeBase.load(kb_shards)
    assert (summary["kb_size"], summary["kb_dim"], summary["neighbours"]) == (kb.size, KB_DIM, 4)
    assert (summary["relational_tau"], summary["relational_weight"]) == (0.1, 1.0)
    assert [h["step"] for h in summary["history"]] == [2, 4]
    assert all(h["relational_per_token"] > 0 and h["kl_per_token"] > 0 for h in summary["history"])
    models.load(out)  # a plain translation model


@pytest.mark.slow  # the student is trained twice
def test_killed_reaugkd_training_resumes_to_the_same_model_and_head(work, kd_labels, data_dir, tokenizer_dir, config,
                                                                    kb_shards):
    def argv(out):
        # few relational rows: the restored generator decides which tokens the loss sees
        return [sys.executable, "-m", "mtdistill.train", "--objective", "reaugkd", "--kb", *kb_shards,
                "--neighbours", "4", "--relational-rows", "8", "--train", str(kd_labels), "--label-column", "label",
                "--dev", str(data_dir / "dev.parquet"), *student_arch(tokenizer_dir, config), "--max-steps", "60",
                "--eval-every", "4", "--batch-tokens", "512", "--lr", "3e-3", "--warmup", "2", "--max-len", "64",
                "--seed", "3", "--out", str(out)]

    summary = resume_check(argv, work, "resume_reaugkd", 60)
    assert all("relational_per_token" in h for h in summary["history"])
    heads = [torch.load(work / f"resume_reaugkd_{run}" / HEAD_FILE, weights_only=False)
             for run in ("reference", "interrupted")]
    assert torch.equal(heads[0].pop("weight"), heads[1].pop("weight"))
    assert torch.equal(heads[0].pop("bias"), heads[1].pop("bias"))
    assert heads[0] == heads[1]


BASE = ["--train", "t.parquet", "--dev", "d.parquet", "--init", "m", "--out", "o"]


@pytest.mark.parametrize("given,message", [
    ([], "--objective reaugkd needs --kb"),
    (["--kb", "kb", "--topk", "c.pt"], "--topk: objective reaugkd does not use it"),
    (["--kb", "kb", "--teacher", "t", "--k", "3"], "--k: objective reaugkd does not use it"),
    (["--kb", "kb", "--relational-tau", "0"], "--relational-tau 0.0: a temperature, above 0"),
    (["--kb", "kb", "--tau", "-1"], "--tau -1.0: a temperature, above 0"),
    (["--kb", "kb", "--neighbours", "0"], "--neighbours 0: at least 1"),
    (["--kb", "kb", "--relational-rows", "0"], "--relational-rows 0: at least 1"),
    (["--kb", "kb", "--relational-weight", "-0.5"], "--relational-weight -0.5: at least 0"),
    (["--kb", "kb", "--alpha", "1.5"], "--alpha 1.5: a weight between 0 and 1"),
    (["--kb", "kb", "--direction", "r2l"], "left-to-right translation states"),
])
def test_reaugkd_refuses_bad_options(given, message, capsys):
    with pytest.raises(SystemExit) as exit:
        train.parse_args([*BASE, "--objective", "reaugkd", *given])
    assert exit.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("objective,given", [
    ("word_kd", ["--kb", "kb"]), ("cross_entropy", ["--neighbours", "4"]), ("skd", ["--relational-tau", "0.2"]),
    ("word_kd", ["--relational-weight", "2"]), ("prune", ["--relational-rows", "8"]),
])
def test_other_objectives_refuse_reaugkd_options(objective, given, capsys):
    with pytest.raises(SystemExit):
        train.parse_args([*BASE, "--teacher", "t", "--objective", objective, *given])
    assert f"{given[0]}: objective {objective} does not use it" in capsys.readouterr().err


def test_reaugkd_shares_word_kd_alpha_and_tau_and_fills_its_defaults():
    args = train.parse_args([*BASE, "--objective", "reaugkd", "--kb", "a", "b", "--alpha", "0.3"])
    assert (args.kb, args.alpha, args.tau) == (["a", "b"], 0.3, 1.0)
    assert (args.relational_weight, args.relational_tau, args.neighbours, args.relational_rows) == (1.0, 0.1, 16, 512)
    assert not hasattr(args, "topk") and not hasattr(args, "betas")
    word = train.parse_args([*BASE, "--objective", "word_kd", "--teacher", "t", "--tau", "2"])
    assert (word.alpha, word.tau) == (0.5, 2.0) and not hasattr(word, "kb")
    assert "betas" not in ReAugKD.option_keys() and "betas" in ReAugKD.keys


def test_kb_of_other_sentences_or_shorter_labels_is_refused(student, kb_shards, work, teacher_dir, kd_labels):
    model, tokenizer = student
    table = labelled(kd_labels)
    pairs = encode(tokenizer, list(table.source), list(table.label), 64)
    objective = ReAugKD(kb_shards, neighbours=4, max_len=64)
    other_sentences = f"--kb {' '.join(kb_shards)}: its sentences are not the training table's"
    with pytest.raises(InputError, match=re.escape(other_sentences)):
        objective.prepare(model, tokenizer, table[::-1], pairs, "cpu")
    short = build_tiny_kb(work, teacher_dir, kd_labels, "kb_short", max_len=4)
    assert max(len(label) for _, label in pairs) > 4
    shorter = f"--kb {short[0]}: built with max_len 4, but training uses max_len 64"
    with pytest.raises(InputError, match=re.escape(shorter)):
        ReAugKD(short, neighbours=4, max_len=64).prepare(model, tokenizer, table, pairs, "cpu")
    kb_size = KnowledgeBase.load(kb_shards).size
    with pytest.raises(InputError, match=f"{kb_size} entries, too few for --neighbours {kb_size}"):
        ReAugKD(kb_shards, neighbours=kb_size, max_len=64).prepare(model, tokenizer, table, pairs, "cpu")
    assert not hasattr(model, "retrieval_head")  # refused before the head was attached
