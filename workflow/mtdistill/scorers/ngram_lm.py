"""English fluency of n-best hypotheses under the trigram language model shipped with `pocketsphinx`.

Hypotheses are lower-cased and reduced to words (letters and digits, with apostrophes and hyphens kept
inside a word when the LM knows the whole form: "don't", "twenty-one"); punctuation is dropped. The
sentence is scored between <s> and </s>. The LM has no <unk>: an out-of-vocabulary word costs
OOV_LOGPROB, is counted, and breaks the n-gram context (the next word backs off past it).
Output: `sent_id, hyp_id, <name>_logprob` (natural log), `<name>_logprob_per_word` (divided by words + 1
for </s>) and `<name>_oov`, in the row order of the n-best table.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from ..core.nbest import KEYS
from ..core.io import InputError

OOV_LOGPROB = math.log(1e-10)  # just below the rarest unigram of en-us.lm.bin (about e^-21.8)
WORD = re.compile(r"[^\W_]+(?:['-][^\W_]+)*")


class NGramLM:
    def __init__(self, path: str | Path):
        from pocketsphinx import Config, LogMath, NGramModel

        self.logmath = LogMath()
        self.lm = NGramModel(Config(), self.logmath, str(path))
        self.order = self.lm.size()
        self.zero = self.logmath.get_zero()  # what prob() gives for a word outside the vocabulary

    def known(self, word: str) -> bool:
        return self.lm.prob([word]) != self.zero

    def words(self, text: str) -> list[str]:
        words = []
        for word in WORD.findall(text.lower().replace("\u2019", "'")):
            # the LM spells some compounds with a hyphen ("twenty-one") and most as separate words
            words.extend([word] if "-" not in word or self.known(word) else word.split("-"))
        return words

    def score(self, text: str) -> tuple[float, int, int]:
        """(natural-log probability incl. </s>, words, OOV words) of one sentence."""
        words = self.words(text)
        history, logprob, oov = ["<s>"], 0.0, 0
        for word in words + ["</s>"]:
            # prob() takes the n-gram newest word first; an OOV in the history makes it back off past it
            prob = self.lm.prob([word] + history[::-1][: self.order - 1])
            if prob == self.zero:
                logprob, oov = logprob + OOV_LOGPROB, oov + 1
            else:
                logprob += self.logmath.log_to_ln(prob)
            history.append(word)
        return logprob, len(words), oov


def lm_path(name: str, model_path: str | Path | None) -> Path:
    if model_path is None:
        import pocketsphinx

        return Path(pocketsphinx.get_model_path()) / "en-us" / "en-us.lm.bin"
    if not Path(model_path).exists():
        raise InputError(f"scorer {name!r}: n-gram language model {model_path} does not exist")
    return Path(model_path)


def score_ngram_lm(nbest: pd.DataFrame, sentences, name: str, options) -> pd.DataFrame:
    """The LM of `options.model`, else pocketsphinx's own US English one."""
    lm = NGramLM(lm_path(name, options.model))
    codes, texts = pd.factorize(nbest.hypothesis.fillna(""))  # n-best lists repeat hypotheses: score each once
    scored = [lm.score(text) for text in tqdm(texts, desc=f"{name} n-gram", mininterval=30)]
    scored = np.array(scored, dtype=float).reshape(-1, 3)  # reshape: an empty table still has three columns
    logprob, words, oov = scored[codes].T
    return nbest[KEYS].reset_index(drop=True).assign(**{
        f"{name}_logprob": logprob, f"{name}_logprob_per_word": logprob / (words + 1), f"{name}_oov": oov,
    })
