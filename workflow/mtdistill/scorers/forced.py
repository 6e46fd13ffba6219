"""Forced decoding under a seq2seq model, on either backend: log p(hypothesis | source), the same read
right to left (r2l), or log p(source | hypothesis) (backward, a noisy channel); and under a causal LM,
log p(hypothesis | prompt(source)) (causal_forced). A pretrained model of another family than Marian
is told the languages by the scorer's src_lang and tgt_lang (the pipeline's direction; backward reads
them swapped), a causal one by its prompt (mtdistill.families); the forced language token and the
prompt are never scored."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import backends, families
from ..core.io import InputError
from ..core.nbest import KEYS


def logprob_features(name: str, keys: pd.DataFrame, scored: list[tuple[float, int]], with_tokens: bool = True) -> pd.DataFrame:
    sums = np.array([s for s, _ in scored], dtype=float)
    counts = np.array([n for _, n in scored], dtype=float)
    features = {f"{name}_logprob": sums, f"{name}_logprob_per_token": sums / np.maximum(counts, 1)}
    if with_tokens:
        features[f"{name}_tokens"] = counts
    return keys.reset_index(drop=True).assign(**features)


def language_profile(name: str, options, direction: str) -> families.Profile | None:
    """The profile a scorer's src_lang and tgt_lang give its model (None: the one saved with it, if any)."""
    if not (options.src_lang or options.tgt_lang):
        return None
    family = families.detect(options.model)
    if family is None:
        raise InputError(f"scorer {name!r}: src_lang and tgt_lang are set, but the family of {options.model!r} cannot"
                         " be read from its config.json")
    profile = families.Profile(family, options.src_lang, options.tgt_lang)
    families.check(profile, f"scorer {name!r}")
    return profile.swapped() if direction == "backward" else profile


def score_forced(nbest, sentences, name, options, direction: str) -> pd.DataFrame:
    """Forced decoding in one of three directions: l2r, r2l (reversed tokens) or backward (hyp -> source)."""
    translator = backends.load(options.model, options.backend, f"scorer {name!r}", options.threads or 1,
                               options.compute_type, language_profile(name, options, direction))
    return forced_features(translator, nbest, sentences, name, options.batch_size, direction)


def forced_features(translator, nbest, sentences, name, batch_size: int, direction: str = "l2r") -> pd.DataFrame:
    """A translator's forced-decoding features of every hypothesis (see score_forced)."""
    source_of = dict(zip(sentences.sent_id, sentences.source))
    if direction == "backward":
        scored = translator.forced_logprobs(list(nbest.hypothesis), [[source_of[s]] for s in nbest.sent_id],
                                            batch_size)
        return logprob_features(name, nbest[KEYS], scored, with_tokens=False)
    groups = [(sent_id, group) for sent_id, group in nbest.groupby("sent_id", sort=False)]
    scored = translator.forced_logprobs([source_of[s] for s, _ in groups], [list(g.hypothesis) for _, g in groups],
                                        batch_size, reverse=direction == "r2l")
    return logprob_features(name, pd.concat([g[KEYS] for _, g in groups]), scored)


def score_forced_decoding(nbest, sentences, name, options) -> pd.DataFrame:
    return score_forced(nbest, sentences, name, options, "l2r")


def score_r2l(nbest, sentences, name, options) -> pd.DataFrame:
    return score_forced(nbest, sentences, name, options, "r2l")


def score_backward(nbest, sentences, name, options) -> pd.DataFrame:
    return score_forced(nbest, sentences, name, options, "backward")


def score_causal_forced(nbest, sentences, name, options) -> pd.DataFrame:
    profile = families.Profile("causal", options.src_lang, options.tgt_lang, "", options.prompt, options.chat_template,
                               tuple(options.stop))
    families.check(profile, f"scorer {name!r}")
    translator = backends.load(options.model, "hf", f"scorer {name!r}", options.threads or 1, profile=profile)
    return forced_features(translator, nbest, sentences, name, options.batch_size)
