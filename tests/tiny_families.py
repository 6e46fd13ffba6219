"""Tiny random-weight teachers of the non-Marian families (NLLB, M2M100, mBART-50, T5/MADLAD, a ChatML
Llama), each saved with save_pretrained next to a real tokenizer whose vocabulary is a SentencePiece model
trained on the given texts. Built offline in about a second, deterministic given the seed, loadable with
AutoTokenizer / AutoModelForSeq2SeqLM / AutoModelForCausalLM. The token conventions (ids of pad, eos,
decoder start, language codes) are those of the real checkpoints."""

from __future__ import annotations

import io
import json
from pathlib import Path

import sentencepiece as spm
import torch
from tokenizers import AddedToken
from transformers import (LlamaConfig, LlamaForCausalLM, LlamaTokenizer, M2M100Config, M2M100ForConditionalGeneration,
                          M2M100Tokenizer, MBart50Tokenizer, MBartConfig, MBartForConditionalGeneration, NllbTokenizer,
                          T5Config, T5ForConditionalGeneration, T5Tokenizer)
from transformers.models.m2m_100.tokenization_m2m_100 import FAIRSEQ_LANGUAGE_CODES as M2M100_LANGUAGE_CODES
from transformers.tokenization_utils_base import generate_merges

VOCAB_SIZE = 1000  # a target: SentencePiece stops early on a few hundred sentences (hard_vocab_limit off)
NLLB_LANGS = ["deu_Latn", "eng_Latn", "fra_Latn"]
T5_PREFIXES = ["<2en>", "<2de>", "<2fr>"]
MAX_POSITIONS = 256  # also the tokenizers' model_max_length, as real checkpoints set it (NLLB: 1024)
FAIRSEQ_SPECIALS = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}  # fairseq dictionaries put these first
# fairseq-style encoder-decoder (M2M100 / NLLB / mBART configs share these field names)
FAIRSEQ_DIMS = dict(d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                    decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=MAX_POSITIONS,
                    dropout=0.0, pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2,
                    scale_embedding=True, tie_word_embeddings=True)
CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] "
          "+ '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def train_spm(texts: list[str], seed: int, model_type: str, **options) -> bytes:
    """A serialized SentencePiece model trained on `texts` (one thread, so the seed fixes it)."""
    model = io.BytesIO()
    spm.set_random_generator_seed(seed)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=model, vocab_size=VOCAB_SIZE, model_type=model_type,
        hard_vocab_limit=False, character_coverage=1.0, normalization_rule_name="identity", num_threads=1,
        minloglevel=2, **options)
    return model.getvalue()


def pieces(model: bytes) -> list[tuple[str, float]]:
    """(piece, score) in id order. Read through sentencepiece because transformers' own SentencePiece
    converter needs protobuf, which the environment lacks."""
    sp = spm.SentencePieceProcessor(model_proto=model)
    return [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]


def fairseq_vocab(model: bytes, added=()) -> dict[str, int]:
    """fairseq's dictionary order: <s> <pad> </s> <unk>, the pieces after spm's <unk> <s> </s>, then `added`."""
    vocab = dict(FAIRSEQ_SPECIALS)
    for piece in [piece for piece, _ in pieces(model)[3:]] + list(added):
        vocab.setdefault(piece, len(vocab))
    return vocab


def bpe_merges(vocab: dict[str, int], specials) -> list[tuple[str, str]]:
    return generate_merges(vocab, skip_tokens=set(specials))


def save(model, tokenizer, outdir) -> Path:
    # Random weights would predict <pad> as often as any piece; real models never do. The fairseq families
    # get a zero pad row from `padding_idx` through their tied embeddings; untied heads get it here.
    model.get_output_embeddings().weight.data[model.config.pad_token_id] = 0
    outdir = Path(outdir)
    model.save_pretrained(outdir)
    tokenizer.save_pretrained(outdir)
    return outdir


def build_nllb(outdir, texts: list[str], seed: int = 1) -> Path:
    """NLLB-200: M2M100 weights, an NllbTokenizer (BPE) with language codes after the pieces, then <mask>
    (in the vocabulary itself: as added tokens they would come after <mask>)."""
    vocab = fairseq_vocab(train_spm(texts, seed, "bpe"), added=NLLB_LANGS)
    tokenizer = NllbTokenizer(vocab=vocab, merges=bpe_merges(vocab, [*FAIRSEQ_SPECIALS, *NLLB_LANGS]),
                              extra_special_tokens=NLLB_LANGS, src_lang="deu_Latn", tgt_lang="eng_Latn",
                              model_max_length=MAX_POSITIONS)
    torch.manual_seed(seed)
    model = M2M100ForConditionalGeneration(M2M100Config(vocab_size=len(tokenizer), **FAIRSEQ_DIMS))
    return save(model, tokenizer, outdir)


def build_m2m100(outdir, texts: list[str], seed: int = 1) -> Path:
    """M2M100: the Python M2M100Tokenizer (vocab.json + SentencePiece model), its 100 language tokens
    (__de__, __en__, __fr__ ...) and 8 made-up words after the vocabulary, as in facebook/m2m100_418M."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    model_bytes = train_spm(texts, seed, "bpe")
    (outdir / "sentencepiece.bpe.model").write_bytes(model_bytes)
    (outdir / "vocab.json").write_text(json.dumps(fairseq_vocab(model_bytes), ensure_ascii=False), encoding="utf-8")
    # Named as in facebook/m2m100_418M's tokenizer_config.json: M2M100Tokenizer's own default list is empty
    # (its check `lang_code not in str(token) not in ...` is never true), and then decode's
    # skip_special_tokens would keep __en__.
    language_tokens = [f"__{code}__" for code in M2M100_LANGUAGE_CODES["m2m100"]]
    tokenizer = M2M100Tokenizer(vocab_file=str(outdir / "vocab.json"), spm_file=str(outdir / "sentencepiece.bpe.model"),
                                src_lang="de", tgt_lang="en", additional_special_tokens=language_tokens,
                                model_max_length=MAX_POSITIONS)
    torch.manual_seed(seed)
    # len(tokenizer) counts neither the language tokens nor the made-up words (128112 rows in m2m100_418M)
    size = tokenizer.encoder_size + len(tokenizer.lang_token_to_id) + tokenizer.num_madeup_words
    config = M2M100Config(vocab_size=size, **FAIRSEQ_DIMS)
    return save(M2M100ForConditionalGeneration(config), tokenizer, outdir)


def build_mbart50(outdir, texts: list[str], seed: int = 1) -> Path:
    """mBART-50: a Unigram MBart50Tokenizer (its 52 language codes, de_DE en_XX fr_XX ..., then <mask>)."""
    tokenizer = MBart50Tokenizer(vocab=pieces(train_spm(texts, seed, "unigram")), src_lang="de_DE", tgt_lang="en_XX",
                                 model_max_length=MAX_POSITIONS)
    torch.manual_seed(seed)
    model = MBartForConditionalGeneration(MBartConfig(vocab_size=len(tokenizer), **FAIRSEQ_DIMS))
    return save(model, tokenizer, outdir)


def build_t5(outdir, texts: list[str], seed: int = 1) -> Path:
    """MADLAD-style T5: <pad>=0 (also the decoder start), </s>=1, <unk>=2, target-language prefixes <2en> ...
    as SentencePiece user-defined pieces; gated-GELU and an lm_head of its own (T5 v1.1 / MADLAD)."""
    vocab = pieces(train_spm(texts, seed, "unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                             user_defined_symbols=T5_PREFIXES))
    tokenizer = T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=MAX_POSITIONS)
    # SentencePiece always cuts user-defined pieces out whole; the Unigram lattice alone would not
    tokenizer.add_tokens([AddedToken(prefix, normalized=False, special=False) for prefix in T5_PREFIXES])
    torch.manual_seed(seed)
    config = T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=16, d_ff=64, num_layers=1, num_decoder_layers=1,
                      num_heads=2, feed_forward_proj="gated-gelu", tie_word_embeddings=False, dropout_rate=0.0,
                      pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    model = T5ForConditionalGeneration(config)
    # transformers 5 ties T5's head to `shared` whatever the config says (tie_word_embeddings=False only turns
    # off the d_model**-0.5 rescale); a checkpoint with its own lm_head, as MADLAD's, loads untied (with a warning)
    model.lm_head.weight = torch.nn.Parameter(torch.randn_like(model.shared.weight))
    return save(model, tokenizer, outdir)


def build_llama(outdir, texts: list[str], seed: int = 1) -> Path:
    """A Llama chat model: byte-fallback BPE (<unk>=0, <s>=1, </s>=2 as in Llama 2), ChatML special tokens
    <|im_start|> <|im_end|> and <pad> after the pieces, a ChatML chat template, left padding."""
    vocab = {piece: i for i, (piece, _) in enumerate(pieces(train_spm(texts, seed, "bpe", byte_fallback=True)))}
    tokenizer = LlamaTokenizer(vocab=vocab, merges=bpe_merges(vocab, ["<unk>", "<s>", "</s>"]), pad_token="<pad>",
                               extra_special_tokens=["<|im_start|>", "<|im_end|>"], padding_side="left",
                               add_bos_token=True, model_max_length=MAX_POSITIONS)
    tokenizer.chat_template = CHATML
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=MAX_POSITIONS,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    return save(LlamaForCausalLM(config), tokenizer, outdir)


def teach(model_dir, profile, sources: list[str], targets: list[str], steps: int = 100, seed: int = 1,
          batch_size: int = 16, lr: float = 3e-3, words: int = 4) -> Path:
    """A few steps of training on parallel text (each target cut to its first `words` words), fed as the
    family's codec feeds it (mtdistill.families), so that the tiny model ends its outputs (EOS, or the chat
    turn's end) as a trained one does; a random one almost never would within a decoding length limit,
    nor one taught whole verses in so few steps. Saved back into `model_dir`."""
    targets = [" ".join(target.split()[:words]) for target in targets]
    from mtdistill import families, models  # the workflow's package: only where a test imports this
    from mtdistill.backends.hf import padded

    model, tokenizer = models.load(model_dir)
    codec = families.codec(tokenizer, profile)
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for step in range(steps):
        rows = [(step * batch_size + i) % len(sources) for i in range(batch_size)]
        src = codec.source_ids([sources[i] for i in rows], 64)
        tgt = codec.target_ids([targets[i] for i in rows], 64)
        if codec.causal:
            inputs, mask = padded([s + t for s, t in zip(src, tgt)], codec.pad_id, "cpu")
            labels = torch.full_like(inputs, -100)
            for row, (s, t) in enumerate(zip(src, tgt)):
                labels[row, len(s) : len(s) + len(t)] = torch.tensor(t)
            loss = model(input_ids=inputs, attention_mask=mask, labels=labels).loss
        else:
            # the forced prefix is read, never learnt: learning the one token every output starts with would
            # teach a few-step model to write nothing else
            inputs, mask = padded(src, codec.pad_id, "cpu")
            start = [model.config.decoder_start_token_id, *codec.target_prefix]
            decoder_inputs, _ = padded([start + t[:-1] for t in tgt], codec.pad_id, "cpu")
            labels, _ = padded([[-100] * (len(start) - 1) + t for t in tgt], -100, "cpu")
            loss = model(input_ids=inputs, attention_mask=mask, decoder_input_ids=decoder_inputs, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval().save_pretrained(model_dir)
    return Path(model_dir)
