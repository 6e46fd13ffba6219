"""SKD acceptance against K (mtdistill.skd_acceptance) and train --objective skd --k auto reading its choice."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from mtdistill import models, skd_acceptance, train

TIMINGS = ("seconds", "tokens_per_s")


@pytest.fixture(scope="module")
def untrained_student(work, teacher_dir):
    """A tiny untrained student on the teacher's vocabulary: its drafts are kept about K / vocabulary of the time."""
    _, tokenizer = models.load(teacher_dir)
    torch.manual_seed(3)
    student = models.build_model({"d_model": 32, "encoder_layers": 1, "decoder_layers": 1, "heads": 2, "ffn_dim": 64}, tokenizer)
    out = work / "untrained_student"
    models.save(student, tokenizer, out)
    return out


def test_the_rule_takes_the_acceptance_closest_to_its_target_inside_the_range():
    rows = lambda accepted: [{"k": k, "acceptance": a} for k, a in accepted.items()]  # noqa: E731
    assert skd_acceptance.choose_k(rows({1: 0.2, 2: 0.5, 3: 0.62, 5: 0.85})) == 2
    assert skd_acceptance.choose_k(rows({1: 0.1, 10: 0.9, -1: 1.0, 0: 0.0})) is None  # nothing in [0.3, 0.8]
    assert skd_acceptance.choose_k(rows({5: 0.6, 3: 0.5})) == 3  # equally close: the smaller K
    assert skd_acceptance.choose_k(rows({2: 0.3, 9: 0.81})) == 2  # the bounds belong to the range


def test_sources_are_a_seeded_sample(kd_labels):
    first = skd_acceptance.sample_sources([str(kd_labels)], 8, seed=1)
    assert first == skd_acceptance.sample_sources([str(kd_labels)], 8, seed=1) and len(first) == 8
    assert first != skd_acceptance.sample_sources([str(kd_labels)], 8, seed=2)
    everything = list(pd.read_parquet(kd_labels).source)
    assert skd_acceptance.sample_sources([str(kd_labels)], 10_000, seed=1) == everything  # all of them, in table order


def test_acceptance_against_k_chooses_the_k_skd_trains_with(untrained_student, teacher_dir, kd_labels, tmp_path):
    outs = [tmp_path / "a.json", tmp_path / "b.json"]
    for out in outs:
        assert skd_acceptance.main(["--student", str(untrained_student), "--teacher", str(teacher_dir),
                                    "--labels", str(kd_labels), "--k-values", "0", "300", "-1", "--gamma", "3",
                                    "--sentences", "8", "--batch-size", "4", "--max-len-a", "0", "--max-len-b", "12",
                                    "--seed", "5", "--out", str(out)]) == 0
    first, second = (json.loads(out.read_text()) for out in outs)
    for result in (first, second):
        for row in result["sweep"]:
            assert row["seconds"] > 0 and row["tokens_per_s"] > 0
            for key in TIMINGS:
                del row[key]
    assert first == second  # deterministic given --seed, timings aside
    assert {"student", "teacher", "labels", "sentences", "seed", "gamma", "max_len_a", "max_len_b", "max_len",
            "student_sampling", "teacher_sampling", "sweep", "chosen_k", "choice"} <= set(first)
    assert first["sentences"] == 8 and "0.55" in first["choice"] and "0.3 <= acceptance <= 0.8" in first["choice"]
    by_k = {row["k"]: row for row in first["sweep"]}
    assert list(by_k) == [0, 300, -1] and by_k[-1]["k_tokens"] == len(models.load_tokenizer(untrained_student))
    for row in by_k.values():
        assert row["acceptance"] == row["student_tokens_kept"] / row["tokens_generated"]
        assert row["tokens_generated"] <= 8 * 12  # the length limit, 12 tokens a sentence
    assert by_k[0]["acceptance"] == 0 and by_k[-1]["acceptance"] == 1  # the two limits: teacher-generated, on-policy
    assert 0.3 <= by_k[300]["acceptance"] <= 0.8  # about half of a 600-token vocabulary
    assert first["chosen_k"] == 300 == skd_acceptance.choose_k(first["sweep"])
    args = train.parse_args(["--train", "t.parquet", "--dev", "d.parquet", "--init", str(untrained_student),
                             "--teacher", str(teacher_dir), "--out", "o", "--objective", "skd", "--k", "auto",
                             "--acceptance", str(outs[0])])
    assert args.k == 300


def test_bad_k_values_are_refused(capsys):
    base = ["--student", "s", "--teacher", "t", "--labels", "l.parquet", "--out", "o.json", "--k-values"]
    for values, message in [(["2", "2"], "a K is repeated"), (["-2"], "each K is -1")]:
        with pytest.raises(SystemExit):
            skd_acceptance.parse_args([*base, *values])
        assert message in capsys.readouterr().err
