"""CTranslate2 backend: conversion, and agreement with the `transformers` backend on the same model."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from mtdistill import backends, ct2, decode, models
from mtdistill.backends import ctranslate2
from mtdistill.backends.hf import HFTranslator
from mtdistill.core import tokens
from mtdistill.scorers import score
from mtdistill.core.io import InputError, read_table

# HF's beam search keeps <pad> in its softmax, CTranslate2 has none: beam scores differ by
# log(1 + p(<pad>)) per token, about 1e-3 on the tiny teacher (P9 of the recipe). Forced decoding
# masks <pad> on both sides and agrees to float32 rounding.
BEAM_SCORE_TOLERANCE = 5e-3
NEAR_TIE = 0.05  # per-token log-prob: two hypotheses this close are a tie a search may break either way
FORCED_TOLERANCE = 1e-3


pytestmark = pytest.mark.usefixtures("one_thread")  # CTranslate2 and torch share the cores


@pytest.fixture(scope="module")
def ct2_teacher(work, teacher_dir):
    out = work / "ct2" / "teacher"
    assert ct2.main(["--model", str(teacher_dir), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def held_out(data_dir) -> pd.DataFrame:
    return pd.concat([read_table(data_dir / "tune.parquet"), read_table(data_dir / "dev.parquet")], ignore_index=True)


def test_conversion_is_self_contained_and_atomic(ct2_teacher, teacher_dir):
    names = {p.name for p in ct2_teacher.iterdir()}
    assert {"model.bin", "config.json", "shared_vocabulary.json", "source.spm", "target.spm", "vocab.json",
            "tokenizer_config.json", ctranslate2.MANIFEST} <= names
    assert not [p for p in ct2_teacher.parent.iterdir() if p.name.startswith(".")]  # no temp dir left behind
    tokenizer = ctranslate2.load(ct2_teacher).tokenizer
    _, hf_tokenizer = models.load(teacher_dir)
    # CTranslate2 drops the trailing <pad> from the vocabulary, and only that
    vocabulary = json.loads((ct2_teacher / "shared_vocabulary.json").read_text())
    assert vocabulary == hf_tokenizer.convert_ids_to_tokens(list(range(len(hf_tokenizer) - 1)))
    assert tokenizer("Und Gott sprach.")["input_ids"] == hf_tokenizer("Und Gott sprach.")["input_ids"]
    assert json.loads((ct2_teacher / ctranslate2.MANIFEST).read_text())["source"] == str(teacher_dir)


def assert_same_best(hf_tops: list[tuple[str, float]], fast_tops: list[tuple[str, float]]) -> None:
    """The backends' best hypotheses agree, but for a few of a weak model's near-ties (the two winners
    score within NEAR_TIE per token) and length-capped runs of one word, where the searches part."""
    gaps = [abs(a[1] - b[1]) for a, b in zip(hf_tops, fast_tops) if a[0] != b[0]]
    assert len(gaps) <= 0.2 * len(hf_tops) and np.median(gaps or [0]) < NEAR_TIE, np.round(gaps, 4)


def assert_same_nbest(hf: list, fast: list, nbest: int) -> None:
    """The backends' n-best lists of the same sources: the same best hypotheses (but near-ties), three in
    four hypotheses in common, their scores within BEAM_SCORE_TOLERANCE."""
    assert len(fast) == len(hf) and all(len(n) == nbest for n in fast)
    assert_same_best([a[0] for a in hf], [b[0] for b in fast])
    overlap = np.mean([len({h for h, _ in a} & {h for h, _ in b}) / nbest for a, b in zip(hf, fast)])
    assert overlap >= 0.75, overlap
    diffs = [abs(x[1] - y[1]) for a, b in zip(hf, fast) for x, y in zip(a, b) if x[0] == y[0]]
    assert len(diffs) >= 0.75 * nbest * len(hf) and max(diffs) < BEAM_SCORE_TOLERANCE, max(diffs)


def test_nbest_lists_agree_with_transformers(ct2_teacher, teacher_dir, held_out):
    model = backends.load(teacher_dir)
    translator = backends.load(ct2_teacher, "ctranslate2")
    options = {"beam": 4, "nbest": 4, "batch_size": 16, "max_len_a": 1.2, "max_len_b": 5}
    sources = list(held_out.source)
    hf = model.translate(sources, **options)
    fast = translator.translate(sources, **options)
    assert_same_nbest(hf, fast, nbest=4)
    for nbest in fast:  # best first, scores are length-normalised log-probs
        scores = [s for _, s in nbest]
        assert scores == sorted(scores, reverse=True) and all(-20 < s < 0 for s in scores)
    greedy_hf = model.best_translations(sources, beam=1)
    greedy_fast = translator.best_translations(sources, beam=1)
    assert np.mean([a == b for a, b in zip(greedy_hf, greedy_fast)]) >= 0.95


def test_decode_step_with_either_backend(ct2_teacher, teacher_dir, data_dir, tmp_path):
    common = ["--input", str(data_dir / "tune.parquet"), "--beam", "4", "--nbest", "4", "--max-len-a", "1.2", "--max-len-b", "5"]
    assert decode.main(["--model", str(teacher_dir), *common, "--out", str(tmp_path / "hf.parquet")]) == 0
    assert decode.main(["--model", str(ct2_teacher), "--backend", "ctranslate2", *common, "--out", str(tmp_path / "ct2.parquet")]) == 0
    hf, fast = pd.read_parquet(tmp_path / "hf.parquet"), pd.read_parquet(tmp_path / "ct2.parquet")
    assert list(fast.columns) == list(hf.columns) and len(fast) == len(hf)
    top = hf[hf.hyp_id == 0].merge(fast[fast.hyp_id == 0], on="sent_id")
    assert_same_best(list(zip(top.hypothesis_x, top.score_x)), list(zip(top.hypothesis_y, top.score_y)))
    # an HF directory is not a converted one: the error names it
    assert decode.main(["--model", str(teacher_dir), "--backend", "ctranslate2", *common, "--out", str(tmp_path / "x.parquet")]) == 2
    assert not (tmp_path / "x.parquet").exists()


@pytest.fixture(scope="module")
def hypotheses(data_dir, teacher_dir) -> tuple[pd.DataFrame, pd.DataFrame]:
    """An n-best table of the teacher's own 4-best lists plus each reference (a hypothesis it did not find)."""
    sentences = read_table(data_dir / "tune.parquet")
    nbest = backends.load(teacher_dir).translate(list(sentences.source), beam=4, nbest=4)
    rows = [(sent_id, k, text) for sent_id, lst, ref in zip(sentences.sent_id, nbest, sentences.target)
            for k, text in enumerate([h for h, _ in lst] + [ref])]
    return pd.DataFrame(rows, columns=["sent_id", "hyp_id", "hypothesis"]), sentences


@pytest.mark.parametrize("kind", ["forced_decoding", "backward", "r2l"])
def test_forced_decoding_scores_agree(kind, work, teacher_dir, backward_dir, r2l_dir, hypotheses):
    model_dir = {"forced_decoding": teacher_dir, "backward": backward_dir, "r2l": r2l_dir}[kind]
    converted = work / "ct2" / model_dir.name
    if not converted.exists():
        ctranslate2.convert(model_dir, converted)
    nbest, sentences = hypotheses
    hf = score(kind, nbest, sentences, "s", model=str(model_dir), batch_size=8)
    fast = score(kind, nbest, sentences, "s", model=str(converted), batch_size=8, backend="ctranslate2")
    assert list(fast.columns) == list(hf.columns)
    assert (fast[["sent_id", "hyp_id"]].values == hf[["sent_id", "hyp_id"]].values).all()
    np.testing.assert_allclose(fast.s_logprob, hf.s_logprob, atol=FORCED_TOLERANCE, rtol=0)
    np.testing.assert_allclose(fast.s_logprob_per_token, hf.s_logprob_per_token, atol=FORCED_TOLERANCE, rtol=0)
    if kind != "backward":
        assert (fast.s_tokens == hf.s_tokens).all()
    assert (hf.s_logprob < 0).all() and hf.s_logprob.std() > 1  # real, varied log-probs


def test_forced_score_is_beam_score_times_length(ct2_teacher, teacher_dir, data_dir):
    """CTranslate2's beam score of a finished hypothesis is its score_batch log-prob over its token count."""
    translator, limit = ctranslate2.load(ct2_teacher), 128
    tokenizer = translator.tokenizer
    sentences = list(read_table(data_dir / "tune.parquet").source)
    beams = translator.translator.translate_batch(ctranslate2.token_pieces(tokenizer, sentences, 256), beam_size=4,
                                                  num_hypotheses=4, max_decoding_length=limit, return_scores=True)
    generated = [hyp for result in beams for hyp in result.hypotheses]
    texts = [ctranslate2.text_of(tokenizer, hyp, False) for hyp in generated]
    scored = translator.forced_logprobs(sentences, [texts[4 * i : 4 * i + 4] for i in range(len(sentences))])
    beam = [score for result in beams for score in result.scores]
    # a finished text (not cut at the limit, so scored with its `</s>`) that detokenisation and tokenisation turn
    # back into its own tokens gets its beam score back; a weak model's runs of one letter or of '▁' may
    # come back split otherwise
    same = [pieces[:-1] == hyp and len(hyp) < limit
            for pieces, hyp in zip(ctranslate2.token_pieces(tokenizer, texts, 256, True), generated)]
    close = [abs(b - logprob / count) < 1e-4 for b, (logprob, count) in zip(beam, scored)]
    assert np.mean(same) >= 0.5 and all(c for c, s in zip(close, same) if s), (np.mean(same), np.mean(close))


def test_r2l_round_trip(work, r2l_dir, data_dir):
    converted = work / "ct2" / r2l_dir.name
    if not converted.exists():
        ctranslate2.convert(r2l_dir, converted)
    translator = ctranslate2.load(converted)
    tokenizer = translator.tokenizer
    # reversed tokens come back in reading order
    targets = list(read_table(data_dir / "tune.parquet").target)
    for text, ids in zip(targets, tokens.target_ids(tokenizer, targets, 256, reverse=True)):
        assert ctranslate2.text_of(tokenizer, tokenizer.convert_ids_to_tokens(ids[:-1]), r2l=True) == tokenizer.decode(
            tokens.target_ids(tokenizer, [text], 256)[0], skip_special_tokens=True)
    model, _ = models.load(r2l_dir)
    sources = list(read_table(data_dir / "tune.parquet").source)
    hf = HFTranslator(model, tokenizer).translate(sources, beam=4, nbest=2, max_len_a=1.2, max_len_b=5, r2l=True)
    fast = translator.translate(sources, beam=4, nbest=2, max_len_a=1.2, max_len_b=5, r2l=True)
    assert np.mean([a[0][0] == b[0][0] for a, b in zip(hf, fast)]) >= 0.95
    # read left to right, the R2L output is not its own token reversal
    forward = translator.translate(sources, beam=4, nbest=1, max_len_a=1.2, max_len_b=5)
    assert sum(a[0][0] != b[0][0] for a, b in zip(forward, fast)) > len(sources) // 2


def test_missing_or_wrong_model_is_named(tmp_path, teacher_dir, capsys):
    missing = tmp_path / "no-such-model"
    assert ct2.main(["--model", str(missing), "--out", str(tmp_path / "out")]) == 2
    assert f"{missing}: not a Hugging Face model directory" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    with pytest.raises(InputError, match=rf"scorer 'x': {missing}: directory not found"):
        backends.load(missing, "ctranslate2", "scorer 'x'")
    with pytest.raises(InputError, match="not a CTranslate2 model"):
        ctranslate2.load(teacher_dir)
    with pytest.raises(InputError, match="unknown backend 'onnx'"):
        backends.load(teacher_dir, "onnx")


def test_nonzero_start_embedding_is_refused(teacher_dir, tmp_path):
    """A Marian model whose <pad> (decoder start) row moved would translate differently in CTranslate2."""
    model, tokenizer = models.load(teacher_dir)
    with torch.no_grad():
        model.get_input_embeddings().weight[tokenizer.pad_token_id] += 0.1
    models.save(model, tokenizer, tmp_path / "moved")
    with pytest.raises(InputError, match=r"moved: the decoder start token's embedding \(id \d+\) is not zero"):
        ctranslate2.convert(tmp_path / "moved", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_evaluation_with_either_backend(ct2_teacher, teacher_dir, data_dir, tmp_path):
    from mtdistill import evaluate

    runs = {}
    for backend in ("hf", "ctranslate2"):
        out = tmp_path / f"{backend}.json"
        argv = ["--model", str(teacher_dir), "--test", str(data_dir / "test.parquet"), "--system", "teacher",
                "--beam", "4", "--batch-size", "16", "--speed-sentences", "5", "--backend", backend, "--out", str(out)]
        if backend == "ctranslate2":
            argv += ["--translator", str(ct2_teacher)]
        assert evaluate.main(argv) == 0
        runs[backend] = json.loads(out.read_text())
    hf, fast = runs["hf"], runs["ctranslate2"]
    assert fast["backend"] == "ctranslate2" and fast["parameters"] == hf["parameters"]
    # greedy decoding has no beam ties to break differently: the same output
    assert np.mean([a == b for a, b in zip(hf["greedy"]["hypotheses"], fast["greedy"]["hypotheses"])]) >= 0.95
    assert abs(hf["beam"]["bleu"] - fast["beam"]["bleu"]) < 1.0
    assert fast["batch1"]["sentences_per_s"] > 0
