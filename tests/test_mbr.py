"""mtdistill.scorers.mbr must reproduce sacrebleu's per-pair sentence_score loop exactly, only faster."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mtdistill.core.nbest import KEYS
from mtdistill.scorers import Options
from mtdistill.scorers.mbr import consensus_features, mbr_utilities, score_mbr
from sacrebleu.metrics import BLEU, CHRF

SACREBLEU = {"chrf": CHRF(), "bleu": BLEU(effective_order=True)}

LISTS = {
    "overlapping": [
        "The cat sat on the mat.",
        "The cat sat on a mat .",
        "A cat was sitting on the mat!",
        "The cat sat on the mat.",  # duplicate
        "",
        "cat",
        "On the mat, the cat sat -- quietly (very quietly).",
        "the cat  sat on   the mat.  ",
    ],
    "entities_and_punctuation": [
        "He said: \"It's 3:00 p.m.; let's go!\"",
        "He said \"it is 3 pm, let us go\".",
        "&quot;Go now&quot; &amp; don't wait &lt;here&gt;",
        "Go now & don't wait <here>",
        "Well...",
        "Yes",
        "yes",
        "Über café naïve façade — déjà vu.",
    ],
    "bible": [
        "And God said, Let there be light: and there was light.",
        "And God said: let there be light, and there was light.",
        "God said, Let there be light; and light was.",
        "Then God said, Let light be, and there was light.",
        "And the evening and the morning were the first day.",
        "In the beginning God created the heaven and the earth.",
    ],
    "two": ["word", "another word"],
    "identical": ["same same same", "same same same", "same same same"],
    "empty": ["", "", " "],
}


def naive(hypotheses: list[str], metric: str) -> np.ndarray:
    n = len(hypotheses)
    if n < 2:
        return np.zeros(n)
    utility = np.zeros((n, n))
    for i, hyp in enumerate(hypotheses):
        for j, other in enumerate(hypotheses):
            if i != j:
                utility[i, j] = SACREBLEU[metric].sentence_score(hyp, [other]).score
    return utility.sum(1) / (n - 1)


@pytest.mark.parametrize("metric", ["chrf", "bleu"])
@pytest.mark.parametrize("name", LISTS)
def test_matches_naive_sacrebleu_loop(name, metric):
    hypotheses = LISTS[name]
    fast = mbr_utilities(hypotheses, metric)
    assert fast.shape == (len(hypotheses),)
    np.testing.assert_allclose(fast, naive(hypotheses, metric), rtol=0, atol=1e-9)


@pytest.mark.parametrize("metric", ["chrf", "bleu"])
def test_consensus_hypothesis_wins(metric):
    hypotheses = [
        "the quick brown fox jumps over the lazy dog",  # every other one is a small edit of this
        "the quick brown fox jumped over the lazy dog",
        "a quick brown fox jumps over the lazy dog",
        "the quick brown fox jumps over a lazy dog",
        "the quick red fox jumps over the lazy dog",
        "colourless green ideas sleep furiously tonight",
    ]
    utility = mbr_utilities(hypotheses, metric)
    assert int(np.argmax(utility)) == 0
    assert int(np.argmin(utility)) == 5
    assert utility[0] > 50 > utility[5]


@pytest.mark.parametrize("hypotheses", [[], ["alone"]])
def test_short_lists_score_zero(hypotheses):
    for metric in ("chrf", "bleu"):
        assert mbr_utilities(hypotheses, metric).tolist() == [0.0] * len(hypotheses)


def test_unknown_metric():
    with pytest.raises(ValueError, match="ter"):
        mbr_utilities(["a", "b"], "ter")


def test_score_mbr_keeps_rows_and_names_columns():
    groups = {7: LISTS["bible"][:4], 2: ["only one"], 5: LISTS["two"]}
    rows = [(sent_id, hyp_id, text) for sent_id, hyps in groups.items() for hyp_id, text in enumerate(hyps)]
    rows[0], rows[3] = rows[3], rows[0]  # hyp_ids out of order inside a sentence
    nbest = pd.DataFrame(rows, columns=["sent_id", "hyp_id", "hypothesis"], index=range(100, 100 + len(rows)))
    nbest["score"] = -1.0  # other columns are not carried over

    features = score_mbr(nbest, None, "cons", Options())

    assert list(features.columns) == [*KEYS, "cons_chrf", "cons_bleu"]
    assert features[KEYS].values.tolist() == nbest[KEYS].values.tolist()
    assert features["cons_chrf"].dtype == features["cons_bleu"].dtype == np.float64
    for metric in ("chrf", "bleu"):
        expected = np.concatenate([naive(list(g.hypothesis), metric) for _, g in nbest.groupby("sent_id", sort=False)])
        np.testing.assert_allclose(features[f"cons_{metric}"], expected, rtol=0, atol=1e-9)
    single = features[features.sent_id == 2]
    assert single[["cons_chrf", "cons_bleu"]].values.tolist() == [[0.0, 0.0]]


def test_score_mbr_metric_subset_and_empty_table():
    nbest = pd.DataFrame({"sent_id": [0, 0], "hyp_id": [0, 1], "hypothesis": ["a b c", "a b d"]})
    assert list(consensus_features(nbest, "m", metrics=("bleu",)).columns) == [*KEYS, "m_bleu"]
    empty = score_mbr(nbest.iloc[:0], None, "m", Options())
    assert list(empty.columns) == [*KEYS, "m_chrf", "m_bleu"] and len(empty) == 0
