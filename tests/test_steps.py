"""Each step's main([...]) on tiny data, with assertions on what it wrote."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import sacrebleu
import torch

from helpers import data_spec, reranker_args, train_args


def test_prepare_data_splits_by_book_and_keeps_ids(data_dir, config, work):
    from mtdistill import prepare_data

    sets = {name: pd.read_parquet(data_dir / f"{name}.parquet") for name in ("train", "tune", "dev", "test", "bitext", "mono")}
    assert set(sets["train"].doc_id) == {"6"}  # Joshua
    assert set(sets["tune"].doc_id) == {"57"} and set(sets["dev"].doc_id) == {"56"} and set(sets["test"].doc_id) == {"32"}
    for name, df in sets.items():
        assert df.sent_id.is_unique, name
        assert len(df) > 0, name
    assert len(sets["bitext"]) == 40 and set(sets["bitext"].sent_id) <= set(sets["train"].sent_id)
    assert len(sets["mono"]) == 20 and all(s.startswith("s:06.") for s in sets["mono"].sent_id)
    assert sets["mono"].target.isna().all()
    # extra references for multi-reference evaluation, normalised apostrophes, length filter
    assert all(len(r) == 2 for r in sets["test"].references)
    assert not sets["train"].target.str.contains("`").any()
    assert sets["train"].source.str.split().str.len().max() <= 30
    # no held-out source is trained on
    held_out = set(pd.concat([sets["tune"], sets["dev"], sets["test"]]).source)
    for name in ("train", "bitext", "mono"):
        assert not set(sets[name].source) & held_out
    # a second run gives identical tables (stable ids, deterministic sampling)
    assert prepare_data.main(["--spec", data_spec(config), "--outdir", str(work / "data2")]) == 0
    for name in sets:
        pd.testing.assert_frame_equal(sets[name], pd.read_parquet(work / "data2" / f"{name}.parquet"))


def test_files_source_splits_by_document(tmp_path, config_copy):
    from mtdistill import prepare_data

    rows = [(f"quelle {d} {i} wort", f"target {d} {i} word", f"doc{d}") for d in range(20) for i in range(5)]
    pd.DataFrame(rows, columns=["source", "target", "doc_id"]).to_csv(tmp_path / "bitext.tsv", sep="\t", index=False)
    (tmp_path / "mono.txt").write_text("".join(f"mono satz {i}\n" for i in range(30)))
    config_copy["data"].update(source="files", files={
        "parallel": {"tsv": str(tmp_path / "bitext.tsv")}, "mono": [str(tmp_path / "mono.txt")],
        "tune_fraction": 0.1, "dev_fraction": 0.1, "test_fraction": 0.1, "lines_per_doc": 50, "doc_ids": ""})
    config_copy["data"]["transfer"] = {"bitext_size": 10, "mono_size": 5}
    assert prepare_data.main(["--spec", data_spec(config_copy), "--outdir", str(tmp_path / "out")]) == 0
    sets = {n: pd.read_parquet(tmp_path / "out" / f"{n}.parquet") for n in ("train", "tune", "dev", "test", "mono")}
    docs = {n: set(df.doc_id) for n, df in sets.items() if n != "mono"}
    assert all(len(docs[n]) == 2 for n in ("tune", "dev", "test"))
    assert len(docs["train"]) == 14
    assert not docs["train"] & (docs["tune"] | docs["dev"] | docs["test"])
    assert sets["test"].sent_id.str.match(r"L\d{8}").all()
    assert len(sets["mono"]) == 5


def test_leakage_check_names_the_overlap(tmp_path, config_copy):
    from mtdistill.core.io import InputError
    from mtdistill.corpora.prepare import prepare

    rows = [(f"satz {d} {i}", f"sentence {d} {i}", f"doc{d}") for d in range(10) for i in range(4)]
    rows += [(f"satz {d} 0", f"sentence {d} 0", "docX") for d in range(10)]  # every doc's first line again
    pd.DataFrame(rows, columns=["source", "target", "doc_id"]).to_csv(tmp_path / "b.tsv", sep="\t", index=False)
    config_copy["data"].update(source="files", drop_held_out_overlap=False, files={
        "parallel": {"tsv": str(tmp_path / "b.tsv")}, "mono": [], "doc_ids": "", "lines_per_doc": 50,
        "tune_fraction": 0.1, "dev_fraction": 0.1, "test_fraction": 0.1})
    with pytest.raises(InputError, match=r"data leakage: \d+ (test|dev|tune) source sentence\(s\) also in train \(first: sent_id L\d+"):
        prepare({**config_copy["data"], "seed": 1})
    config_copy["data"]["drop_held_out_overlap"] = True
    sets = prepare({**config_copy["data"], "seed": 1})
    assert not set(sets["train"].source) & set(sets["test"].source)


def test_tokenizer_follows_the_ctranslate2_layout(tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    assert tok.pad_token_id == len(tok) - 1
    assert tok.eos_token_id == 0 and tok.unk_token_id == 1
    ids = tok("Und Josua sprach zu dem Volke.")["input_ids"]
    assert ids[-1] == tok.eos_token_id and tok.unk_token_id not in ids
    assert tok.decode(ids, skip_special_tokens=True) == "Und Josua sprach zu dem Volke."


def test_teacher_trains_and_loads_with_transformers(teacher_dir, config):
    from transformers import AutoModelForSeq2SeqLM

    model = AutoModelForSeq2SeqLM.from_pretrained(teacher_dir)
    pad = model.config.pad_token_id
    assert model.config.decoder_start_token_id == pad == model.config.vocab_size - 1
    assert model.config.forced_eos_token_id is None
    assert model.generation_config.bad_words_ids == [[pad]]
    assert float(model.get_input_embeddings().weight[pad].detach().abs().sum()) == 0.0  # kept at zero while training
    summary = json.loads((teacher_dir / "training.json").read_text())
    assert summary["steps"] == config["teacher"]["train"]["max_steps"]
    losses = [h["dev_loss"] for h in summary["history"]]
    assert losses[-1] < losses[0] and summary["best"]["dev_loss"] == min(losses)
    assert summary["select_by"] == "loss"


def test_teacher_uses_the_source(teacher_dir, data_dir):
    """A teacher whose encoder collapsed scores shuffled sources as well as the true ones."""
    from mtdistill import models
    from mtdistill.training.batches import dev_loss, encode, token_batches

    model, tokenizer = models.load(teacher_dir)
    dev = pd.read_parquet(data_dir / "dev.parquet")
    shuffled = list(dev.source.sample(frac=1.0, random_state=1))
    losses = []
    for sources in (list(dev.source), shuffled):
        pairs = encode(tokenizer, sources, list(dev.target), 64)
        batches = token_batches(pairs, 2048, np.random.default_rng(0))
        losses.append(dev_loss(model, pairs, batches, tokenizer.pad_token_id, models.device()))
    assert losses[0] < losses[1] - 0.02


def test_student_starts_from_matching_teacher_tensors(teacher_dir):
    from mtdistill import models

    tokenizer = models.load_tokenizer(teacher_dir)
    student = models.build_model({"d_model": 64, "encoder_layers": 1, "decoder_layers": 1, "heads": 2, "ffn_dim": 32}, tokenizer)
    copied = set(models.copy_matching_weights(student, teacher_dir))
    teacher, _ = models.load(teacher_dir)
    assert "model.shared.weight" in copied and "model.encoder.layers.0.self_attn.k_proj.weight" in copied
    assert "model.encoder.layers.0.fc1.weight" not in copied  # other FFN width
    assert torch.equal(student.model.shared.weight, teacher.model.shared.weight.cpu())


def test_training_is_deterministic(work, data_dir, tokenizer_dir, config):
    from safetensors.torch import load_file
    from mtdistill import train

    outs = []
    for run in ("a", "b"):
        out = work / f"det_{run}"
        argv = ["--train", str(data_dir / "bitext.parquet"), "--dev", str(data_dir / "dev.parquet"),
                "--tokenizer", str(tokenizer_dir), "--arch", json.dumps(config["student"]["arch"]),
                "--max-steps", "5", "--eval-every", "5", "--seed", "7", "--out", str(out)]
        assert train.main(argv) == 0
        outs.append(load_file(out / "model.safetensors"))
    assert all((outs[0][k] == outs[1][k]).all() for k in outs[0])


def test_precision_is_an_option_recorded_with_the_model(work, data_dir, tokenizer_dir, config):
    from mtdistill import train
    from mtdistill.training.batches import resolve_precision

    assert resolve_precision("auto", torch.device("cpu")) == "fp32"  # bf16 only on a GPU that has it
    out = work / "bf16"
    assert train.main(["--train", str(data_dir / "bitext.parquet"), "--dev", str(data_dir / "dev.parquet"),
                       "--tokenizer", str(tokenizer_dir), "--arch", json.dumps(config["student"]["arch"]),
                       "--max-steps", "2", "--eval-every", "2", "--precision", "bf16", "--out", str(out)]) == 0
    summary = json.loads((out / "training.json").read_text())
    assert summary["precision"] == "bf16" and summary["world_size"] == 1 and math.isfinite(summary["best"]["dev_loss"])


def test_nbest_table_and_shards(tune_nbest, data_dir, teacher_dir, work, config):
    from mtdistill import decode

    nbest = pd.read_parquet(tune_nbest)
    n = config["decode"]["nbest"]
    tune = pd.read_parquet(data_dir / "tune.parquet")
    assert list(nbest.columns) == ["sent_id", "hyp_id", "hypothesis", "score"]
    assert len(nbest) == n * len(tune)
    for _, group in nbest.groupby("sent_id"):
        assert list(group.hyp_id) == list(range(n))
        assert (np.diff(group.score) <= 1e-6).all()  # best first
    # two shards partition the set
    parts = []
    for shard in (0, 1):
        out = work / "nbest" / f"shard{shard}.parquet"
        assert decode.main(["--model", str(teacher_dir), "--input", str(data_dir / "tune.parquet"), "--shard", str(shard),
                            "--num-shards", "2", "--beam", str(n), "--nbest", str(n), "--out", str(out)]) == 0
        parts.append(pd.read_parquet(out))
    assert sorted(pd.concat(parts).sent_id.unique()) == sorted(tune.sent_id)
    assert not set(parts[0].sent_id) & set(parts[1].sent_id)


def test_forced_decoding_matches_beam_scores(tune_nbest, tune_features):
    nbest = pd.read_parquet(tune_nbest)
    features = pd.read_parquet(tune_features[0])
    assert list(features.columns) == ["sent_id", "hyp_id", "teacher_logprob", "teacher_logprob_per_token", "teacher_tokens"]
    joined = nbest.merge(features, on=["sent_id", "hyp_id"], validate="one_to_one")
    assert len(joined) == len(nbest)
    assert np.isfinite(joined.teacher_logprob).all() and (joined.teacher_logprob < 0).all()
    # forced decoding re-scores what beam search produced: same length-normalised log-prob for
    # hypotheses that re-tokenise to the same tokens (beam search never applies the <pad> mask)
    close = np.isclose(joined.score, joined.teacher_logprob_per_token, atol=0.05)
    assert close.mean() > 0.8
    length = pd.read_parquet(tune_features[1])
    assert {"length_hyp_words", "length_ratio"} <= set(length.columns)


def test_reranker_weights_and_diagnostics(reranker, data_dir, tune_nbest, tune_features, dev_nbest, dev_features, work):
    from mtdistill import tune_reranker

    weights, diagnostics = (json.loads(p.read_text()) for p in reranker)
    features = ["teacher_logprob", "teacher_logprob_per_token", "teacher_tokens",
                "length_hyp_words", "length_ratio", "length_char_ratio"]
    # the beam score is not a feature: merged lists have none for R2L-only hypotheses
    assert weights["features"] == features and weights["method"] == "mira" and weights["scorers"] == ["teacher", "length"]
    assert len(weights["weights"]) == len(weights["mean"]) == len(weights["std"]) == 6
    assert all(math.isfinite(x) for x in weights["weights"])
    # every tuner (and the weights handed to labelling) at least matches top-1 on tune: all zeros when nothing beats it
    assert min(diagnostics["checks"]["tune_minus_top1"].values()) >= -1e-9
    assert diagnostics["groups"] == {"teacher": features[:3], "length": features[3:]}
    rows = {row["system"]: row for row in diagnostics["rows"]}
    assert {"top1", "oracle", "anti-oracle", "mira", "pro", "expected", "random"} <= set(rows)
    for split in ("tune", "dev"):
        for metric in ("bleu", "chrf"):  # no pick beats the oracle nor falls below the anti-oracle
            values = [row[split][metric] for row in rows.values()]
            assert rows["oracle"][split]["chrf"] >= max(r[split]["chrf"] for r in rows.values()) - 1e-9
            assert rows["anti-oracle"][split]["chrf"] <= min(r[split]["chrf"] for r in rows.values()) + 1e-9
            assert all(math.isfinite(v) for v in values)
    assert [s["feature"] for s in diagnostics["single_features"]] == features
    assert [a["dropped"] for a in diagnostics["ablation"]] == ["teacher", "length"]
    assert set(diagnostics["weights"]) == {"mira", "pro", "expected", "random"}
    assert all(len(t) == 5 for t in diagnostics["traces"].values())  # same number of evaluations each
    # tuners choose the best of their candidates by the tune metric, so the trace maximum is the row
    assert max(diagnostics["traces"]["mira"]) == pytest.approx(rows["mira"]["tune"]["chrf"])
    # deterministic given the seed
    again = work / "reranker_again"
    assert tune_reranker.main([*reranker_args(data_dir, tune_nbest, tune_features, dev_nbest, dev_features),
                               "--tuners", "mira", "pro", "expected", "--evaluations", "5", "--metric", "chrf",
                               "--weights", str(again / "w.json"), "--diagnostics", str(again / "d.json")]) == 0
    assert json.loads((again / "w.json").read_text()) == weights
    assert json.loads((again / "d.json").read_text()) == diagnostics


def test_scorer_selection_keeps_the_largest_weights(data_dir, tune_nbest, tune_features, dev_nbest, dev_features, work):
    from mtdistill import tune_reranker

    out = work / "selected"
    assert tune_reranker.main([*reranker_args(data_dir, tune_nbest, tune_features, dev_nbest, dev_features),
                               "--tuners", "pro", "--select", "1", "--evaluations", "3", "--metric", "chrf",
                               "--weights", str(out / "w.json"), "--diagnostics", str(out / "d.json")]) == 0
    weights, diagnostics = (json.loads((out / f).read_text()) for f in ("w.json", "d.json"))
    ranking = diagnostics["selection"]["ranking"]
    assert weights["scorers"] == [ranking[0][0]] and ranking[0][1] >= ranking[1][1]
    assert set(weights["features"]) == set(diagnostics["groups"][ranking[0][0]])
    assert any(row["system"] == "pro (1 scorers)" for row in diagnostics["rows"])


def test_label_strategies(work, data_dir, tune_nbest, tune_features, weights):
    from mtdistill import score, select_labels
    from mtdistill.core.nbest import per_hypothesis_refs

    tune = pd.read_parquet(data_dir / "tune.parquet")
    nbest = pd.read_parquet(tune_nbest)
    labels = {}
    mbr = work / "features" / "tune" / "mbr" / "0.parquet"
    assert score.main(["--name", "mbr", "--kind", "mbr", "--nbest", str(tune_nbest),
                       "--sources", str(data_dir / "tune.parquet"), "--out", str(mbr)]) == 0
    for strategy in ("ref", "top1", "seqinter", "rerank", "mbr"):
        out = work / "labels" / f"{strategy}.parquet"
        # the tiny teacher's lists are mostly degenerate: the filter is off here (tests/test_labels.py tests it);
        # seqinter in its merged, multi-reference form
        argv = ["--strategy", strategy, "--sentences", str(data_dir / "tune.parquet"), "--out", str(out),
                "--max-ngram", "0", "--max-char-run", "0", "--min-length-ratio", "0", "--max-length-ratio", "0",
                "--keep-source-copies", "--seqinter-candidates", "merged", "--seqinter-references", "all"]
        if strategy != "ref":
            argv += ["--nbest", str(tune_nbest), "--features", *map(str, tune_features), str(mbr), "--weights", str(weights)]
        assert select_labels.main(argv) == 0
        labels[strategy] = pd.read_parquet(out)
        assert list(labels[strategy].sent_id) == list(tune.sent_id)
        assert (labels[strategy].strategy == strategy).all()
    assert list(labels["ref"].label) == list(tune.target) and (labels["ref"].hyp_id == -1).all()
    assert list(labels["top1"].label) == list(nbest[nbest.hyp_id == 0].hypothesis)
    # seqinter: no other hypothesis has a higher smoothed sentence BLEU against the references
    refs = per_hypothesis_refs(nbest, tune)
    gains = np.array([sacrebleu.sentence_bleu(h, r, smooth_method="exp").score for h, r in zip(nbest.hypothesis, refs)])
    best = nbest.assign(gain=gains).groupby("sent_id").gain.max()
    chosen = nbest.assign(gain=gains).merge(labels["seqinter"][["sent_id", "hyp_id"]])
    assert np.allclose(chosen.set_index("sent_id").gain.loc[best.index], best)
    # rerank and mbr pick n-best members; mbr the one with the highest chrF consensus
    for strategy in ("rerank", "mbr"):
        merged = labels[strategy].merge(nbest, on=["sent_id", "hyp_id"])
        assert (merged.label == merged.hypothesis).all() and len(merged) == len(tune)
    utilities = pd.read_parquet(mbr)
    best = utilities.groupby("sent_id").mbr_chrf.max()
    chosen = labels["mbr"].merge(utilities, on=["sent_id", "hyp_id"]).set_index("sent_id")
    assert np.allclose(chosen.mbr_chrf.loc[best.index], best)


def test_reference_strategies_reject_monolingual_sets(work, data_dir):
    from mtdistill import select_labels

    with pytest.raises(select_labels.InputError, match="needs references"):
        select_labels.select("seqinter", pd.read_parquet(data_dir / "mono.parquet"))


def test_student_evaluation_and_report(work, data_dir, teacher_dir, config):
    from mtdistill import evaluate, report, train

    student = work / "student"
    labels = work / "labels" / "top1.parquet"
    pd.read_parquet(data_dir / "tune.parquet").assign(label=lambda d: d.target).to_parquet(labels)
    assert train.main(["--train", str(labels), "--label-column", "label", "--dev", str(data_dir / "dev.parquet"),
                       "--tokenizer", str(teacher_dir), "--arch", json.dumps(config["student"]["arch"]),
                       *train_args(config, "student"), "--out", str(student)]) == 0  # tiny.yaml: select_by bleu
    summary = json.loads((student / "training.json").read_text())
    bleus = [h["dev_bleu"] for h in summary["history"]]
    assert summary["select_by"] == "bleu" and summary["best"]["dev_bleu"] == max(bleus)
    assert summary["best_step"] == summary["history"][bleus.index(max(bleus))]["step"]
    evals = []
    for system, model in (("teacher", teacher_dir), ("student_top1", student)):
        out = work / "eval" / f"{system}.json"
        assert evaluate.main(["--model", str(model), "--test", str(data_dir / "test.parquet"), "--system", system,
                              "--strategy", "top1", "--beam", "2", "--out", str(out)]) == 0
        evals.append(out)
        result = json.loads(out.read_text())
        for decoding in ("greedy", "beam"):
            assert result[decoding]["bleu_signature"].startswith("nrefs:3|")
            assert "nrefs:3" in result[decoding]["chrf_signature"]
            assert math.isfinite(result[decoding]["bleu"]) and result[decoding]["sentences_per_s"] > 0
            assert len(result[decoding]["hypotheses"]) == result["test_sentences"]
    teacher_eval, student_eval = (json.loads(p.read_text()) for p in evals)
    assert student_eval["parameters"] < teacher_eval["parameters"]
    csv, md = work / "report.csv", work / "report.md"
    assert report.main(["--evaluations", *map(str, evals), "--models", str(teacher_dir), str(student),
                        "--csv", str(csv), "--markdown", str(md)]) == 0
    table = pd.read_csv(csv)
    assert list(table.system) == ["teacher", "student_top1"]
    assert {"parameters", "bleu_greedy", "bleu_beam", "chrf_greedy", "chrf_beam", "sent_per_s_greedy"} <= set(table.columns)
    assert "nrefs:3|case:mixed" in md.read_text()


def test_pretrained_teacher_loads_from_a_local_directory(work, teacher_dir, data_dir):
    from mtdistill import decode, import_teacher

    out = work / "imported"
    assert import_teacher.main(["--pretrained", str(teacher_dir), "--out", str(out)]) == 0
    assert (out / "model.safetensors").exists() and (out / "vocab.json").exists()
    nbest = work / "imported_nbest.parquet"
    assert decode.main(["--model", str(out), "--input", str(data_dir / "tune.parquet"), "--beam", "2", "--nbest", "2", "--out", str(nbest)]) == 0
    assert len(pd.read_parquet(nbest)) == 2 * len(pd.read_parquet(data_dir / "tune.parquet"))


def test_missing_pretrained_teacher_is_named(work, capsys):
    from mtdistill import import_teacher

    assert import_teacher.main(["--pretrained", "/no/such/teacher", "--out", str(work / "x")]) == 2
    assert "config key teacher.pretrained: /no/such/teacher: directory not found" in capsys.readouterr().err
    assert not (work / "x").exists()


def test_mbr_prefers_the_consensus_hypothesis(tmp_path):
    from mtdistill import score

    hyps = ["the cat sat on the mat", "the cat sat on a mat", "a cat sat on the mat", "dogs run fast in parks"]
    nbest = pd.DataFrame({"sent_id": "s1", "hyp_id": range(4), "hypothesis": hyps})
    nbest.to_parquet(tmp_path / "nbest.parquet")
    pd.DataFrame({"sent_id": ["s1"], "source": ["die Katze"]}).to_parquet(tmp_path / "src.parquet")
    assert score.main(["--name", "mbr", "--kind", "mbr", "--nbest", str(tmp_path / "nbest.parquet"),
                       "--sources", str(tmp_path / "src.parquet"), "--out", str(tmp_path / "mbr.parquet")]) == 0
    features = pd.read_parquet(tmp_path / "mbr.parquet")
    for metric in ("chrf", "bleu"):
        values = features[f"mbr_{metric}"].to_numpy()
        assert values.argmax() == 0 and values.argmin() == 3, metric
    # the utility of a hypothesis is its mean sentence score against the others
    expected = np.mean([sacrebleu.sentence_chrf(hyps[0], [h]).score for h in hyps[1:]])
    assert features.mbr_chrf[0] == pytest.approx(expected)


def test_scorer_cost_record_and_missing_model(tmp_path, tune_nbest, data_dir, capsys):
    from mtdistill import score

    common = ["--nbest", str(tune_nbest), "--sources", str(data_dir / "tune.parquet")]
    assert score.main(["--name", "length", "--kind", "length", *common, "--out", str(tmp_path / "f.parquet"),
                       "--cost-out", str(tmp_path / "cost.json")]) == 0
    cost = json.loads((tmp_path / "cost.json").read_text())
    assert cost["hypotheses"] == len(pd.read_parquet(tune_nbest)) and cost["seconds"] > 0 and cost["hypotheses_per_s"] > 0
    assert score.main(["--name", "backward", "--kind", "forced_decoding", "--model", "/no/such/model", *common,
                       "--out", str(tmp_path / "g.parquet")]) == 2
    assert "scorer 'backward': /no/such/model: directory not found" in capsys.readouterr().err
    assert not (tmp_path / "g.parquet").exists()
