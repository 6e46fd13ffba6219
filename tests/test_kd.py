"""Distillation objectives: the SKD acceptance rule and its limits, word-level KD, supervised KD, pruning."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from conftest import train_args
from mtdistill import distill, kd, models, teacher_topk
from mtdistill.files import InputError
from mtdistill.train import collate, encode


def test_acceptance_rule_on_hand_made_logits():
    logits = torch.tensor([[5.0, 4, 3, 2, 1, 0],   # draft 1 ranks second
                           [0.0, 0, 9, 0, 0, 0],   # draft 2 ranks first
                           [9.0, 8, 7, 6, 5, 4]])  # draft 5 ranks last
    drafts = torch.tensor([1, 2, 5])
    assert [kd.accepted_length(drafts, logits, k) for k in (0, 1, 2, 5, 6, 100)] == [0, 0, 2, 2, 3, 3]
    # the count is of leading accepted drafts: a later accepted one does not help after a rejection
    assert kd.accepted_length(torch.tensor([0, 3, 2]), logits, 1) == 1
    # ties with the drafted token's logit count as inside the top k
    assert kd.accepted_length(torch.tensor([3]), torch.zeros(1, 6), 1) == 1
    assert kd.accepted_length(torch.tensor([], dtype=torch.long), torch.zeros(0, 6), 5) == 0


def test_nucleus_sampling_keeps_the_top_tokens():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    generator = torch.Generator().manual_seed(0)
    drawn = {int(kd.sample(logits, 1.0, 0.6, generator)) for _ in range(200)}
    assert drawn == {0, 1}  # 0.5 < 0.6 needs the second token; the third starts beyond top-p
    assert int(kd.sample(logits, 0.0, 0.5, generator)) == 0


@pytest.fixture(scope="module")
def pair(teacher_dir):
    """A frozen teacher and an untrained student sharing its vocabulary."""
    teacher, tokenizer = models.load(teacher_dir)
    torch.manual_seed(3)
    student = models.build_model({"d_model": 32, "encoder_layers": 1, "decoder_layers": 1, "heads": 2, "ffn_dim": 64}, tokenizer)
    return teacher.eval(), student.eval(), tokenizer


def sources(data_dir, tokenizer, n):
    texts = list(pd.read_parquet(data_dir / "tune.parquet").source[:n])
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    return batch["input_ids"], batch["attention_mask"]


@torch.no_grad()
def sample_alone(model, input_ids, attention_mask, tokenizer, sampling, max_len, generator):
    """Reference: one model sampling token by token, nothing else drawing from the generator."""
    sequence = [model.config.decoder_start_token_id]
    while len(sequence) <= max_len:
        logits = model(input_ids=input_ids, attention_mask=attention_mask,
                       decoder_input_ids=torch.tensor([sequence])).logits[0, -1].float()
        logits[tokenizer.pad_token_id] = -float("inf")
        sequence.append(int(kd.sample(logits[None], *sampling, generator)))
        if sequence[-1] == tokenizer.eos_token_id:
            break
    return sequence[1:]


@pytest.mark.parametrize("limit", ["on_policy", "teacher_only"])
def test_k_limits_are_exactly_student_or_teacher_sampling(pair, data_dir, limit):
    teacher, student, tokenizer = pair
    input_ids, attention_mask = sources(data_dir, tokenizer, 1)
    k, model, sampling = (len(tokenizer), student, (0.9, 0.9)) if limit == "on_policy" else (0, teacher, (0.7, 0.9))
    speculator = kd.Speculator(student, teacher, tokenizer, k, gamma=3, student_sampling=(0.9, 0.9),
                               teacher_sampling=(0.7, 0.9), max_len=12, generator=torch.Generator().manual_seed(5))
    sequences, kept, generated = speculator.generate(input_ids, attention_mask)
    expected = sample_alone(model, input_ids, attention_mask, tokenizer, sampling, 12, torch.Generator().manual_seed(5))
    assert sequences == [expected]
    assert kept == (generated if limit == "on_policy" else 0) and generated == len(expected)


def test_batches_keep_each_sentence_own_acceptance(pair, data_dir):
    """Greedy drafting and resampling: a batch gives every sentence what it gets alone."""
    teacher, student, tokenizer = pair
    input_ids, attention_mask = sources(data_dir, tokenizer, 4)

    def run(k, rows):
        speculator = kd.Speculator(student, teacher, tokenizer, k, gamma=3, student_sampling=(0.0, 1.0),
                                   teacher_sampling=(0.0, 1.0), max_len=10)
        return speculator.generate(input_ids[rows], attention_mask[rows])

    batch, kept, generated = run(20, slice(0, 4))
    alone = [run(20, slice(i, i + 1))[0][0] for i in range(4)]
    assert batch == alone and 0 < kept < generated
    student_greedy = [sample_alone(student, input_ids[i:i + 1, :int(attention_mask[i].sum())], attention_mask[i:i + 1, :int(attention_mask[i].sum())],
                                   tokenizer, (0.0, 1.0), 10, None) for i in range(4)]
    assert run(len(tokenizer), slice(0, 4))[0] == student_greedy


def test_supervised_kd_is_word_kd_without_cross_entropy(pair, teacher_dir, data_dir):
    teacher, student, tokenizer = pair
    table = pd.read_parquet(data_dir / "tune.parquet")[:6]
    pairs = encode(tokenizer, list(table.source), list(table.target), 64)
    batch, labels = collate(pairs, list(range(6)), tokenizer.pad_token_id, torch.device("cpu"))
    supervised = kd.SpeculativeKD(str(teacher_dir), k=25, gamma=5, supervised=True)
    word = kd.WordKD(str(teacher_dir), alpha=1.0, tau=1.0)
    for objective in (supervised, word):
        objective.prepare(student, tokenizer, table, pairs, torch.device("cpu"))
    (a, tokens_a), (b, tokens_b) = supervised(student, batch, labels, range(6)), word(student, batch, labels, range(6))
    assert tokens_a == tokens_b and a.item() == pytest.approx(b.item(), rel=1e-6) and a.item() > 0


def test_precomputed_top_k_gives_the_online_kl(pair, teacher_dir, data_dir, work):
    teacher, student, tokenizer = pair
    labels_file = work / "kd_labels.parquet"
    pd.read_parquet(data_dir / "tune.parquet")[:6].assign(label=lambda d: d.target).to_parquet(labels_file)
    cache = work / "topk.pt"
    assert teacher_topk.main(["--teacher", str(teacher_dir), "--train", str(labels_file), "--k", str(len(tokenizer)),
                              "--out", str(cache)]) == 0
    table = pd.read_parquet(labels_file)
    pairs = encode(tokenizer, list(table.source), list(table.label), 128)
    batch, labels = collate(pairs, [3, 0, 5], tokenizer.pad_token_id, torch.device("cpu"))
    losses = []
    for topk in (None, str(cache)):
        objective = kd.WordKD(str(teacher_dir), alpha=1.0, tau=1.0, topk_path=topk)
        objective.prepare(student, tokenizer, table, pairs, torch.device("cpu"))
        losses.append(objective(student, batch, labels, [3, 0, 5])[0].item())
    assert losses[1] == pytest.approx(losses[0], rel=1e-2)  # k = |V|: truncation drops nothing (float16 storage)
    with pytest.raises(InputError, match="not the training table"):
        kd.WordKD(str(teacher_dir), 1.0, 1.0, topk_path=str(cache)).prepare(student, tokenizer, table[::-1], pairs, "cpu")


def test_teacher_with_another_vocabulary_is_refused(tmp_path, teacher_dir):
    _, tokenizer = models.load(teacher_dir)
    other = models.train_tokenizer(["ein ganz anderes Vokabular", "a different vocabulary"] * 50, 60, tmp_path / "other")
    with pytest.raises(InputError, match="do not share the target vocabulary"):
        kd.check_shared_vocabulary(other, tokenizer, "other-teacher")


def student_run(work, labels, data_dir, teacher_dir, config, name, *options):
    out = work / name
    train_options = dict(zip(train_args(config, "student")[::2], train_args(config, "student")[1::2]))
    train_options.update({"--max-steps": "4", "--eval-every": "2", "--select-by": "loss"})
    argv = ["--train", str(labels), "--label-column", "label", "--dev", str(data_dir / "dev.parquet"),
            "--init", str(teacher_dir), *[x for kv in train_options.items() for x in kv], "--out", str(out), *options]
    assert distill.main(argv) == 0
    return out, json.loads((out / "training.json").read_text())


def test_skd_training_logs_acceptance_per_step(work, kd_labels, data_dir, teacher_dir, config):
    _, summary = student_run(work, kd_labels, data_dir, teacher_dir, config, "skd", "--objective", "skd", "--teacher", str(teacher_dir),
                             "--k", "5", "--gamma", "3")
    assert len(summary["acceptance_per_step"]) == 4 and all(0 <= a <= 1 for a in summary["acceptance_per_step"])
    assert all("acceptance_rate" in h and "seconds_per_step" in h for h in summary["history"])


def test_pruning_zeroes_weights_and_retrains(work, kd_labels, data_dir, teacher_dir, config):
    out, summary = student_run(work, kd_labels, data_dir, teacher_dir, config, "pruned", "--objective", "prune", "--prune", "0.4")
    model, _ = models.load(out)
    linear = [m.weight for m in kd.prunable(model)]
    zeros = sum(int((w == 0).sum()) for w in linear) / sum(w.numel() for w in linear)
    assert zeros == pytest.approx(0.4, abs=0.01)  # still pruned after retraining, masks folded in
    assert models.nonzero_parameters(model) < summary["nonzero_before"]
