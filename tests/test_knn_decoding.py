"""Decoding with retrieval (p = (1 - beta) p_student + beta p_kNN at every step): beta 0 is the plain
student, the mixture checked by hand on one step, the LM-head hook's states, beta tuning on dev,
evaluation with the tuned beta and the report's section. The tiny teacher stands in for a student
(a seeded projection head saved beside it) searching the tiny two-shard knowledge base."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
import sacrebleu
import torch
from mtdistill import evaluate, models, report, tune_retrieval
from mtdistill.backends.hf import HFTranslator
from mtdistill.core.io import InputError
from mtdistill.core.metrics import reference_streams
from mtdistill.report_retrieval import retrieval_section
from mtdistill.retrieval import head as heads
from mtdistill.retrieval.kb import KnowledgeBase
from mtdistill.retrieval.knn import KnnMixing, Retrieval, captured_states, output_layer

NEIGHBOURS, RELATIONAL_TAU = 4, 0.1


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory, teacher_dir, kb_shards):
    out = tmp_path_factory.mktemp("knn") / "student"
    shutil.copytree(teacher_dir, out)
    d_model = models.load(out)[0].config.d_model
    heads.save_head(heads.new_head(d_model, KnowledgeBase.load(kb_shards).dim, seed=3), out,
                    neighbours=NEIGHBOURS, relational_tau=RELATIONAL_TAU)
    return out


@pytest.fixture(scope="module")
def student(student_dir, kb_shards):
    model, tokenizer = models.load(student_dir)
    return model, tokenizer, Retrieval.load(student_dir, kb_shards)


@pytest.fixture(scope="module")
def sources(data_dir) -> list[str]:
    return list(pd.read_parquet(data_dir / "dev.parquet").source[:6])


def with_beta(retrieval: Retrieval, beta: float) -> Retrieval:
    return dataclasses.replace(retrieval, beta=beta)


def first_step(model, tokenizer, sources: list[str]):
    """The model's first decoding step on `sources`: (logits with <pad> forbidden, as generate's
    bad-words processor does, the forward's outputs, the hook's states)."""
    enc = tokenizer(sources, return_tensors="pt", padding=True)
    start = torch.full((len(sources), 1), model.config.decoder_start_token_id)
    with torch.no_grad(), captured_states(model) as states:
        outputs = model(**enc, decoder_input_ids=start, output_hidden_states=True)
    logits = outputs.logits[:, -1].float().clone()
    logits[:, tokenizer.pad_token_id] = float("-inf")
    return enc, start, logits, outputs, states


def knn_by_hand(retrieval: Retrieval, state: torch.Tensor, vocab: int, pad: int) -> np.ndarray:
    """p_kNN of one decoder state from an exhaustive search of every stored key, renormalised off <pad>."""
    kb = retrieval.kb
    with torch.no_grad():
        query = retrieval.head(state.float()).numpy()
    query /= np.linalg.norm(query)
    cosines = kb.keys(np.arange(kb.size)) @ query
    nearest = np.argsort(-cosines)[: retrieval.neighbours]
    weights = np.exp(cosines[nearest] / retrieval.relational_tau)
    weights /= weights.sum()
    p = np.zeros(vocab)
    for weight, entry in zip(weights, nearest):
        tokens, logprobs = kb.values(np.array([entry]))
        probs = np.exp(logprobs[0].astype(np.float64))
        for token, prob in zip(tokens[0], probs / probs.sum()):
            p[token] += weight * prob
    p[pad] = 0
    return p / p.sum()


def test_beta_zero_is_the_plain_student_in_greedy_and_beam(student, sources):
    model, tokenizer, retrieval = student
    plain, knn = HFTranslator(model, tokenizer), HFTranslator(model, tokenizer, with_beta(retrieval, 0.0))
    for beam, nbest in ((1, 1), (3, 2)):
        expected = plain.translate(sources, beam=beam, nbest=nbest, batch_size=4)
        got = knn.translate(sources, beam=beam, nbest=nbest, batch_size=4)
        assert [[text for text, _ in hyps] for hyps in got] == [[text for text, _ in hyps] for hyps in expected]
        scores = [[score for _, score in hyps] for hyps in got]
        if beam > 1:
            assert scores == [[score for _, score in hyps] for hyps in expected]  # bit for bit
        else:
            assert all(math.isnan(score) for row in scores for score in row)
    assert not output_layer(model)._forward_hooks  # the hook lives only while generate runs
    _, start, logits, _, states = first_step(model, tokenizer, sources[:2])
    assert KnnMixing(with_beta(retrieval, 0.0), states)(start, logits) is logits


def test_beta_above_zero_mixes_the_knn_distribution_in(student, sources):
    model, tokenizer, retrieval = student
    pad, beta = tokenizer.pad_token_id, 0.4
    _, start, logits, outputs, states = first_step(model, tokenizer, sources[:3])
    mixed = KnnMixing(with_beta(retrieval, beta), states)(start, logits.clone())
    assert torch.isneginf(mixed[:, pad]).all()  # what the bad-words processor forbade stays forbidden
    assert torch.allclose(mixed.exp().sum(-1), torch.ones(3), atol=1e-5)
    for row in range(3):
        p_knn = knn_by_hand(retrieval, outputs.decoder_hidden_states[-1][row, -1], logits.shape[-1], pad)
        expected = (1 - beta) * logits[row].softmax(-1).double().numpy() + beta * p_knn
        np.testing.assert_allclose(mixed[row].exp().double().numpy(), expected, atol=1e-6)
        assert np.abs(expected - logits[row].softmax(-1).numpy()).max() > 1e-3  # a different distribution
    # beam search hands the processor log-softmaxed scores: the same mixture comes out
    from_log_probs = KnnMixing(with_beta(retrieval, beta), states)(start, logits.log_softmax(-1))
    assert torch.allclose(from_log_probs.exp(), mixed.exp(), atol=1e-6)
    beam_plain = HFTranslator(model, tokenizer).translate(sources, beam=3, batch_size=4)
    beam_knn = HFTranslator(model, tokenizer, with_beta(retrieval, beta)).translate(sources, beam=3, batch_size=4)
    assert [s for (_, s), in beam_knn] != [s for (_, s), in beam_plain]  # scores of the mixed distribution


def test_beta_one_greedy_takes_the_argmax_of_p_knn(student, sources):
    model, tokenizer, retrieval = student
    enc, _, logits, outputs, _ = first_step(model, tokenizer, sources[:3])
    with torch.no_grad(), with_beta(retrieval, 1.0).mixing(model) as processors:
        generated = model.generate(**enc, max_new_tokens=1, do_sample=False, logits_processor=processors)
    for row in range(3):
        p_knn = knn_by_hand(retrieval, outputs.decoder_hidden_states[-1][row, -1], logits.shape[-1], tokenizer.pad_token_id)
        assert generated[row, 1].item() == int(np.argmax(p_knn))


class StateRecorder:
    """A logits processor keeping the hook's state of every greedy step."""

    def __init__(self, states):
        self.states, self.steps = states, []

    def __call__(self, input_ids, scores):
        self.steps.append(self.states.last.clone())
        return scores


def test_hook_keeps_the_final_decoder_state_of_each_cached_step(student, sources):
    model, tokenizer, _ = student
    enc = tokenizer(sources[:3], return_tensors="pt", padding=True)
    with torch.no_grad(), captured_states(model) as states:
        recorder = StateRecorder(states)
        generated = model.generate(**enc, max_new_tokens=8, do_sample=False, logits_processor=[recorder])
    assert not output_layer(model)._forward_hooks
    with torch.no_grad():
        forced = model(**enc, decoder_input_ids=generated[:, :-1], output_hidden_states=True).decoder_hidden_states[-1]
    assert len(recorder.steps) == generated.shape[1] - 1
    eos = tokenizer.eos_token_id
    for row in range(3):
        ends = (generated[row, 1:] == eos).nonzero()
        length = int(ends[0]) + 1 if len(ends) else generated.shape[1] - 1  # steps up to its EOS
        for step in range(length):
            torch.testing.assert_close(recorder.steps[step][row], forced[row, step], atol=1e-5, rtol=1e-4)


def test_evaluate_refuses_retrieval_without_the_hf_backend(tmp_path, data_dir, capsys):
    out = tmp_path / "eval.json"
    argv = ["--model", str(tmp_path / "student"), "--test", str(data_dir / "test.parquet"), "--system", "s.knn",
            "--out", str(out)]
    assert evaluate.main([*argv, "--backend", "ctranslate2", "--translator", str(tmp_path / "ct2"),
                          "--retrieval", str(tmp_path / "tuned.json"), "--kb", str(tmp_path / "kb.0")]) == 2
    err = capsys.readouterr().err
    assert ("--retrieval needs --backend hf, not ctranslate2: CTranslate2 cannot mix a kNN distribution into its "
            "decoding steps") in err and not out.exists()
    assert evaluate.main([*argv, "--retrieval", str(tmp_path / "tuned.json")]) == 2
    assert "--retrieval and --kb go together" in capsys.readouterr().err
    named = [*argv[:5], "s", *argv[6:]]
    assert evaluate.main([*named, "--retrieval", str(tmp_path / "tuned.json"), "--kb", str(tmp_path / "kb.0")]) == 2
    assert "--system: 's' decodes with --retrieval and must be named <student>.knn" in capsys.readouterr().err


def test_tune_retrieval_writes_the_dev_curve(tmp_path, data_dir, student_dir, kb_shards, student):
    out = tmp_path / "tuned.json"
    dev = data_dir / "dev.parquet"
    assert tune_retrieval.main(["--model", str(student_dir), "--kb", *map(str, kb_shards), "--dev", str(dev),
                                "--betas", "0", "0.5", "1", "--beam", "1", "--batch-size", "16", "--max-len-a", "1.2",
                                "--max-len-b", "5", "--out", str(out)]) == 0
    tuned = json.loads(out.read_text())
    curve = tuned["curve"]
    assert [point["beta"] for point in curve] == [0.0, 0.5, 1.0] and all(point["seconds"] > 0 for point in curve)
    assert tuned["best_beta"] == tune_retrieval.best_beta(curve)["beta"]
    assert tuned["best_bleu"] == max(point["bleu"] for point in curve)
    model, tokenizer, _ = student
    table = pd.read_parquet(dev)
    plain = HFTranslator(model, tokenizer).best_translations(list(table.source), batch_size=16, max_len_a=1.2, max_len_b=5)
    assert curve[0]["bleu"] == sacrebleu.metrics.BLEU().corpus_score(plain, reference_streams(table)).score
    assert tuned["bleu_signature"].startswith("nrefs:3|")
    metas = [json.loads((shard / "kb.json").read_text()) for shard in kb_shards]
    assert (tuned["neighbours"], tuned["relational_tau"]) == (NEIGHBOURS, RELATIONAL_TAU)
    assert tuned["kb"] == [str(s) for s in kb_shards] and tuned["kb_tokens"] == sum(m["tokens"] for m in metas)
    assert not list(tmp_path.glob(".tuned.json*"))  # written atomically


def test_best_beta_prefers_the_smaller_on_ties():
    curve = [{"beta": 0.3, "bleu": 5.0}, {"beta": 0.1, "bleu": 5.0}, {"beta": 0.0, "bleu": 4.0}]
    assert tune_retrieval.best_beta(curve)["beta"] == 0.1
    with pytest.raises(InputError, match=r"--betas: 1.5 is not a mixing weight in \[0, 1\]"):
        tune_retrieval.tune("unused", [], "unused", [0.0, 1.5])


def test_evaluate_decodes_with_the_tuned_beta(tmp_path, data_dir, student_dir, kb_shards, student):
    model, tokenizer, retrieval = student
    tuned = tmp_path / "tuned.json"
    tuned.write_text(json.dumps({"best_beta": 0.5, "best_bleu": 1.0, "kb_tokens": retrieval.kb.size}))
    out = tmp_path / "s.knn.json"
    test = data_dir / "test.parquet"
    assert evaluate.main(["--model", str(student_dir), "--test", str(test), "--system", "s.knn", "--beam", "2",
                          "--batch-size", "16", "--speed-sentences", "2", "--retrieval", str(tuned),
                          "--kb", *map(str, kb_shards), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    record = result["retrieval"]
    assert (record["beta"], record["neighbours"], record["relational_tau"]) == (0.5, NEIGHBOURS, RELATIONAL_TAU)
    assert record["kb_tokens"] == retrieval.kb.size and record["kb"] == [str(s) for s in kb_shards]
    memory = retrieval.kb.memory_bytes()
    assert record["kb_memory_bytes"] == memory and record["kb_memory_mb"] == (memory["index"] + memory["values"]) / 2**20
    sources = list(pd.read_parquet(test).source)
    mixed = HFTranslator(model, tokenizer, with_beta(retrieval, 0.5))
    assert result["beam"]["hypotheses"] == mixed.best_translations(sources, beam=2, batch_size=16)
    assert result["batch1"]["sentences"] == 2
    with pytest.raises(InputError, match=rf"--kb: \d+ entries, but {tuned} tuned beta on a knowledge base of {retrieval.kb.size}"):
        evaluate.tuned_retrieval(str(student_dir), str(tuned), [str(kb_shards[0])])


# --- the report's section -------------------------------------------------------------------------


def evaluation(system: str, bleu: float, chrf: float, b1_sentences_per_s: float, retrieval: dict | None = None) -> dict:
    decodings = {d: {"bleu": bleu + offset, "chrf": chrf + offset, "beam": width, "batch_size": 16, "sentences_per_s": 50.0,
                     "target_tokens_per_s": 500.0, "bleu_signature": "nrefs:1|bleu", "chrf_signature": "nrefs:1|chrf",
                     "hypotheses": []}
                 for d, width, offset in (("greedy", 1, -1.0), ("beam", 2, 0.0))}
    return {"system": system, "strategy": "top1", "round": 1, "threads": 1, "model": f"students/{system}",
            "parameters": 100, "nonzero_parameters": 100, "size_mb": 1.0, "test_sentences": 10, "references": 1,
            **decodings, "batch1": {"sentences": 10, "beam": 1, "batch_size": 1, "sentences_per_s": b1_sentences_per_s,
                                    "target_tokens_per_s": 10 * b1_sentences_per_s},
            **({"retrieval": retrieval} if retrieval else {})}


KNN_RECORD = {"tuned": "results/retrieval/rkd.json", "beta": 0.3, "neighbours": 8, "relational_tau": 0.1,
              "kb": ["results/kb/bitext.0", "results/kb/bitext.1"], "kb_tokens": 2_000_000, "kb_memory_mb": 50.0}
TUNED = {"results/retrieval/rkd.json": {"model": "students/rkd", "best_beta": 0.3, "curve": [
    {"beta": 0.0, "bleu": 20.0, "chrf": 50.0, "seconds": 2.0}, {"beta": 0.3, "bleu": 21.5, "chrf": 51.0, "seconds": 2.5},
    {"beta": 0.7, "bleu": 19.0, "chrf": 48.0, "seconds": 2.6}]}}
KB_METAS = {"results/kb/bitext.0": {"build_seconds": 30.0}, "results/kb/./bitext.1": {"build_seconds": 12.5}}
SIGNIFICANCE = [{"round": 1, "baseline": "top1", "systems": {}, "comparisons": [
    {"system": "rkd.knn", "baseline": "rkd", "metrics": {"bleu": {"p_value": 0.012}, "chrf": {"p_value": 0.2}}}]}]


def markdown_rows(block: str) -> list[dict]:
    """A Markdown table's rows as {column: cell text}."""
    cells = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in block.splitlines()]
    return [dict(zip(cells[0], row)) for row in cells[2:]]


def test_retrieval_section_reports_cost_quality_curve_and_significance():
    # 20 sentences/s at batch 1 is 50 ms per sentence; with retrieval 16: 62.5 ms
    evaluations = [evaluation("rkd", 20.0, 50.0, 20.0), evaluation("rkd.knn", 21.0, 51.5, 16.0, KNN_RECORD)]
    text = "\n".join(retrieval_section(evaluations, TUNED, KB_METAS, SIGNIFICANCE))
    assert text.startswith("## Retrieval-augmented KD")
    cost, quality, curve = (markdown_rows(block) for block in text.split("\n\n") if block.startswith("| system"))
    assert len(cost) == len(quality) == 1 and cost[0]["system"] == quality[0]["system"] == "rkd.knn"
    assert (cost[0]["KB tokens"], cost[0]["KB MB"], cost[0]["MB per M tokens"]) == ("2000000", "50.00", "25.00")
    assert cost[0]["KB build s"] == "42.50"  # both shards' kb.json, paths normalised
    assert (cost[0]["ms/sent b1 (beta 0)"], cost[0]["ms/sent b1 (beta)"]) == ("50.00", "62.50")
    assert (cost[0]["overhead ms"], cost[0]["overhead %"], cost[0]["beta"]) == ("12.50", "25.00", "0.30")
    assert (quality[0]["BLEU beam (beta 0)"], quality[0]["BLEU beam (beta)"]) == ("20.00", "21.00")
    assert (quality[0]["chrF greedy (beta 0)"], quality[0]["chrF greedy (beta)"]) == ("49.00", "50.50")
    assert (quality[0]["p (BLEU)"], quality[0]["p (chrF)"]) == ("0.0120*", "0.2000")
    assert [(row["beta"], row["dev BLEU"], row["tuned"]) for row in curve] == [
        ("0.00", "20.00", ""), ("0.30", "21.50", "*"), ("0.70", "19.00", "")]
    # no significance file and no kb.json: the section still stands, with its gaps said
    bare = "\n".join(retrieval_section(evaluations))
    cost, quality = (markdown_rows(block) for block in bare.split("\n\n") if block.startswith("| system"))
    assert cost[0]["KB build s"] == "nan" and quality[0]["p (BLEU)"] == "-" and "Dev curve" not in bare
    assert retrieval_section([evaluation("rkd", 20.0, 50.0, 20.0)]) == []


def test_report_takes_the_retrieval_and_kb_files(tmp_path):
    paths = []
    for ev in (evaluation("teacher", 25.0, 55.0, 5.0), evaluation("rkd", 20.0, 50.0, 20.0),
               evaluation("rkd.knn", 21.0, 51.5, 16.0, {**KNN_RECORD, "tuned": str(tmp_path / "rkd.tuned.json"),
                                                         "kb": [str(tmp_path / "kb.0")]})):
        paths.append(tmp_path / f"{ev['system']}.json")
        paths[-1].write_text(json.dumps(ev))
    (tmp_path / "rkd.tuned.json").write_text(json.dumps(TUNED["results/retrieval/rkd.json"]))
    (tmp_path / "kb.0").mkdir()
    (tmp_path / "kb.0" / "kb.json").write_text(json.dumps({"build_seconds": 7.25}))
    md = tmp_path / "report.md"
    assert report.main(["--evaluations", *map(str, paths), "--retrieval", str(tmp_path / "rkd.tuned.json"),
                        "--kb", str(tmp_path / "kb.0"), "--csv", str(tmp_path / "report.csv"),
                        "--markdown", str(md)]) == 0
    section = md.read_text().split("## Retrieval-augmented KD")[1]
    cost, _, curve = (markdown_rows(block) for block in section.split("\n\n") if block.startswith("| system"))
    assert cost[0]["KB build s"] == "7.25" and [row["dev BLEU"] for row in curve] == ["20.00", "21.50", "19.00"]
