"""CTranslate2 backend: convert a `transformers` model of any teacher family, decode n-best lists and score
forced decodings.

The converted directory is self-contained: CTranslate2's `model.bin`, `config.json` and vocabulary,
the Hugging Face tokenizer files, the teacher's profile (`mtdistill_teacher.json`, mtdistill.families)
and `mtdistill_ct2.json` (where the model came from, and whether it is a decoder-only `generator`).
A seq2seq model runs in a `ctranslate2.Translator`, a decoder-only LM in a `ctranslate2.Generator`.

`CT2Translator` returns what `HFTranslator` returns on the same model:
- beam search stops once `beam` hypotheses are finished (CTranslate2's patience 1 is HF's
  `early_stopping=True`); a score is the sum of token log-probs including the end token divided by
  the number of generated tokens (length penalty 1), neither a forced target prefix (NLLB's language
  token) nor a causal LM's prompt counted;
- the output length limit is HF's: a * (longest source of the batch, in tokens) + b, the batches
  formed the same way;
- a forced target prefix: CTranslate2 counts it in the length limit and in the length a score is
  divided by (not its log-prob), and ranks the finished hypotheses by that; `search` raises the limit,
  scales the scores back and ranks again. One difference stays: on the first step after the prefix
  CTranslate2 lets only the best candidate end (its guard against empty outputs, issue #277), so an
  empty output that is not the best candidate there is in HF's n-best list, not in CTranslate2's;
- `<pad>` is never an output. Marian's converter drops it from CTranslate2's vocabulary, and the HF
  scorer masks it (`models` keeps the `<pad>` row, the decoder start, at zero: the zero vector
  CTranslate2 starts from). The other seq2seq families keep it in the softmax on both backends (their
  forced scores agree to float32 rounding); HF's beam search bans it after the softmax, CTranslate2's
  before it (`suppress_sequences`), so their beam scores differ by log(1 - p(<pad>)) per token: none
  for a trained model, about 1e-3 for a random one.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import ctranslate2
from tqdm import tqdm
from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer

from .. import families, models
from ..core.io import InputError, atomic_path, read_json, write_json
from ..core.tokens import length_batches, reverse_tokens, target_ids
from . import Sampling, Translator

log = logging.getLogger("mtdistill")
MANIFEST = "mtdistill_ct2.json"


class TeacherConverter(ctranslate2.converters.TransformersConverter):
    """CTranslate2's converter, matched to transformers 5 and to HF's decoding of every family.

    - mBART: transformers 5 dropped `normalize_before`, which CTranslate2's loader reads; mBART is pre-norm.
    - T5: transformers 5 always ties the embeddings and says in `scale_decoder_outputs` whether the
      decoder output is scaled, which CTranslate2's loader reads from `tie_word_embeddings`.
    - seq2seq families but Marian: decoding starts from HF's decoder start token (CTranslate2 would
      start mBART-50 from its target language code).
    """

    def load_model(self, model_class, model_name_or_path, **kwargs):
        model = super().load_model(model_class, model_name_or_path, **kwargs)
        config = model.config
        if config.model_type == "mbart":
            config.normalize_before = True
        if hasattr(config, "scale_decoder_outputs"):
            config.tie_word_embeddings = config.scale_decoder_outputs
        self.hf_config = config
        return model

    def load_tokenizer(self, tokenizer_class, model_name_or_path, **kwargs):
        self.tokenizer = super().load_tokenizer(tokenizer_class, model_name_or_path, **kwargs)
        return self.tokenizer

    def _load(self):
        spec = super()._load()
        config, tokenizer = self.hf_config, self.tokenizer
        if not config.is_encoder_decoder or config.model_type == "marian":
            return spec
        if spec.config.bos_token is None:  # transformers 5's MBart50Tokenizer has none
            spec.config.bos_token = tokenizer.convert_ids_to_tokens(config.bos_token_id)
        spec.config.decoder_start_token = tokenizer.convert_ids_to_tokens(config.decoder_start_token_id)
        return spec


def convert(hf_dir: str | Path, out_dir: str | Path, quantization: str | None = None) -> Path:
    """Convert a Hugging Face model (directory or cached id) into a CTranslate2 directory: a seq2seq
    model of any family, or a decoder-only LM that CTranslate2 supports (Llama, Gemma, Qwen, GPT-2, ...)."""
    source = str(hf_dir)
    local = source.startswith(("/", "./", "../", "~")) or Path(source).exists()
    if local and not (Path(source).expanduser() / "config.json").is_file():
        raise InputError(f"model: {source}: not a Hugging Face model directory (no config.json)")
    with models.hf_loading("model", source):
        config = AutoConfig.from_pretrained(source)
        tokenizer = AutoTokenizer.from_pretrained(source)
    profile_file = Path(source).expanduser() / families.PROFILE if local else None
    profiled = profile_file is not None and profile_file.is_file()
    family = families.Profile.load(profile_file.parent).family if profiled else families.detect(source)
    if config.model_type == "marian":
        check_start_embedding(source, config)
    with atomic_path(out_dir) as tmp:
        try:
            TeacherConverter(source).convert(str(tmp), quantization=quantization, force=True)
        except (ValueError, NotImplementedError, AttributeError, KeyError) as err:
            raise InputError(f"model: {source}: CTranslate2 cannot convert a {config.model_type} model "
                             f"({err.__class__.__name__}: {str(err).splitlines()[0][:300]}): this {family or 'model'} "
                             "teacher runs on the hf backend only (config key backend: hf)") from None
        tokenizer.save_pretrained(tmp)  # no config.json among its files: CTranslate2's stays
        if profiled:
            shutil.copyfile(profile_file, tmp / families.PROFILE)
        # config.json is CTranslate2's now: the family and model type are kept here
        write_json({"source": source, "model_type": config.model_type, "family": family, "quantization": quantization,
                    "ctranslate2": ctranslate2.__version__,
                    "decoder_start_token_id": getattr(config, "decoder_start_token_id", None),
                    "generator": not config.is_encoder_decoder}, tmp / MANIFEST)
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
    """Each text's tokens as a Marian tokenizer splits them (source or target side), ending in `</s>`.

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
    """`translator` is a `ctranslate2.Translator` (seq2seq) or `ctranslate2.Generator` (causal LM), fed as
    `profile` says (mtdistill.families); Marian's text goes through the SentencePiece fast path."""

    def __init__(self, translator, tokenizer, profile: families.Profile | None = None, reload=None,
                 vocabulary: list[str] | None = None):
        self.translator, self.tokenizer, self.reload = translator, tokenizer, reload
        self.vocabulary = {token: i for i, token in enumerate(vocabulary)} if vocabulary else None
        self.profile = profile or families.Profile()
        self.codec = families.codec(tokenizer, self.profile)
        self.marian = self.profile.family == "marian"
        # HF's seq2seq decoding bans <pad> (models.configure_generation); Marian's CTranslate2 vocabulary lacks it
        pad = tokenizer.pad_token
        self.suppressed = [] if self.marian or self.codec.causal or pad in (None, tokenizer.eos_token) else [pad]

    def tokens(self, ids: list[int]) -> list[str]:
        return self.tokenizer.convert_ids_to_tokens(list(ids))

    def output_ids(self, tokens: list[str]) -> list[int]:
        """The model's ids of CTranslate2's output tokens: their places in its vocabulary, which holds the
        model's rows the HF tokenizer has no token for (M2M100's made-up words)."""
        if self.vocabulary is None:
            return self.tokenizer.convert_tokens_to_ids(tokens)
        return [self.vocabulary[token] for token in tokens]

    def source_tokens(self, texts: list[str], max_len: int) -> list[list[str]]:
        """The model's input: Marian's pieces, or the family's source ids (a causal LM's prompt) as tokens."""
        if self.marian:
            return token_pieces(self.tokenizer, [self.profile.source_prefix + t for t in texts], max_len)
        return [self.tokens(ids) for ids in self.codec.source_ids(texts, max_len)]

    def output_limit(self, texts: list[str], source: list[list[str]], max_len: int, max_len_a: float,
                     max_len_b: int) -> int:
        """HF's cap: a * longest input (a causal LM: longest source text, not prompt) + b."""
        if self.codec.causal:
            longest = max(map(len, self.tokenizer(texts, add_special_tokens=False)["input_ids"]))
        else:
            longest = max(map(len, source))
        return min(max_len, int(max_len_a * longest + max_len_b))

    def translate(self, sources: list[str], beam: int = 1, nbest: int = 1, batch_size: int = 32,
                  max_len_a: float = 1.5, max_len_b: int = 10, max_len: int = 256, progress: bool = False,
                  r2l: bool = False, sampling: Sampling | None = None) -> list[list[tuple[str, float]]]:
        """As `Translator.translate`; greedy search (beam 1) also gets its score.

        With `sampling`, each of the `nbest` draws of a source is its own row of the batch (CTranslate2
        would sort the draws of one row by score, and a list of draws is in the order drawn): all
        tokens are candidates (no top-k), the nucleus is `top_p`, and a draw's score is its untempered
        log-prob (forced scoring, as the hf backend's); the draws differ from HF's, which are torch's.
        """
        results: list = [None] * len(sources)
        if sampling is not None:
            self.reseed(sampling.seed)
        batches = length_batches([len(s.split()) for s in sources], batch_size, longest_first=True)
        for indices in tqdm(batches, desc="decode (ctranslate2)", mininterval=30, disable=not progress):
            texts = [sources[i] for i in indices]
            source = self.source_tokens(texts, max_len)
            limit = self.output_limit(texts, source, max_len, max_len_a, max_len_b)
            if sampling is not None:
                source = [seq for seq in source for _ in range(nbest)]
            outputs, scores = self.search(source, limit, beam, nbest, sampling)
            if sampling is not None:
                scores = [total / max(count, 1) for total, count in self.scored_tokens(source, outputs)]
            texts = [self.text(output, r2l) for output in outputs]
            for k, i in enumerate(indices):
                results[i] = list(zip(texts[k * nbest : (k + 1) * nbest], scores[k * nbest : (k + 1) * nbest]))
        return results

    def reseed(self, seed: int) -> None:
        """Draws from `seed` on: CTranslate2 seeds a worker thread's generator when the thread first draws
        (`set_random_seed` reaches no thread that drew before), so the model is loaded again, with new threads."""
        if self.reload is None:
            raise InputError("ctranslate2: seeded sampling needs a translator loaded by backends.load")
        ctranslate2.set_random_seed(seed)
        self.translator = None  # the old model's memory goes first
        self.translator = self.reload()

    def search(self, source: list[list[str]], limit: int, beam: int, nbest: int,
               sampling: Sampling | None) -> tuple[list[list[str]], list[float]]:
        """Every row's `nbest` outputs (one with sampling) and their scores, in row order. An output's tokens
        follow the forced prefix (a causal LM: the prompt) and end in the end token when it finished."""
        keep = nbest if sampling is None else 1
        if sampling is None:
            options = {"beam_size": beam, "num_hypotheses": nbest}
        else:
            options = {"beam_size": 1, "num_hypotheses": 1, "sampling_topk": 0, "sampling_topp": sampling.top_p,
                       "sampling_temperature": sampling.temperature}
        options.update(length_penalty=1.0, patience=1.0, return_scores=True, return_end_token=True)
        if self.codec.causal:
            out = self.translator.generate_batch(source, max_length=limit, min_length=0, include_prompt_in_result=False,
                                                 end_token=self.tokens(self.codec.stop_ids), **options)
            return [seq for r in out for seq in r.sequences], [float(s) for r in out for s in r.scores]
        prefix = self.tokens(self.codec.target_prefix)
        if self.suppressed:
            options["suppress_sequences"] = [self.suppressed]
        if prefix and sampling is None:
            options["num_hypotheses"] = beam  # every finished hypothesis, ranked again below
        # CTranslate2 counts the prefix in the length limit, and in the length it divides a score by (though
        # not its log-prob), and ranks the finished hypotheses by that: the limit is raised by the prefix,
        # the scores scaled back to HF's and the hypotheses ranked by them
        out = self.translator.translate_batch(
            source, target_prefix=[prefix] * len(source) if prefix else None, min_decoding_length=0,
            max_decoding_length=limit + len(prefix), max_input_length=0, **options)
        outputs, scores = [], []
        for result in out:
            found = [(hyp[len(prefix) :], float(score)) for hyp, score in zip(result.hypotheses, result.scores)]
            if prefix:
                found = [(hyp, score * (len(hyp) + len(prefix)) / max(len(hyp), 1)) for hyp, score in found]
                found = sorted(found, key=lambda pair: -pair[1])[:keep]
            outputs += [hyp for hyp, _ in found]
            scores += [score for _, score in found]
        return outputs, scores

    def text(self, output: list[str], r2l: bool) -> str:
        if self.marian:
            return text_of(self.tokenizer, self.without_end(output), r2l)
        ids = self.output_ids(self.without_end(output))
        return self.codec.text(reverse_tokens(ids, self.tokenizer) if r2l else ids)

    def without_end(self, output: list[str]) -> list[str]:
        stops = set(self.tokens(self.codec.stop_ids))
        return output[:-1] if output and output[-1] in stops else output

    def scored_tokens(self, source: list[list[str]], outputs: list[list[str]],
                      per_batch: int = 0) -> list[tuple[float, int]]:
        """(sum log-prob, token count) of each output after its source row (a causal LM: its prompt), the
        forced prefix or prompt not counted; an output that does not end in its end token (one cut at the
        length limit) is scored without one. CTranslate2 sorts the rows by length, `per_batch` at a time."""
        batching = {"max_batch_size": per_batch, "max_input_length": 0}
        if self.codec.causal:
            scored = self.translator.score_batch([s + o for s, o in zip(source, outputs)], **batching)
            return [(float(sum(r.log_probs[len(s) - 1 :])), len(o)) for r, s, o in zip(scored, source, outputs)]
        prefix = self.tokens(self.codec.target_prefix)
        ended = [self.without_end(o) != o for o in outputs]
        # CTranslate2 appends and scores `</s>` itself
        scored = self.translator.score_batch(source, [prefix + self.without_end(o) for o in outputs],
                                             offset=len(prefix), **batching)
        return [(float(sum(r.log_probs if end else r.log_probs[:-1])), len(r.log_probs) - (not end))
                for r, end in zip(scored, ended)]

    def forced_logprobs(self, inputs: list[str], outputs: list[list[str]], batch_size: int = 16,
                        max_len: int = 256, reverse: bool = False) -> list[tuple[float, int]]:
        """As `Translator.forced_logprobs`; a batch holds the outputs of about `batch_size` inputs,
        which CTranslate2 sorts by length."""
        source = [seq for seq, outs in zip(self.source_tokens(inputs, max_len), outputs) for _ in outs]
        texts = [o for outs in outputs for o in outs]
        if self.marian:
            target = token_pieces(self.tokenizer, texts, max_len, True, reverse)
        else:
            target = [self.tokens(ids) for ids in self.codec.target_ids(texts, max_len, reverse)]
        per_batch = max(1, round(batch_size * len(target) / max(1, len(inputs))))
        block = per_batch * 16  # one score_batch call per block: a progress step, sorted within
        results = []
        for start in tqdm(range(0, len(target), block), desc="score (ctranslate2)", mininterval=30):
            rows = slice(start, start + block)
            results.extend(self.scored_tokens(source[rows], target[rows], per_batch))
        return results


def load(path: str | Path, what: str = "model", threads: int = 1, compute_type: str = "default",
         profile: families.Profile | None = None) -> CT2Translator:
    """The translator of a converted directory, fed as `profile` says (else the profile converted with
    it); float32 unless `compute_type` says otherwise."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{what}: {path}: directory not found")
    if not is_converted(path):
        raise InputError(f"{what}: {path}: not a CTranslate2 model converted by mtdistill.ct2 (no model.bin or {MANIFEST})")
    profile = profile or families.Profile.load(path)
    generator = bool(read_json(path / MANIFEST).get("generator", False))
    if generator != (not families.FAMILIES[profile.family].seq2seq):
        kind = "a decoder-only LM" if generator else "a seq2seq model"
        raise InputError(f"{what}: {path}: {kind}, which a {profile.family} teacher is not (teacher.family); "
                         f"decoder-only LMs are family causal")
    model_class = ctranslate2.Generator if generator else ctranslate2.Translator

    def reload():
        return model_class(str(path), device=device(), compute_type=compute_type, intra_threads=max(1, threads),
                           inter_threads=1)

    return CT2Translator(reload(), AutoTokenizer.from_pretrained(str(path)), profile, reload, output_vocabulary(path))


def output_vocabulary(path: Path) -> list[str] | None:
    """CTranslate2's output tokens in id order: a seq2seq model's target (or shared) vocabulary, a generator's."""
    for name in ("target_vocabulary.json", "shared_vocabulary.json", "vocabulary.json"):
        if (path / name).is_file():
            return read_json(path / name)
    return None
