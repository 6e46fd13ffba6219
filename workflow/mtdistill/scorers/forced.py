"""Forced decoding under a seq2seq model, on either backend: log p(hypothesis | source), the same read
right to left (r2l), or log p(source | hypothesis) (backward, a noisy channel)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import backends
from ..core.nbest import KEYS


def logprob_features(name: str, keys: pd.DataFrame, scored: list[tuple[float, int]], with_tokens: bool = True) -> pd.DataFrame:
    sums = np.array([s for s, _ in scored], dtype=float)
    counts = np.array([n for _, n in scored], dtype=float)
    features = {f"{name}_logprob": sums, f"{name}_logprob_per_token": sums / np.maximum(counts, 1)}
    if with_tokens:
        features[f"{name}_tokens"] = counts
    return keys.reset_index(drop=True).assign(**features)


def score_forced(nbest, sentences, name, options, direction: str) -> pd.DataFrame:
    """Forced decoding in one of three directions: l2r, r2l (reversed tokens) or backward (hyp -> source)."""
    translator = backends.load(options.model, options.backend, f"scorer {name!r}", options.threads or 1,
                               options.compute_type)
    source_of = dict(zip(sentences.sent_id, sentences.source))
    if direction == "backward":
        scored = translator.forced_logprobs(list(nbest.hypothesis), [[source_of[s]] for s in nbest.sent_id],
                                            options.batch_size)
        return logprob_features(name, nbest[KEYS], scored, with_tokens=False)
    groups = [(sent_id, group) for sent_id, group in nbest.groupby("sent_id", sort=False)]
    scored = translator.forced_logprobs([source_of[s] for s, _ in groups], [list(g.hypothesis) for _, g in groups],
                                        options.batch_size, reverse=direction == "r2l")
    return logprob_features(name, pd.concat([g[KEYS] for _, g in groups]), scored)


def score_forced_decoding(nbest, sentences, name, options) -> pd.DataFrame:
    return score_forced(nbest, sentences, name, options, "l2r")


def score_r2l(nbest, sentences, name, options) -> pd.DataFrame:
    return score_forced(nbest, sentences, name, options, "r2l")


def score_backward(nbest, sentences, name, options) -> pd.DataFrame:
    return score_forced(nbest, sentences, name, options, "backward")
