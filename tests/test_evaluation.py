"""Evaluation metrics (TER, COMET, speed at batch size 1 and batched), the paired bootstrap against the
sequence-level KD student, and their place in the report and the DAG."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import sacrebleu
from comet_fixture import build_checkpoints, run_comet
from mtdistill import evaluate, report, report_sections, significance
from mtdistill.core.metrics import reference_streams
from mtdistill.core.io import InputError

SPEED_SENTENCES = 5


@pytest.fixture(scope="module")
def test_table(data_dir) -> pd.DataFrame:
    return pd.read_parquet(data_dir / "test.parquet")


@pytest.fixture(scope="module")
def teacher_evaluation_file(work, data_dir, teacher_dir):
    out = work / "evaluation" / "teacher.json"
    assert evaluate.main(["--model", str(teacher_dir), "--test", str(data_dir / "test.parquet"), "--system", "teacher",
                          "--beam", "2", "--batch-size", "16", "--speed-sentences", str(SPEED_SENTENCES),
                          "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def teacher_evaluation(teacher_evaluation_file) -> dict:
    return json.loads(teacher_evaluation_file.read_text())


def test_ter_with_signature_next_to_bleu_and_chrf(teacher_evaluation, test_table):
    refs = reference_streams(test_table)
    for decoding in ("greedy", "beam"):
        result = teacher_evaluation[decoding]
        assert result["ter_signature"].startswith("nrefs:3|") and "tok:tercom" in result["ter_signature"]
        assert result["ter"] == pytest.approx(sacrebleu.metrics.TER().corpus_score(result["hypotheses"], refs).score)
        assert result["ter"] > 0 and math.isfinite(result["ter"])
        assert {"bleu", "bleu_signature", "chrf", "chrf_signature", "sentences_per_s", "hypotheses"} <= set(result)


def test_speed_batched_and_at_batch_size_one(teacher_evaluation, teacher_dir):
    from mtdistill import models

    tokenizer = models.load_tokenizer(teacher_dir)
    sentences = teacher_evaluation["test_sentences"]
    for decoding, beam in (("greedy", 1), ("beam", 2)):
        result = teacher_evaluation[decoding]
        assert (result["beam"], result["batch_size"], result["sentences"]) == (beam, 16, sentences)
        # every hypothesis counts its target tokens, EOS included
        tokens = sum(len(tokenizer(text_target=h)["input_ids"]) for h in result["hypotheses"])
        assert result["target_tokens"] == tokens >= sentences
        assert result["target_tokens_per_s"] == pytest.approx(tokens / result["seconds"])
        assert result["sentences_per_s"] == pytest.approx(sentences / result["seconds"]) and result["sentences_per_s"] > 0
    batch1 = teacher_evaluation["batch1"]
    assert (batch1["beam"], batch1["batch_size"], batch1["sentences"]) == (1, 1, min(SPEED_SENTENCES, sentences))
    assert batch1["sentences_per_s"] > 0 and batch1["target_tokens_per_s"] > batch1["sentences_per_s"]
    assert teacher_evaluation["parameters"] >= teacher_evaluation["nonzero_parameters"] > 0
    assert teacher_evaluation["size_mb"] > 0


def test_reference_based_comet_in_evaluation(tmp_path, data_dir, test_table, teacher_evaluation_file, teacher_evaluation):
    """evaluation.comet: the COMET step (in the COMET environment) adds COMET to evaluate's JSON."""
    checkpoint = build_checkpoints(tmp_path / "comet", ["ref"], [*test_table.source, *test_table.target])["ref"]
    model_dir, out = checkpoint.parents[1], tmp_path / "teacher.comet.json"
    run_comet("-m", "mtdistill.comet_evaluate", "--evaluation", teacher_evaluation_file, "--test",
              data_dir / "test.parquet", "--comet", model_dir, "--comet-encoder", tmp_path / "comet" / "ref" / "encoder",
              "--batch-size", "16", "--out", out)
    result = json.loads(out.read_text())
    for decoding in ("greedy", "beam"):
        segments = result[decoding]["comet_segments"]
        assert len(segments) == len(test_table) and np.isfinite(segments).all()
        assert math.isfinite(result[decoding]["comet"]) and result[decoding]["comet"] == pytest.approx(np.mean(segments))
        # the rest is evaluate's, unchanged
        assert {k: v for k, v in result[decoding].items() if not k.startswith("comet")} == teacher_evaluation[decoding]
    assert result["comet_checkpoint"] == str(model_dir)
    assert {k: v for k, v in result.items() if k not in ("greedy", "beam", "comet_checkpoint")} == {
        k: v for k, v in teacher_evaluation.items() if k not in ("greedy", "beam")}


def test_missing_comet_checkpoint_names_evaluation_comet(tmp_path, data_dir, teacher_evaluation_file):
    missing = tmp_path / "nowhere.ckpt"
    result = run_comet("-m", "mtdistill.comet_evaluate", "--evaluation", teacher_evaluation_file, "--test",
                       data_dir / "test.parquet", "--comet", missing, "--out", tmp_path / "out.json", check=False)
    assert result.returncode == 2, result.stderr[-3000:]
    assert f"mtdistill: error: config key evaluation.comet: COMET checkpoint {missing} not found" in result.stderr
    assert not (tmp_path / "out.json").exists()


def test_comet_evaluation_refuses_another_test_set(tmp_path, test_table):
    """Hypotheses that do not line up with the test set are refused before COMET loads (so in this process)."""
    from mtdistill import comet_evaluate

    with pytest.raises(InputError, match="has 2 greedy hypotheses for a test set of"):
        comet_evaluate.add_comet({"greedy": {"hypotheses": ["a", "b"]}, "beam": {"hypotheses": ["a", "b"]}},
                                 "x.json", test_table, str(tmp_path / "nowhere.ckpt"), None, 16)
    with pytest.raises(InputError, match="x.json has no beam hypotheses"):
        comet_evaluate.add_comet({"greedy": {"hypotheses": list(test_table.target)}}, "x.json", test_table,
                                 str(tmp_path / "nowhere.ckpt"), None, 16)


def test_evaluate_refuses_comet_naming_its_step(data_dir, teacher_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        evaluate.main(["--model", str(teacher_dir), "--test", str(data_dir / "test.parquet"), "--system", "teacher",
                       "--comet", str(tmp_path / "comet.ckpt"), "--out", str(tmp_path / "out.json")])
    assert exit_.value.code == 2 and "mtdistill.comet_evaluate" in capsys.readouterr().err


# --- paired bootstrap ------------------------------------------------------------------------------


def systems(test_table: pd.DataFrame) -> dict[str, list[str]]:
    """Hypotheses of made-up systems: the references themselves, the wrong verse each, half of both."""
    target = list(test_table.target)
    wrong = target[1:] + target[:1]
    return {"top1-both": [t if i % 2 else w for i, (t, w) in enumerate(zip(target, wrong))],
            "perfect": target, "wrong": wrong}


def write_evaluations(directory, test_table, hypotheses: dict[str, list[str]], comet: dict | None = None) -> list[str]:
    """Evaluation JSONs as the evaluate step writes them, scored for real on the given hypotheses."""
    refs = reference_streams(test_table)
    paths = []
    for k, (name, hyps) in enumerate(hypotheses.items()):
        decodings = {d: {**evaluate.quality(hyps, refs), "hypotheses": hyps, "beam": width, "batch_size": 16,
                         "sentences_per_s": 100.0 / (k + 1), "target_tokens_per_s": 1000.0 / (k + 1)}
                     for d, width in (("greedy", 1), ("beam", 2))}
        if comet:
            decodings["beam"].update(comet_segments=comet[name], comet=float(np.mean(comet[name])))
        evaluation = {"system": name, "strategy": name.split("-")[0], "round": 1, "threads": 1, "model": name,
                      "parameters": 1000 // (k + 1), "nonzero_parameters": 1000 // (k + 1), "size_mb": 1.0,
                      "test_sentences": len(test_table), "references": len(refs), **decodings,
                      "batch1": {"sentences": 5, "beam": 1, "batch_size": 1, "sentences_per_s": 10.0 / (k + 1),
                                 "target_tokens_per_s": 100.0 / (k + 1)}}
        path = directory / f"{name}.json"
        path.write_text(json.dumps(evaluation))
        paths.append(str(path))
    return paths


@pytest.fixture
def evaluations(tmp_path, test_table) -> list[str]:
    return write_evaluations(tmp_path, test_table, systems(test_table))


def test_a_system_against_itself_is_not_significant(test_table):
    hyps = systems(test_table)["top1-both"]
    result = significance.compare({"top1-both": hyps, "copy": list(hyps)}, reference_streams(test_table), "top1-both",
                                  samples=200, seed=1)
    for metric in ("bleu", "chrf", "ter"):
        baseline, copy = result["systems"]["top1-both"][metric], result["systems"]["copy"][metric]
        assert baseline["p_value"] is None and copy["p_value"] == 1.0
        assert copy["score"] == baseline["score"] and copy["ci"] == baseline["ci"]
        low, high = copy["ci"]
        assert low < copy["score"] < high  # a real interval around the score, not a point


def test_references_beat_a_bad_system(test_table):
    named = systems(test_table)
    result = significance.compare({"wrong": named["wrong"], "perfect": named["perfect"]}, reference_streams(test_table),
                                  "wrong", samples=200, seed=1)
    perfect, wrong = result["systems"]["perfect"], result["systems"]["wrong"]
    assert perfect["bleu"]["score"] == pytest.approx(100) and perfect["ter"]["score"] == 0
    for metric in ("bleu", "chrf", "ter"):
        assert perfect[metric]["p_value"] < 0.05
        assert wrong[metric]["ci"][0] <= wrong[metric]["score"] <= wrong[metric]["ci"][1]
    assert perfect["chrf"]["ci"][0] > wrong["chrf"]["ci"][1] and perfect["ter"]["ci"][1] < wrong["ter"]["ci"][0]


def test_significance_file_format_and_determinism(tmp_path, data_dir, evaluations):
    outs = [tmp_path / f"significance{i}.json" for i in range(3)]
    for out, seed in zip(outs, (7, 7, 8)):
        assert significance.main(["--evaluations", *evaluations, "--test", str(data_dir / "test.parquet"),
                                  "--comparisons", "perfect:top1-both", "wrong:top1-both", "--round", "1",
                                  "--samples", "300", "--seed", str(seed),
                                  "--out", str(out)]) == 0
    first, again, other = (json.loads(p.read_text()) for p in outs)
    assert first == again
    assert first["systems"]["wrong"]["bleu"]["ci"] != other["systems"]["wrong"]["bleu"]["ci"]  # the seed is used
    assert (first["round"], first["baseline"], first["samples"], first["seed"]) == (1, "top1-both", 300, 7)
    assert set(first["signatures"]) == {"bleu", "chrf", "ter"}
    assert all("bs:300|seed:7" in sig for sig in first["signatures"].values())
    assert list(first["systems"]) == ["top1-both", "perfect", "wrong"]
    for name, metrics in first["systems"].items():
        assert set(metrics) == {"bleu", "chrf", "ter"}
        for metric in metrics.values():
            assert set(metric) == {"score", "mean", "ci", "p_value"} and len(metric["ci"]) == 2
            assert (metric["p_value"] is None) == (name == "top1-both")
    assert first["systems"]["perfect"]["bleu"]["p_value"] < 0.05
    assert not list(tmp_path.glob(".significance*"))  # atomic writes leave no temporary behind


def test_comet_segments_are_bootstrapped_too(tmp_path, data_dir, test_table):
    named = systems(test_table)
    rng = np.random.default_rng(0)
    comet = {"top1-both": rng.uniform(0.4, 0.6, len(test_table)).tolist(),
             "perfect": rng.uniform(0.8, 0.9, len(test_table)).tolist()}
    comet["wrong"] = list(comet["top1-both"])
    paths = write_evaluations(tmp_path, test_table, named, comet)
    result = significance.significance(paths, str(data_dir / "test.parquet"),
                                       [("perfect", "top1-both"), ("wrong", "top1-both")], 1, 200, 1)
    scores = {name: metrics["comet"] for name, metrics in result["systems"].items()}
    assert scores["perfect"]["p_value"] < 0.05 and scores["wrong"]["p_value"] == 1.0
    assert scores["perfect"]["score"] == pytest.approx(np.mean(comet["perfect"]))
    assert scores["perfect"]["ci"][0] < scores["perfect"]["score"] < scores["perfect"]["ci"][1]
    assert result["signatures"]["comet"] == "segment mean|bs:200|seed:1"


def test_missing_baseline_or_evaluation_names_it(tmp_path, data_dir, evaluations, capsys):
    test = str(data_dir / "test.parquet")
    with pytest.raises(InputError, match="comparison perfect:top1-mono: no evaluation of 'top1-mono'"):
        significance.significance(evaluations, test, [("perfect", "top1-mono")], 1, 100, 1)
    missing = str(tmp_path / "rerank-both.json")
    with pytest.raises(InputError, match=f"{missing}: file not found"):
        significance.significance([*evaluations, missing], test, [("perfect", "top1-both")], 1, 100, 1)
    out = tmp_path / "out.json"
    assert significance.main(["--evaluations", *evaluations[1:], "--test", test, "--comparisons", "perfect:top1-both",
                              "--out", str(out)]) == 2
    assert "no evaluation of 'top1-both'" in capsys.readouterr().err and not out.exists()
    short = json.loads(open(evaluations[1]).read())
    short["beam"]["hypotheses"] = short["beam"]["hypotheses"][:-1]
    (tmp_path / "short.json").write_text(json.dumps(short))
    with pytest.raises(InputError, match=r"short.json: \d+ beam hypotheses for a test set of \d+ sentences"):
        significance.significance([evaluations[0], str(tmp_path / "short.json")], test, [("perfect", "top1-both")], 1, 100, 1)


def test_named_comparisons_each_against_their_own_baseline(tmp_path, data_dir, evaluations):
    """Pairs with different baselines: each delta is the system's score minus its own baseline's."""
    result = significance.significance(evaluations, str(data_dir / "test.parquet"),
                                       [("perfect", "top1-both"), ("wrong", "perfect"), ("perfect", "wrong")], 1, 200, 1)
    pairs = {(c["system"], c["baseline"]): c["metrics"] for c in result["comparisons"]}
    assert list(pairs) == [("perfect", "top1-both"), ("wrong", "perfect"), ("perfect", "wrong")]
    for (system, baseline), metrics in pairs.items():
        for metric in ("bleu", "chrf", "ter"):
            m = metrics[metric]
            assert m["delta"] == pytest.approx(m["score"] - m["baseline_score"])
            assert m["p_value"] is not None and m["ci"][0] - 1e-6 <= m["score"] <= m["ci"][1] + 1e-6
    assert pairs["wrong", "perfect"]["bleu"]["delta"] < 0 < pairs["perfect", "wrong"]["bleu"]["delta"]
    assert pairs["wrong", "perfect"]["bleu"]["p_value"] < 0.05
    assert result["baseline"] == "top1-both"  # the first pair's group, as the figures read it


# --- report and workflow ---------------------------------------------------------------------------


def test_report_has_ter_speedups_and_significance(tmp_path, data_dir, test_table):
    named = {"teacher": systems(test_table)["perfect"], **systems(test_table)}
    paths = write_evaluations(tmp_path, test_table, named)
    sig = tmp_path / "significance.json"
    assert significance.main(["--evaluations", *paths, "--test", str(data_dir / "test.parquet"), "--comparisons",
                              *(f"{name}:top1-both" for name in named if name != "top1-both"),
                              "--round", "1", "--samples", "100", "--out", str(sig)]) == 0
    csv, md = tmp_path / "report.csv", tmp_path / "report.md"
    assert report.main(["--evaluations", *paths, "--significance", str(sig), "--csv", str(csv), "--markdown", str(md)]) == 0
    table = pd.read_csv(csv).set_index("system")
    assert table.loc["perfect", "ter_beam"] == 0 and table.loc["wrong", "ter_beam"] > 50
    # write_evaluations gives system k 1/(k+1) of the teacher's (k = 0) speed
    assert table.loc["teacher", "speedup_b1"] == 1 and table.loc["wrong", "speedup_b1"] == pytest.approx(1 / 4)
    assert table.loc["top1-both", "speedup_batched"] == pytest.approx(1 / 2)
    assert table.loc["perfect", "sent_per_s_b1"] == pytest.approx(10 / 3) and table.loc["perfect", "tok_per_s_b1"] > 0
    assert "comet_beam" not in table.columns
    text = md.read_text()
    assert "## Significance (paired bootstrap vs top1-both)" in text and "### Round 1 (baseline top1-both)" in text
    assert "BLEU [95% CI]" in text and "TER [95% CI]" in text and "- TER: `nrefs:3|bs:100|seed:1" in text
    row = next(line for line in text.splitlines() if line.startswith("| perfect ") and "[" in line)
    assert "100.00 [" in row and "*" in row


def test_dag_compares_the_systems_of_every_student_round(tmp_path):
    from helpers import dry_run_dag, tiny_config

    config = tiny_config()
    jobs = dry_run_dag(tmp_path, config)
    assert {w["round"] for n, w, _ in jobs if n == "compare_systems"} == {"1"}
    config["student"]["every_round"] = True
    jobs = dry_run_dag(tmp_path / "every_round", config)
    assert {w["round"] for n, w, _ in jobs if n == "compare_systems"} == {"0", "1"}


def test_report_states_each_finding_and_the_seed_spread(tmp_path, data_dir, test_table):
    named = {"teacher": systems(test_table)["perfect"], **systems(test_table)}
    named["top1-both.seed2"], named["top1-both.seed3"] = named["perfect"], named["wrong"]
    paths = write_evaluations(tmp_path, test_table, named)
    sig = tmp_path / "significance.json"
    pairs = ["perfect:wrong", "wrong:perfect", "top1-both.seed2:perfect"]
    assert significance.main(["--evaluations", *paths, "--test", str(data_dir / "test.parquet"), "--comparisons", *pairs,
                              "--round", "1", "--samples", "100", "--out", str(sig)]) == 0
    findings = json.dumps([{"system": "perfect", "baseline": "wrong", "finding": "perfect beats wrong"}])
    md = tmp_path / "report.md"
    assert report.main(["--evaluations", *paths, "--significance", str(sig), "--csv", str(tmp_path / "r.csv"),
                        "--markdown", str(md), "--findings", findings, "--note", "A smoke test."]) == 0
    text = md.read_text()
    assert text.splitlines()[2] == "A smoke test."
    rows = {line.split("|")[3].strip() + ":" + line.split("|")[4].strip(): line
            for line in text.split("## Findings")[1].split("## Seed spread")[0].splitlines() if line.count("|") > 5}
    assert "perfect beats wrong" in rows["perfect:wrong"] and "| holds " in rows["perfect:wrong"]
    assert "| reversed " in rows["wrong:perfect"]
    assert "| not significant " in rows["top1-both.seed2:perfect"]  # the same outputs: no difference
    spread = text.split("## Seed spread")[1].split("##")[0]
    bleu = [pd.read_csv(tmp_path / "r.csv").set_index("system").bleu_beam[s] for s in ("top1-both", "top1-both.seed2",
                                                                                       "top1-both.seed3")]
    assert f"| top1-both " in spread and f"{np.mean(bleu):.2f}" in spread and f"{np.std(bleu, ddof=1):.2f}" in spread


def test_verdicts_need_the_claimed_sign_and_p_below_005():
    assert report_sections.verdict(+1.0, 0.01) == "holds"
    assert report_sections.verdict(+1.0, 0.2) == "not significant"
    assert report_sections.verdict(+1.0, None) == "not significant"
    assert report_sections.verdict(-1.0, 0.01) == "reversed"
    assert report_sections.verdict(-1.0, 0.01, lower_is_better=True) == "holds"
