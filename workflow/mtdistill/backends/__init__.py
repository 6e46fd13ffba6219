"""Decoding and forced scoring backends: the one place that picks the library a model runs in.

`load` returns a `Translator`: `translate` gives n-best (hypothesis, score) lists and
`forced_logprobs` (sum log-prob incl. EOS, token count) pairs, the same results on either backend
(to float32 rounding; beam scores to about 1e-3). `hf` runs a `transformers` seq2seq model,
`ctranslate2` a directory converted by `mtdistill.ct2`. Importing this package loads neither library.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

from ..core.io import InputError

LOADERS = {"hf": "mtdistill.backends.hf", "ctranslate2": "mtdistill.backends.ctranslate2"}
BACKENDS = tuple(LOADERS)


@dataclass(frozen=True)
class Sampling:
    """Sampled n-best lists instead of beam search: each output drawn with `temperature` and nucleus
    `top_p`, scored by its untempered length-normalised log-prob; the draws are fixed by `seed`."""

    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 1


class Translator:
    """What every backend offers; `tokenizer` is the model's Hugging Face tokenizer."""

    tokenizer = None

    def translate(self, sources: list[str], beam: int = 1, nbest: int = 1, batch_size: int = 32,
                  max_len_a: float = 1.5, max_len_b: int = 10, max_len: int = 256, progress: bool = False,
                  r2l: bool = False, sampling: Sampling | None = None) -> list[list[tuple[str, float]]]:
        """Per source, `nbest` (hypothesis, length-normalised log-prob) pairs, best first, in input order
        (with `sampling`, `nbest` draws in the order drawn).

        Beam search stops once `beam` hypotheses are finished; the output length is capped at
        a * (longest source of the batch, in tokens) + b. With `r2l` the model writes right to left
        and its output comes back in reading order.
        """
        raise NotImplementedError

    def forced_logprobs(self, inputs: list[str], outputs: list[list[str]], batch_size: int = 16,
                        max_len: int = 256, reverse: bool = False) -> list[tuple[float, int]]:
        """(sum log-prob incl. EOS, token count) of every output given its input, in order.

        `outputs[i]` are the outputs of `inputs[i]`; `reverse` scores them right to left.
        """
        raise NotImplementedError

    def best_translations(self, sources: list[str], **options) -> list[str]:
        """The single best translation of each source (`options` as `translate`'s)."""
        return [nbest[0][0] for nbest in self.translate(sources, **options)]


def load(path: str | Path, backend: str = "hf", what: str = "model", threads: int = 1,
         compute_type: str = "default", profile=None) -> Translator:
    """The `Translator` of a model: a `transformers` directory or id (hf), or a converted directory
    (ctranslate2, run with `threads` and `compute_type`); `what` names the input in errors. The model is
    fed as its family says (mtdistill.families): `profile`, else the one saved in its directory."""
    if backend not in LOADERS:
        raise InputError(f"{what}: unknown backend {backend!r} (one of {', '.join(BACKENDS)})")
    return import_module(LOADERS[backend]).load(path, what, threads, compute_type, profile)
