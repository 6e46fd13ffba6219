"""Scorer kind `punctuation`: the share of a hypothesis's characters that are punctuation."""

from mtdistill import scorers
from mtdistill.core.nbest import KEYS


@scorers.register("punctuation", "share of punctuation characters in the hypothesis")
def score_punctuation(nbest, sentences, name, options):
    def share(text: str) -> float:
        return sum(not c.isalnum() and not c.isspace() for c in text) / max(len(text), 1)
    return nbest[KEYS].assign(**{f"{name}_share": nbest.hypothesis.map(share).astype(float)})
