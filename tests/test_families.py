"""Teachers of every family (mtdistill.families) on tiny random-weight models built here: the import saves
the family's profile, generation and forced decoding agree on every output's score without counting a
forced language token or the prompt, and a key the family needs but lacks is named."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from mtdistill import backends, families, import_teacher, score
from mtdistill.backends import Sampling
from tiny_families import build_llama, build_m2m100, build_mbart50, build_nllb, build_t5, teach

CHAT_PROMPT = "Translate this {src_lang} text into {tgt_lang}.\n{source}"
# family -> builder, the import's options (as import_teacher takes them from the config)
TEACHERS = {
    "nllb": (build_nllb, ["--src-lang", "deu_Latn", "--tgt-lang", "eng_Latn"]),
    "m2m100": (build_m2m100, ["--src-lang", "de", "--tgt-lang", "en"]),
    "mbart50": (build_mbart50, ["--src-lang", "de_DE", "--tgt-lang", "en_XX"]),
    "t5": (build_t5, ["--source-prefix", "<2en> "]),
    "causal": (build_llama, ["--prompt", CHAT_PROMPT, "--chat-template", "--src-lang", "German", "--tgt-lang", "English"]),
}
PROFILES = {
    "nllb": families.Profile("nllb", "deu_Latn", "eng_Latn"), "m2m100": families.Profile("m2m100", "de", "en"),
    "mbart50": families.Profile("mbart50", "de_DE", "en_XX"), "t5": families.Profile("t5", source_prefix="<2en> "),
    "causal": families.Profile("causal", "German", "English", prompt=CHAT_PROMPT, chat_template=True),
}
SEARCH = dict(beam=4, nbest=4, batch_size=4, max_len_a=1.2, max_len_b=5)


@pytest.fixture(scope="module")
def texts(data_dir) -> list[str]:
    train = pd.read_parquet(data_dir / "train.parquet", columns=["source", "target"])
    return list(train.source) + list(train.target)


@pytest.fixture(scope="module")
def sources(data_dir) -> list[str]:
    return list(pd.read_parquet(data_dir / "tune.parquet").source[:12])


@pytest.fixture(scope="module")
def built(tmp_path_factory, texts, data_dir) -> dict:
    """Each family's tiny model, taught a few steps of the bitext so that its outputs end."""
    root = tmp_path_factory.mktemp("families")
    train = pd.read_parquet(data_dir / "train.parquet")
    return {family: teach(build(root / family, texts), PROFILES[family], list(train.source), list(train.target))
            for family, (build, _) in TEACHERS.items()}


@pytest.fixture(scope="module")
def imported(tmp_path_factory, built) -> dict:
    """Each tiny model imported as the workflow's teacher, its family detected (--family auto)."""
    root = tmp_path_factory.mktemp("imported")
    for family, (_, options) in TEACHERS.items():
        assert import_teacher.main(["--pretrained", str(built[family]), *options, "--out", str(root / family)]) == 0
    return {family: root / family for family in TEACHERS}


@pytest.mark.parametrize("family", TEACHERS)
def test_import_detects_the_family_and_saves_its_profile(family, built, imported):
    assert families.detect(built[family]) == family
    profile = families.Profile.load(imported[family])
    assert profile.family == family and profile.given() and families.Profile.load(built[family]) == families.Profile()


@pytest.mark.parametrize("family", TEACHERS)
def test_forced_scores_equal_generation_scores(family, imported, sources):
    """Every beam output's score is its forced-decoding score: the output's own tokens and the end token,
    no language token, no prompt; on text too, for outputs whose text tokenizes back to them."""
    translator = backends.load(imported[family])
    codec = translator.codec
    generated = translator.generate(sources, **SEARCH)
    pairs = [(source, ids, beam) for source, outputs in zip(sources, generated) for ids, beam in outputs]
    forced = translator.scored([s for s, _, _ in pairs], [ids for _, ids, _ in pairs])
    for (_, ids, beam), (total, count) in zip(pairs, forced):
        assert count == len(ids) and total / count == pytest.approx(beam, abs=2e-4)
    assert any(ids[-1] in codec.stop_ids for _, ids, _ in pairs)  # some outputs end, not only run out
    texts = [[codec.text(ids) for ids, _ in outputs] for outputs in generated]
    by_text = translator.forced_logprobs(sources, texts)
    round_trips = [(ids, beam, scored) for (_, ids, beam), scored, text in zip(pairs, by_text, sum(texts, []))
                   if ids[-1] in codec.stop_ids and codec.target_ids([text], 256)[0] == ids]
    assert round_trips, "no output tokenizes back to itself"
    for ids, beam, (total, count) in round_trips:
        assert count == len(ids) and total / count == pytest.approx(beam, abs=2e-4)
    if codec.target_prefix:  # the forced language token is not in what is scored
        assert all(codec.target_prefix[0] not in ids for _, ids, _ in pairs)


@pytest.mark.parametrize("family", ["nllb", "causal"])
def test_sampled_lists_are_seeded_and_scored_by_their_own_log_prob(family, imported, sources):
    translator = backends.load(imported[family])
    draws = dict(beam=1, nbest=3, batch_size=4, max_len_a=1.2, max_len_b=5)
    first = translator.generate(sources[:4], sampling=Sampling(temperature=1.5, seed=3), **draws)
    assert first == translator.generate(sources[:4], sampling=Sampling(temperature=1.5, seed=3), **draws)
    assert first != translator.generate(sources[:4], sampling=Sampling(temperature=1.5, seed=4), **draws)
    for source, outputs in zip(sources, first):
        forced = translator.scored([source] * len(outputs), [ids for ids, _ in outputs])
        assert [total / count for total, count in forced] == pytest.approx([s for _, s in outputs], abs=1e-5)


def test_causal_prompt_is_the_chat_template_and_output_stops_at_the_turn_end(imported, sources):
    translator = backends.load(imported["causal"])
    codec, tokenizer = translator.codec, translator.tokenizer
    prompt = tokenizer.decode(codec.source_ids(sources[:1], 256)[0])
    assert prompt.startswith("<|im_start|>user\nTranslate this German text into English.\n" + sources[0])
    assert prompt.endswith("<|im_end|>\n<|im_start|>assistant\n")
    assert codec.stop_ids == tokenizer.convert_tokens_to_ids(["<|im_end|>", "</s>"])
    assert codec.target_ids(["a"], 256)[0][-1] == codec.stop_ids[0]


def test_missing_or_unused_keys_are_named(built, tmp_path, capsys):
    def refused(family, *options):
        out = tmp_path / f"{family}.{len(options)}"
        assert import_teacher.main(["--pretrained", str(built[family]), *options, "--out", str(out)]) == 2
        assert not out.exists()
        return capsys.readouterr().err

    assert "config key teacher.tgt_lang: a nllb model needs it" in refused("nllb", "--src-lang", "deu_Latn")
    assert "config key teacher.tgt_lang: 'xyz_Latn' is not a language code" in refused(
        "nllb", "--src-lang", "deu_Latn", "--tgt-lang", "xyz_Latn")
    assert "config key teacher.src_lang: a t5 model does not use it" in refused(
        "t5", "--source-prefix", "<2en> ", "--src-lang", "de")
    assert "config key teacher.prompt: a causal model needs it" in refused("causal")
    assert "config key teacher.src_lang: teacher.prompt uses {src_lang}" in refused("causal", "--prompt", "{src_lang}: {source}")
    assert "config key teacher.stop: '<nope>' is not a token" in refused("causal", "--prompt", "{source}", "--stop", "<nope>")


def nbest_of(translator, sources) -> pd.DataFrame:
    rows = [(i, k, text, s) for i, outputs in enumerate(translator.translate(sources, **SEARCH))
            for k, (text, s) in enumerate(outputs)]
    return pd.DataFrame(rows, columns=["sent_id", "hyp_id", "hypothesis", "score"])


def test_pretrained_models_as_scorers(built, imported, sources, tmp_path):
    """forced_decoding of a raw NLLB model told the languages by the scorer's keys equals the imported
    teacher's scores; backward reads them swapped; causal_forced scores log p(hyp | prompt(source))."""
    pd.DataFrame({"sent_id": range(len(sources)), "source": sources}).to_parquet(tmp_path / "sources.parquet")
    nbest = nbest_of(backends.load(imported["nllb"]), sources)
    nbest.to_parquet(tmp_path / "nbest.parquet")

    def features(kind, model, *options):
        out = tmp_path / f"{kind}.parquet"
        assert score.main(["--name", "x", "--kind", kind, "--model", str(model), "--nbest", str(tmp_path / "nbest.parquet"),
                           "--sources", str(tmp_path / "sources.parquet"), *options, "--out", str(out)]) == 0
        return pd.read_parquet(out).sort_values(["sent_id", "hyp_id"]).reset_index(drop=True)

    languages = ["--src-lang", "deu_Latn", "--tgt-lang", "eng_Latn"]
    raw = features("forced_decoding", built["nllb"], *languages)
    own = features("forced_decoding", imported["nllb"])
    assert raw.x_logprob.tolist() == pytest.approx(own.x_logprob.tolist(), abs=1e-4)
    assert raw.x_logprob_per_token.tolist() == pytest.approx(nbest.sort_values(["sent_id", "hyp_id"]).score.tolist(), abs=2e-4)
    backward = features("backward", built["nllb"], *languages)
    swapped = backends.load(built["nllb"], profile=families.Profile("nllb", "eng_Latn", "deu_Latn"))
    expected = swapped.forced_logprobs(list(nbest.hypothesis), [[sources[i]] for i in nbest.sent_id])
    assert backward.x_logprob.tolist() == pytest.approx([total for total, _ in expected], abs=1e-4)
    causal = features("causal_forced", built["causal"], "--prompt", CHAT_PROMPT, "--chat-template",
                      "--src-lang", "German", "--tgt-lang", "English")
    llm = backends.load(imported["causal"])
    expected = llm.forced_logprobs(sources, [list(g.hypothesis) for _, g in nbest.groupby("sent_id")])
    assert causal.x_logprob.tolist() == pytest.approx([total for total, _ in expected], abs=1e-4)
    assert all(math.isfinite(v) for v in causal.x_logprob_per_token)


@pytest.mark.parametrize("family", TEACHERS)
def test_self_training_fine_tunes_a_teacher_of_each_family(family, imported, data_dir, tmp_path):
    """mtdistill.train --init on a pretrained teacher (self-training's finetune_decoders): fed as its family
    says, its profile kept, so the fine-tuned teacher decodes as the one it started from."""
    from mtdistill import train

    labels = pd.read_parquet(data_dir / "train.parquet").head(40).rename(columns={"target": "label"})
    labels.to_parquet(tmp_path / "labels.parquet")
    out = tmp_path / "finetuned"
    assert train.main(["--train", str(tmp_path / "labels.parquet"), "--label-column", "label",
                       "--dev", str(data_dir / "dev.parquet"), "--init", str(imported[family]), "--max-steps", "3",
                       "--eval-every", "3", "--batch-tokens", "512", "--lr", "0.001", "--warmup", "1",
                       "--select-by", "bleu", "--out", str(out)]) == 0
    assert families.Profile.load(out) == families.Profile.load(imported[family])
    before, after = backends.load(imported[family]), backends.load(out)
    changed = [name for (name, a), (_, b) in zip(before.model.named_parameters(), after.model.named_parameters())
               if not torch.equal(a, b)]
    assert changed, "fine-tuning changed no weight"
    outputs = after.translate(labels.source[:2].tolist(), beam=2, nbest=2, max_len_a=1.2, max_len_b=5)
    assert [len(nbest) for nbest in outputs] == [2, 2] and all(math.isfinite(s) for nbest in outputs for _, s in nbest)


def test_teacher_keys_are_checked_when_the_workflow_is_parsed(built, tmp_path):
    """The config's teacher keys meet the same checks at parse time, the family read from config.json."""
    from helpers import plan_of, tiny_config

    config = tiny_config()
    config["self_training"]["rounds"] = 1
    config["student"].update(objectives=[], vocab_size=300)
    config["teacher"].update(pretrained=str(built["nllb"]), src_lang="deu_Latn")
    with pytest.raises(ValueError, match="config key teacher.tgt_lang: a nllb model needs it"):
        plan_of(config)
    config["teacher"].update(tgt_lang="eng_Latn", prompt="{source}")
    with pytest.raises(ValueError, match="config key teacher.prompt: a nllb model does not use it"):
        plan_of(config)
    config["teacher"].update(prompt="", family="t5")
    with pytest.raises(ValueError, match="config key teacher.source_prefix: a t5 model needs it"):
        plan_of(config)
    config["teacher"].update(pretrained="org/not-cached-here", family="auto")
    with pytest.raises(ValueError, match="config key teacher.family: auto cannot tell the family of 'org/not-cached-here'"):
        plan_of(config)
    config = tiny_config()
    config["teacher"]["src_lang"] = "deu_Latn"
    with pytest.raises(ValueError, match="config key teacher.src_lang: the teacher trained here"):
        plan_of(config)
    config = tiny_config()  # a multi-target Marian teacher: word-level KD would feed it unprefixed sources
    config["teacher"].update(pretrained="org/opus-mt-en-mul", family="marian", source_prefix=">>deu<< ")
    with pytest.raises(ValueError, match=r"config key student.objectives\[0\] \(wordkd\): word_kd .* lack teacher.source_prefix"):
        plan_of(config)
    config = tiny_config()
    config["decode"]["sampling"] = {"temperature": 0.7}
    with pytest.raises(ValueError, match="config key decode.sampling: decode.search is beam"):
        plan_of(config)
    config["decode"]["search"] = "sample"
    assert "--search sample --seed 1 --temperature 0.7" in plan_of(config).search_options()
    config["scorers"].append({"name": "opus", "kind": "lm", "model": "/models/gpt2", "src_lang": "de"})
    with pytest.raises(ValueError, match=r"config key scorers\[7\].src_lang \(opus\): kind lm does not use it"):
        plan_of(config)


def test_an_output_is_scored_as_tokenized_after_its_prompt(built):
    """After a plain prompt ending in "English:" the model writes " And ...": the output's tokens are those
    of the prompt and output read together, not of the output alone."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(built["causal"])
    codec = families.codec(tokenizer, families.Profile("causal", prompt="{source}\nEnglish:"))
    prompt = codec.source_ids(["Und Gott sprach"], 256)[0]
    target = codec.target_ids(["And God said"], 256)[0]
    assert prompt + target[:-1] == tokenizer("Und Gott sprach\nEnglish: And God said")["input_ids"]
    assert target[-1] == tokenizer.eos_token_id and codec.text(target) == "And God said"
