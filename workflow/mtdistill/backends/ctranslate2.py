"""CTranslate2 backend: convert a `transformers` seq2seq model, decode n-best lists and score forced decodings.

The converted directory is self-contained: CTranslate2's `model.bin`, `config.json` and vocabulary,
the Hugging Face tokenizer files and `mtdistill_ct2.json` (where the model came from).

`CT2Translator` returns what `HFTranslator` returns on the same model:
- beam search stops once `beam` hypotheses are finished (CTranslate2's patience 1 is HF's
  `early_stopping=True`); a score is the sum of token log-probs including `</s>` divided by the
  number of target tokens (length penalty 1);
- the output length limit is HF's: a * (longest source of the batch, in tokens) + b, the batches
  formed the same way;
- CTranslate2 has no `<pad>` in its softmax; the HF scorer masks it, and `models` keeps the
  `<pad>` row (the decoder start) at zero, the zero vector CTranslate2 starts from.
"""

from __future__ import annotations

import logging
from pathlib import Path

import ctranslate2
from tqdm import tqdm
from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer

from .. import models
from ..core.io import InputError, atomic_path, write_json
from ..core.tokens import length_batches, reverse_tokens, target_ids
from . import Translator

log = logging.getLogger("mtdistill")
MANIFEST = "mtdistill_ct2.json"


def convert(hf_dir: str | Path, out_dir: str | Path, quantization: str | None = None) -> Path:
    """Convert a Hugging Face seq2seq model (directory or cached id) into a CTranslate2 directory."""
    source = str(hf_dir)
    if source.startswith(("/", "./", "../", "~")) or Path(source).exists():
        if not (Path(source).expanduser() / "config.json").is_file():
            raise InputError(f"model: {source}: not a Hugging Face model directory (no config.json)")
    with models.hf_loading("model", source):
        config = AutoConfig.from_pretrained(source)
        tokenizer = AutoTokenizer.from_pretrained(source)
    if not config.is_encoder_decoder:
        raise InputError(f"model: {source}: a {config.model_type} model is not a seq2seq model")
    if config.model_type == "marian":
        check_start_embedding(source, config)
    with atomic_path(out_dir) as tmp:
        converter = ctranslate2.converters.TransformersConverter(source)
        converter.convert(str(tmp), quantization=quantization, force=True)
        tokenizer.save_pretrained(tmp)  # no config.json among its files: CTranslate2's stays
        write_json({"source": source, "model_type": config.model_type, "quantization": quantization,
                    "ctranslate2": ctranslate2.__version__, "decoder_start_token_id": config.decoder_start_token_id},
                   tmp / MANIFEST)
    log.info("converted %s into %s", source, out_dir)
    return Path(out_dir)


def check_start_embedding(source: str, config) -> None:
    """CTranslate2's Marian decoder starts from a zero vector, HF's from the start token's embedding.

    Models trained here keep that row at zero (`models.keep_pad_row_zero`); with any other the two
    backends translate differently (0 of 200 top-1 hypotheses alike when we tried).
    """
    model = AutoModelForSeq2SeqLM.from_pretrained(source)
    largest = float(model.get_decoder().embed_tokens.weight[config.decoder_start_token_id].detach().abs().max())
    if largest > 1e-6:
        raise InputError(
            f"model: {source}: the decoder start token's embedding (id {config.decoder_start_token_id}) is not zero "
            f"(max |w| {largest:.3g}), but CTranslate2 starts Marian decoders from a zero vector: "
            "its translations would differ from the hf backend's; use backend hf for this model")


def is_converted(path: str | Path) -> bool:
    return (Path(path) / "model.bin").is_file() and (Path(path) / MANIFEST).is_file()


def device() -> str:
    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


def token_pieces(tokenizer, texts: list[str], max_len: int, target: bool = False,
                 reverse: bool = False) -> list[list[str]]:
    """Each text's tokens as the HF tokenizer splits them (source or target side), ending in `</s>`.

    Marian tokenizers are SentencePiece models: one batched call instead of the slow tokenizer's
    Python loop, 25x faster. A piece outside the vocabulary stays as it is; CTranslate2 maps it to
    `<unk>`, as the HF tokenizer does. `reverse` gives a right-to-left model's order (`</s>` last).
    """
    spm = getattr(tokenizer, "spm_target" if target else "spm_source", None)
    if spm is not None and not any(">>" in text for text in texts):  # no >>lang<< codes to split off
        split = [pieces[: max_len - 1] + [tokenizer.eos_token] for pieces in spm.encode(texts, out_type=str)]
        return [seq[:-1][::-1] + seq[-1:] for seq in split] if reverse else split
    if target:
        ids = target_ids(tokenizer, texts, max_len, reverse)
    else:
        ids = tokenizer(texts, truncation=True, max_length=max_len)["input_ids"]
    return [tokenizer.convert_ids_to_tokens(seq) for seq in ids]


def text_of(tokenizer, pieces: list[str], r2l: bool) -> str:
    ids = tokenizer.convert_tokens_to_ids(pieces)
    if r2l:
        ids = reverse_tokens(ids, tokenizer)
    return tokenizer.decode(ids, skip_special_tokens=True)


class CT2Translator(Translator):
    def __init__(self, translator, tokenizer):
        self.translator, self.tokenizer = translator, tokenizer

    def translate(self, sources: list[str], beam: int = 1, nbest: int = 1, batch_size: int = 32,
                  max_len_a: float = 1.5, max_len_b: int = 10, max_len: int = 256, progress: bool = False,
                  r2l: bool = False) -> list[list[tuple[str, float]]]:
        """As `Translator.translate`; greedy search (beam 1) also gets its score."""
        tokenizer = self.tokenizer
        results: list = [None] * len(sources)
        batches = length_batches([len(s.split()) for s in sources], batch_size, longest_first=True)
        for indices in tqdm(batches, desc="decode (ctranslate2)", mininterval=30, disable=not progress):
            batch = token_pieces(tokenizer, [sources[i] for i in indices], max_len)
            limit = min(max_len, int(max_len_a * max(map(len, batch)) + max_len_b))
            out = self.translator.translate_batch(
                batch, beam_size=beam, num_hypotheses=nbest, length_penalty=1.0, patience=1.0, min_decoding_length=0,
                max_decoding_length=limit, max_input_length=0, return_scores=True,
            )
            for i, result in zip(indices, out):
                results[i] = [(text_of(tokenizer, hyp, r2l), float(score))
                              for hyp, score in zip(result.hypotheses, result.scores)]
        return results

    def forced_logprobs(self, inputs: list[str], outputs: list[list[str]], batch_size: int = 16,
                        max_len: int = 256, reverse: bool = False) -> list[tuple[float, int]]:
        """As `Translator.forced_logprobs`; a batch holds the outputs of about `batch_size` inputs,
        which CTranslate2 sorts by length."""
        tokenizer = self.tokenizer
        source = [seq for seq, outs in zip(token_pieces(tokenizer, inputs, max_len), outputs) for _ in outs]
        # CTranslate2 appends and scores `</s>` itself
        target = [seq[:-1] for seq in token_pieces(tokenizer, [o for outs in outputs for o in outs], max_len, True, reverse)]
        per_batch = max(1, round(batch_size * len(target) / max(1, len(inputs))))
        block = per_batch * 16  # one score_batch call per block: a progress step, sorted within
        results = []
        for start in tqdm(range(0, len(target), block), desc="score (ctranslate2)", mininterval=30):
            scored = self.translator.score_batch(source[start : start + block], target[start : start + block],
                                                 max_batch_size=per_batch, max_input_length=0)
            results.extend((float(sum(r.log_probs)), len(r.log_probs)) for r in scored)
        return results


def load(path: str | Path, what: str = "model", threads: int = 1, compute_type: str = "default",
         profile=None) -> CT2Translator:
    """The translator of a converted directory; float32 unless `compute_type` says otherwise."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{what}: {path}: directory not found")
    if not is_converted(path):
        raise InputError(f"{what}: {path}: not a CTranslate2 model converted by mtdistill.ct2 (no model.bin or {MANIFEST})")
    translator = ctranslate2.Translator(str(path), device=device(), compute_type=compute_type,
                                        intra_threads=max(1, threads), inter_threads=1)
    return CT2Translator(translator, AutoTokenizer.from_pretrained(str(path)))
