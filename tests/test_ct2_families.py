"""CTranslate2 backend on teachers of every family (NLLB, M2M100, mBART-50, T5/MADLAD, a ChatML Llama):
conversion, and agreement with the `transformers` backend on the same model.

A random model's next-token distribution is nearly uniform, so every beam would be a near-tie and no
output would end: each tiny teacher's output layer is scaled up (its end token's row scaled again),
which gives peaked distributions and outputs that end at varied lengths. Every check holds for any model.
"""

from __future__ import annotations

import json

import ctranslate2 as ctranslate2_lib
import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from mtdistill import backends, ct2, decode, families
from mtdistill.backends import Sampling, ctranslate2
from mtdistill.core.io import InputError, read_table
from test_ct2 import FORCED_TOLERANCE, assert_same_best, assert_same_nbest
from tiny_families import build_llama, build_m2m100, build_mbart50, build_nllb, build_t5

Profile = families.Profile
# family: builder, profile, sharpen()'s scale and end (most outputs end, at varied lengths)
TEACHERS = {
    "nllb": (build_nllb, Profile("nllb", "deu_Latn", "eng_Latn"), 4.0, 1.5),
    "m2m100": (build_m2m100, Profile("m2m100", "de", "en"), 4.0, -2.5),
    "mbart50": (build_mbart50, Profile("mbart50", "de_DE", "en_XX"), 4.0, -5.0),
    "t5": (build_t5, Profile("t5", source_prefix="<2en> "), 1.0, 2.5),
    "causal": (build_llama, Profile("causal", "German", "English", prompt="Translate {src_lang} to {tgt_lang}: {source}",
                                    chat_template=True), 6.0, 1.5),
}
SEARCH = {"beam": 4, "nbest": 4, "batch_size": 16, "max_len_a": 1.2, "max_len_b": 5}
CAPPED = {**SEARCH, "max_len_a": 0.0, "max_len_b": 4}  # most outputs cut at the limit


pytestmark = pytest.mark.usefixtures("one_thread")  # CTranslate2 and torch share the cores


@pytest.fixture(scope="module")
def texts(data_dir) -> list[str]:
    train = read_table(data_dir / "train.parquet")
    return list(train.source) + list(train.target)


@pytest.fixture(scope="module")
def sentences(data_dir) -> pd.DataFrame:
    return read_table(data_dir / "tune.parquet").head(32)


def sharpen(model_dir, profile: Profile, scale: float, end: float) -> None:
    """The output layer times `scale`, the end token's row times `end` as well (a random row: its sign may
    be what it takes)."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    codec = families.codec(tokenizer, profile)
    model = (AutoModelForCausalLM if codec.causal else AutoModelForSeq2SeqLM).from_pretrained(model_dir)
    end_id = codec.target_ids(["x"], 8)[0][-1]  # EOS; the chat template's <|im_end|> for the Llama
    with torch.no_grad():
        weight = model.get_output_embeddings().weight
        weight.mul_(scale)
        weight[end_id].mul_(end)
    model.save_pretrained(model_dir)


@pytest.fixture(scope="module", params=list(TEACHERS))
def teacher(request, tmp_path_factory, texts):
    """(family, Hugging Face directory with its profile, its CTranslate2 conversion)."""
    family = request.param
    build, profile, scale, end = TEACHERS[family]
    root = tmp_path_factory.mktemp(f"ct2-{family}")
    hf_dir = build(root / "hf", texts[:600])
    profile.save(hf_dir)
    sharpen(hf_dir, profile, scale, end)
    assert ct2.main(["--model", str(hf_dir), "--out", str(root / "ct2")]) == 0
    return family, hf_dir, root / "ct2"


@pytest.fixture(scope="module")
def loaded(teacher):
    family, hf_dir, ct2_dir = teacher
    return family, backends.load(hf_dir), backends.load(ct2_dir, "ctranslate2")


def test_conversion_keeps_the_profile(teacher):
    family, hf_dir, ct2_dir = teacher
    assert Profile.load(ct2_dir) == Profile.load(hf_dir) == TEACHERS[family][1]
    manifest = json.loads((ct2_dir / ctranslate2.MANIFEST).read_text())
    assert (manifest["generator"], manifest["family"], manifest["source"]) == (family == "causal", family, str(hf_dir))
    translator = ctranslate2.load(ct2_dir)
    assert isinstance(translator.translator, ctranslate2_lib.Generator if family == "causal" else ctranslate2_lib.Translator)
    hf_tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    assert translator.tokenizer("Und Gott sprach.")["input_ids"] == hf_tokenizer("Und Gott sprach.")["input_ids"]
    if family == "causal":
        assert translator.codec.stop_ids == families.codec(hf_tokenizer, Profile.load(hf_dir)).stop_ids
    # the vocabulary is the HF tokenizer's, id for id
    vocabulary = json.loads(next(ct2_dir.glob("*vocabulary.json")).read_text())
    size = len(hf_tokenizer)
    assert vocabulary[:size] == hf_tokenizer.convert_ids_to_tokens(list(range(size)))


def ended(translator, outputs) -> list[bool]:
    stops = set(translator.codec.stop_ids)
    return [ids[-1] in stops for ids in outputs]


@pytest.mark.parametrize("search", ["ended", "capped"])
def test_nbest_lists_agree_with_transformers(search, loaded, sentences):
    """Same n-best lists and length-normalised scores, neither the forced language token nor the prompt
    counted: outputs that end (their end token counted) and outputs cut at the length limit."""
    family, model, translator = loaded
    options = SEARCH if search == "ended" else CAPPED
    sources = list(sentences.source)
    hf = model.translate(sources, **options)
    fast = translator.translate(sources, **options)
    assert_same_nbest(hf, fast, nbest=4)
    for nbest in fast:
        scores = [s for _, s in nbest]
        assert scores == sorted(scores, reverse=True) and all(-20 < s <= 0 for s in scores)
    # the search regime the test means: most outputs end, or most are cut
    share = np.mean(ended(translator, raw_search(translator, sources, options)[0]))
    if search == "ended":
        assert share >= 0.5, share
    else:
        assert share <= 0.5, share
    greedy = {k: v for k, v in options.items() if k not in ("beam", "nbest")}
    greedy_hf = model.best_translations(sources, beam=1, **greedy)
    greedy_fast = translator.best_translations(sources, beam=1, **greedy)
    assert np.mean([a == b for a, b in zip(greedy_hf, greedy_fast)]) >= 0.9


def raw_search(translator, sources: list[str], options: dict, sampling: Sampling | None = None):
    """(outputs as ids, their scores) of the translator's own search of `sources` as one batch, every
    source's n-best in turn: the tokens after the forced prefix or the prompt, the end token kept."""
    source = translator.source_tokens(sources, 256)
    limit = translator.output_limit(sources, source, 256, options["max_len_a"], options["max_len_b"])
    if sampling is not None:
        translator.reseed(sampling.seed)
        source = [seq for seq in source for _ in range(options["nbest"])]
    outputs, scores = translator.search(source, limit, options.get("beam", 1), options["nbest"], sampling)
    return [translator.output_ids(o) for o in outputs], scores


def test_forced_scores_agree_with_transformers(loaded, sentences):
    """Forced (sum log-prob incl. the end token, count) of the teacher's n-best lists and the references:
    the same on both backends, counting only the target's tokens."""
    family, model, translator = loaded
    sources = list(sentences.source)
    outputs = [[h for h, _ in nbest] + [ref] for nbest, ref in zip(model.translate(sources, **SEARCH), sentences.target)]
    hf = model.forced_logprobs(sources, outputs, batch_size=8)
    fast = translator.forced_logprobs(sources, outputs, batch_size=8)
    targets = translator.codec.target_ids([o for os in outputs for o in os], 256)
    assert [count for _, count in fast] == [count for _, count in hf] == list(map(len, targets))
    np.testing.assert_allclose([s for s, _ in fast], [s for s, _ in hf], atol=FORCED_TOLERANCE, rtol=0)
    assert all(s < 0 for s, _ in fast) and np.std([s for s, _ in fast]) > 1  # real, varied log-probs


@pytest.mark.parametrize("search", ["ended", "capped"])
def test_forced_score_is_beam_score_times_length(search, loaded, sentences):
    """CTranslate2's beam score of an output is its forced log-prob over its token count (its end token
    counted when it ended); through `forced_logprobs` for the outputs that ended and whose text tokenises
    back into their own tokens. The search bans <pad> before its softmax, the scorer keeps it there:
    their scores part by log(1 - p(<pad>)) per token, none for a trained model."""
    family, _, translator = loaded
    sources = list(sentences.source)
    outputs, beams = raw_search(translator, sources, SEARCH if search == "ended" else CAPPED)
    rows = [seq for seq in translator.source_tokens(sources, 256) for _ in range(4)]
    scored = translator.scored_tokens(rows, [translator.tokens(ids) for ids in outputs])
    tolerance = FORCED_TOLERANCE if translator.suppressed else 1e-5
    np.testing.assert_allclose(beams, [total / count for total, count in scored], atol=tolerance, rtol=0)
    codec = translator.codec
    texts = [codec.text(ids) for ids in outputs]
    forced = translator.forced_logprobs([s for s in sources for _ in range(4)], [[t] for t in texts])
    same = [codec.target_ids([text], 256)[0] == ids for text, ids in zip(texts, outputs)]
    assert [f for f, s in zip(forced, same) if s] == [f for f, s in zip(scored, same) if s]


def test_sampling_draws_score_their_untempered_log_prob(loaded, sentences):
    """Seeded draws: the same seed draws the same lists, a draw's score is its forced log-prob (as the hf
    backend scores its draws), and a low temperature draws likelier outputs than a high one."""
    family, model, translator = loaded
    sources = list(sentences.source[:12])
    options = {"nbest": 4, "max_len_a": 1.2, "max_len_b": 5}
    cold = translator.translate(sources, sampling=Sampling(0.5, 1.0, seed=3), **options)
    assert translator.translate(sources, sampling=Sampling(0.5, 1.0, seed=3), **options) == cold
    hot = translator.translate(sources, sampling=Sampling(1.5, 0.95, seed=3), **options)
    assert hot != cold and all(len(draws) == 4 for draws in hot)
    assert np.mean([s for d in cold for _, s in d]) > np.mean([s for d in hot for _, s in d])
    assert len({h for d in hot for h, _ in d}) > len(sources)  # draws, not one search's output
    # a draw's score is its untempered log-prob as the hf backend computes it, whether it ended or not
    codec = translator.codec
    for source in sources[:6]:  # one source a batch: translate's rows are the source's draws in turn
        ids, _ = raw_search(translator, [source], options, Sampling(1.0, 0.9, seed=5))
        drawn = translator.translate([source], sampling=Sampling(1.0, 0.9, seed=5), **options)[0]
        assert [h for h, _ in drawn] == [codec.text(i) for i in ids]
        hf = model.scored_ids(model.codec.source_ids([source], 256) * len(ids), ids)
        np.testing.assert_allclose([s for _, s in drawn], [total / count for total, count in hf],
                                   atol=FORCED_TOLERANCE, rtol=0)


def test_marian_teacher_samples_on_ctranslate2_too(teacher_dir, data_dir, tmp_path):
    """The workflow's own (Marian) teacher: seeded draws, each scored by its untempered log-prob as the hf
    backend scores it."""
    translator = backends.load(ctranslate2.convert(teacher_dir, tmp_path / "ct2"), "ctranslate2")
    model = backends.load(teacher_dir)
    sources = list(read_table(data_dir / "tune.parquet").source[:8])
    options = {"nbest": 4, "max_len_a": 1.2, "max_len_b": 5}
    draws = translator.translate(sources, sampling=Sampling(0.8, 0.95, seed=2), **options)
    assert translator.translate(sources, sampling=Sampling(0.8, 0.95, seed=2), **options) == draws
    assert len({h for d in draws for h, _ in d}) > len(sources)
    for source in sources[:4]:
        ids, _ = raw_search(translator, [source], options, Sampling(1.0, 1.0, seed=4))
        drawn = translator.translate([source], sampling=Sampling(1.0, 1.0, seed=4), **options)[0]
        assert [h for h, _ in drawn] == [ctranslate2.text_of(translator.tokenizer, translator.without_end(
            translator.tokens(i)), False) for i in ids]
        hf = model.scored_ids(model.codec.source_ids([source], 256) * len(ids), ids)
        np.testing.assert_allclose([s for _, s in drawn], [total / count for total, count in hf],
                                   atol=FORCED_TOLERANCE, rtol=0)


def test_decode_step_with_either_backend(teacher, data_dir, tmp_path):
    _, hf_dir, ct2_dir = teacher
    common = ["--input", str(data_dir / "tune.parquet"), "--beam", "4", "--nbest", "4", "--max-len-a", "1.2",
              "--max-len-b", "5"]
    assert decode.main(["--model", str(hf_dir), *common, "--out", str(tmp_path / "hf.parquet")]) == 0
    assert decode.main(["--model", str(ct2_dir), "--backend", "ctranslate2", *common,
                        "--out", str(tmp_path / "ct2.parquet")]) == 0
    hf, fast = pd.read_parquet(tmp_path / "hf.parquet"), pd.read_parquet(tmp_path / "ct2.parquet")
    assert list(fast.columns) == list(hf.columns) and len(fast) == len(hf)
    top = hf[hf.hyp_id == 0].merge(fast[fast.hyp_id == 0], on="sent_id")
    assert_same_best(list(zip(top.hypothesis_x, top.score_x)), list(zip(top.hypothesis_y, top.score_y)))


def test_a_family_profile_must_fit_the_converted_model(teacher):
    family, _, ct2_dir = teacher
    wrong = Profile("marian") if family == "causal" else TEACHERS["causal"][1]
    kind = "a decoder-only LM" if family == "causal" else "a seq2seq model"
    with pytest.raises(InputError, match=rf"teacher 'x': {ct2_dir}: {kind}, which a {wrong.family} teacher is not"):
        backends.load(ct2_dir, "ctranslate2", "teacher 'x'", profile=wrong)


def test_an_architecture_ctranslate2_lacks_runs_on_hf_only(texts, tmp_path):
    from transformers import OlmoConfig, OlmoForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(build_llama(tmp_path / "llama", texts[:300]))
    config = OlmoConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                        num_attention_heads=2, pad_token_id=tokenizer.pad_token_id,
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    OlmoForCausalLM(config).save_pretrained(tmp_path / "olmo")
    tokenizer.save_pretrained(tmp_path / "olmo")
    TEACHERS["causal"][1].save(tmp_path / "olmo")
    with pytest.raises(InputError, match=r"olmo: CTranslate2 cannot convert a olmo model .*No conversion is "
                                         r"registered.*: this causal teacher runs on the hf backend only"):
        ctranslate2.convert(tmp_path / "olmo", tmp_path / "out")
    assert not (tmp_path / "out").exists()
