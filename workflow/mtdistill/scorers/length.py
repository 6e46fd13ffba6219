"""Length features: hypothesis words and the hypothesis/source word and character ratios."""

from __future__ import annotations

import pandas as pd

from ..core.nbest import KEYS


def score_length(nbest: pd.DataFrame, sentences: pd.DataFrame, name: str, options) -> pd.DataFrame:
    source = nbest.sent_id.map(dict(zip(sentences.sent_id, sentences.source)))
    hyp_words = nbest.hypothesis.str.split().str.len().astype(float)
    return nbest[KEYS].assign(**{
        f"{name}_hyp_words": hyp_words,
        f"{name}_ratio": hyp_words / source.str.split().str.len().clip(lower=1),
        f"{name}_char_ratio": nbest.hypothesis.str.len() / source.str.len().clip(lower=1),
    })
