"""The tiny teachers of tests/tiny_families.py load through the Auto classes, keep their family's token
conventions (language codes, target-language prefix, chat template) and generate."""

from __future__ import annotations

import hashlib

import pandas as pd
import pytest
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from tiny_families import build_llama, build_m2m100, build_mbart50, build_nllb, build_t5

SOURCE = "Und Josua sprach zu dem Volke:"


@pytest.fixture(scope="module")
def texts(data_dir) -> list[str]:
    train = pd.read_parquet(data_dir / "train.parquet", columns=["source", "target"])
    return list(train.source) + list(train.target)


# builder, (src_lang, tgt_lang, another language) as the tokenizer takes them, and their tokens
FAIRSEQ_FAMILIES = {
    "nllb": (build_nllb, ("deu_Latn", "eng_Latn", "fra_Latn"), ("deu_Latn", "eng_Latn", "fra_Latn")),
    "m2m100": (build_m2m100, ("de", "en", "fr"), ("__de__", "__en__", "__fr__")),
    "mbart50": (build_mbart50, ("de_DE", "en_XX", "fr_XX"), ("de_DE", "en_XX", "fr_XX")),
}


@pytest.mark.parametrize("family", FAIRSEQ_FAMILIES)
def test_multilingual_seq2seq(family, texts, tmp_path):
    build, (src, tgt, other), tokens = FAIRSEQ_FAMILIES[family]
    outdir = build(tmp_path / family, texts)
    tokenizer = AutoTokenizer.from_pretrained(outdir, src_lang=src, tgt_lang=tgt)
    model = AutoModelForSeq2SeqLM.from_pretrained(outdir).eval()
    src_id, tgt_id, other_id = tokenizer.convert_tokens_to_ids(list(tokens))
    assert (model.config.decoder_start_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id) == (2, 1, 2)
    assert len({src_id, tgt_id, other_id, tokenizer.unk_token_id}) == 4
    assert {src_id, tgt_id, other_id} <= set(tokenizer.all_special_ids)
    assert max(tokenizer.get_vocab().values()) < model.config.vocab_size
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    assert 300 <= len(tokenizer) <= 2000

    encoded = tokenizer(SOURCE, text_target="And Joshua said")
    assert (encoded.input_ids[0], encoded.input_ids[-1]) == (src_id, 2)
    assert (encoded.labels[0], encoded.labels[-1]) == (tgt_id, 2)
    tokenizer.src_lang = other  # the setter rebuilds the prefix
    assert tokenizer(SOURCE).input_ids[0] == other_id
    tokenizer.src_lang = src

    batch = tokenizer([SOURCE, "Josua"], return_tensors="pt", padding=True)
    out = model.generate(**batch, forced_bos_token_id=tgt_id, num_beams=2, max_new_tokens=4)
    assert out[:, 0].tolist() == [2, 2] and out[:, 1].tolist() == [tgt_id, tgt_id] and out.shape[1] > 2
    assert tokenizer.decode(out[0], skip_special_tokens=True) == tokenizer.decode(out[0, 2:], skip_special_tokens=True)


def test_t5_prefix_token(texts, tmp_path):
    outdir = build_t5(tmp_path / "t5", texts)
    tokenizer = AutoTokenizer.from_pretrained(outdir)
    model = AutoModelForSeq2SeqLM.from_pretrained(outdir).eval()
    assert (model.config.decoder_start_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id,
            tokenizer.unk_token_id) == (0, 0, 1, 2)
    assert model.lm_head.weight.data_ptr() != model.shared.weight.data_ptr()
    prefix_ids = tokenizer.convert_tokens_to_ids(["<2en>", "<2de>"])
    assert tokenizer.unk_token_id not in prefix_ids
    ids = tokenizer("<2en> " + SOURCE).input_ids
    assert ids[0] == prefix_ids[0] and ids[1:] == tokenizer(SOURCE).input_ids and ids[-1] == 1

    batch = tokenizer(["<2en> " + SOURCE, "<2en> Josua"], return_tensors="pt", padding=True)
    out = model.generate(**batch, num_beams=2, max_new_tokens=4)
    assert out[:, 0].tolist() == [0, 0] and out.shape[1] > 1 and 0 not in out[:, 1].tolist()


def test_llama_chat_template_and_left_padding(texts, tmp_path):
    outdir = build_llama(tmp_path / "llama", texts)
    tokenizer = AutoTokenizer.from_pretrained(outdir)
    model = AutoModelForCausalLM.from_pretrained(outdir).eval()
    im_start, im_end = tokenizer.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])
    assert {im_start, im_end, tokenizer.pad_token_id} <= set(tokenizer.all_special_ids)
    assert len({tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id, im_start, im_end}) == 5
    assert tokenizer.padding_side == "left"

    turn = [{"role": "user", "content": "Translate: " + SOURCE}]
    prompt = tokenizer.apply_chat_template(turn, add_generation_prompt=True, tokenize=False)
    assert prompt.startswith("<|im_start|>user\n") and prompt.endswith("<|im_end|>\n<|im_start|>assistant\n")
    ids = tokenizer.apply_chat_template(turn, add_generation_prompt=True)["input_ids"]
    assert ids == tokenizer(prompt, add_special_tokens=False).input_ids and ids.count(im_start) == 2

    prompts = [prompt, tokenizer.apply_chat_template([{"role": "user", "content": "x"}], add_generation_prompt=True,
                                                     tokenize=False)]
    batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    assert batch.input_ids[1, 0] == tokenizer.pad_token_id
    out = model.generate(**batch, num_beams=2, max_new_tokens=4, do_sample=False)
    single = tokenizer(prompts[1:], return_tensors="pt", add_special_tokens=False)
    alone = model.generate(**single, num_beams=2, max_new_tokens=4, do_sample=False)
    continuation = [i for i in out[1, batch.input_ids.shape[1]:].tolist() if i != tokenizer.pad_token_id]
    assert continuation and continuation == alone[0, single.input_ids.shape[1]:].tolist()


@pytest.mark.parametrize("build", [build_nllb, build_m2m100, build_mbart50, build_t5, build_llama],
                         ids=lambda build: build.__name__)
def test_deterministic_given_seed(build, texts, tmp_path):
    def digest(outdir):
        return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(outdir.iterdir())}

    first, again, other = (digest(build(tmp_path / str(run), texts, seed=seed)) for run, seed in enumerate([1, 1, 2]))
    assert first == again
    assert first["model.safetensors"] != other["model.safetensors"]
