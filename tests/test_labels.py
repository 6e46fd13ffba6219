"""The degenerate-hypothesis filter, Seq-Inter's two forms and the label diagnostics, on hand-made tables."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from mtdistill import select_labels
from mtdistill.core.io import InputError
from mtdistill.labels.quality import FilterThresholds, degenerate_reasons, filter_nbest, label_diagnostics

SENTENCES = pd.DataFrame({
    "sent_id": ["s1", "s2", "s3"],
    "source": ["er ging nach hause zu seiner frau", "und der könig sprach zu dem volk", "a b c d"],
    "target": ["he went home to his wife", "and the king spoke to the people", "a b c d"],
    "references": [["he went back home to his wife"], ["and the king spoke to the people"], ["a b c d"]],
})
# (sent_id, hyp_id, hypothesis, from_l2r, from_r2l, mbr utility, reranker feature); * = degenerate
NBEST = pd.DataFrame([
    ("s1", 0, "he went home home home", 1, 0, 0.9, 9.0),  # * repeated unigram
    ("s1", 1, "he went home to his wife", 1, 1, 0.5, 1.0),
    ("s1", 2, "he went to his house", 1, 0, 0.1, 5.0),
    ("s1", 3, "he went back home to his wife", 0, 1, 0.8, 2.0),
    ("s2", 0, "and the king spoke to the people", 1, 0, 0.5, 7.0),
    ("s2", 1, "Und der König sprach zu dem Volk", 1, 0, 0.9, 8.0),  # * source copy
    ("s2", 2, "and the king said to the people", 1, 1, 0.6, 1.0),
    ("s2", 3, "and the king", 0, 1, 0.8, 9.0),  # * 3/7 words
    ("s3", 0, "", 1, 0, 0.9, 9.0),  # * empty
    ("s3", 1, "scoooooooo went away", 1, 0, 0.5, 1.0),  # * character run
    ("s3", 2, "x", 1, 0, 0.1, 5.0),  # * 1/4 words
    ("s3", 3, "A B C D", 0, 1, 0.8, 2.0),  # * source copy
], columns=["sent_id", "hyp_id", "hypothesis", "from_l2r", "from_r2l", "mbr_chrf", "f"])
DEGENERATE = {("s1", 0), ("s2", 1), ("s2", 3), ("s3", 0), ("s3", 1), ("s3", 2), ("s3", 3)}
EXPECTED = {"top1": {"s1": 1, "s2": 0}, "seqinter": {"s1": 1, "s2": 0}, "rerank": {"s1": 2, "s2": 0},
            "mbr": {"s1": 3, "s2": 2}}


@pytest.fixture
def inputs(tmp_path):
    """The n-best shard (with a beam score, as decode writes), its feature tables and reranker weights."""
    nbest = tmp_path / "nbest.parquet"
    NBEST[["sent_id", "hyp_id", "hypothesis", "from_l2r", "from_r2l"]].assign(score=-1.0).to_parquet(nbest)
    mbr, rerank = tmp_path / "mbr.parquet", tmp_path / "f.parquet"
    NBEST[["sent_id", "hyp_id", "mbr_chrf"]].to_parquet(mbr)
    NBEST[["sent_id", "hyp_id", "f"]].to_parquet(rerank)
    weights = tmp_path / "weights.json"
    weights.write_text(json.dumps({"features": ["f"], "weights": [1.0], "mean": [0.0], "std": [1.0]}))
    return {"nbest": nbest, "mbr": mbr, "rerank": rerank, "weights": weights}


def choose(strategy: str, inputs: dict, sentences: pd.DataFrame = SENTENCES, **options):
    features = {"rerank": [inputs["rerank"]], "mbr": [inputs["mbr"]]}.get(strategy, [])
    return select_labels.label(strategy, sentences, [inputs["nbest"]], features, inputs["weights"], **options)


def picks(labels: pd.DataFrame) -> dict:
    return {s: int(h) for s, h in zip(labels.sent_id, labels.hyp_id)}


def test_degenerate_examples():
    cases = {  # hypothesis, source -> the reasons it is flagged for
        ("two hundred hundred hundred", "zweihundert hundert"): {"repeated_ngram"},
        ("the king and the people", "der könig und das volk"): set(),
        ("a b a b a b", "w x y z"): {"repeated_ngram"},  # a bigram 3 times in a row
        ("a b a b", "w x y z"): set(),  # twice is allowed
        ("scoooooooo", "so"): {"char_run"},
        ("Hmm", "hm"): set(),
        ("and then ...", "und dann ..."): set(),  # 3 dots are allowed, 4 are not
        ("and then ....", "und dann ...."): {"char_run"},
        ("10000 men", "zehntausend männer"): set(),  # digits are not stutter
        ("The  House .", "the house ."): {"source_copy"},
        ("x", "eins zwei drei"): {"length_ratio"},  # 1/3 < 0.5
        ("one two three four five", "eins zwei"): {"length_ratio"},  # 5/2 > 2
        ("one two three four", "eins zwei"): set(),  # 2 is inside the bounds
        ("one", "eins zwei"): set(),  # so is 0.5
        ("  ", "eins"): {"empty"},  # only as empty: not a copy, no ratio
        (None, "eins"): {"empty"},
    }
    reasons = degenerate_reasons([h for h, _ in cases], [s for _, s in cases])
    for row, expected in zip(reasons.itertuples(index=False), cases.values()):
        assert {r for r, flagged in row._asdict().items() if flagged} == expected, row


def test_zero_or_none_disables_a_check():
    hypotheses = ["hundred hundred hundred", "scoooo", "x", "eins zwei drei", "one two three four five"]
    sources = ["a b c", "a", "a b c", "eins zwei drei", "a b"]
    off = FilterThresholds(max_ngram=0, max_repeats=None, max_char_run=0, min_length_ratio=None, max_length_ratio=0,
                           drop_source_copies=False)
    assert not degenerate_reasons(hypotheses, sources, off).any().any()
    assert degenerate_reasons(hypotheses, sources, FilterThresholds(max_length_ratio=None)).any(axis=1).tolist() == [
        True, True, True, True, False]


def test_every_strategy_drops_the_same_degenerate_hypotheses(inputs):
    l2r_counts = {"hypotheses": 9, "hypotheses_dropped": 5, "sentences": 3, "sentences_dropped": 1,
                  "dropped_by_reason": {"empty": 1, "source_copy": 1, "length_ratio": 1, "repeated_ngram": 1, "char_run": 1}}
    merged_counts = {"hypotheses": 12, "hypotheses_dropped": 7, "sentences": 3, "sentences_dropped": 1,
                     "dropped_by_reason": {"empty": 1, "source_copy": 2, "length_ratio": 2, "repeated_ngram": 1, "char_run": 1}}
    for strategy, expected_picks in EXPECTED.items():
        labels, _, counts = choose(strategy, inputs)
        assert picks(labels) == expected_picks, strategy  # s3: every candidate degenerate
        assert not DEGENERATE & set(zip(labels.sent_id, labels.hyp_id)), strategy
        merged = labels.merge(NBEST, on=["sent_id", "hyp_id"], suffixes=("", "_nbest"))
        assert (merged.label == merged.hypothesis).all() and (labels.strategy == strategy).all()
        assert merged.from_l2r.tolist() == merged.from_l2r_nbest.tolist()
        assert merged.from_r2l.tolist() == merged.from_r2l_nbest.tolist()
        expected = l2r_counts if strategy in ("top1", "seqinter") else merged_counts
        assert {k: counts[k] for k in expected} == expected, strategy
        assert counts["dropped_sent_ids"] == ["s3"]
        assert counts["candidates"] == ("l2r" if strategy in ("top1", "seqinter") else "merged")
    # mbr's and the reranker's best (s1's loop, s2's copy) are degenerate: without the filter they win
    off = FilterThresholds(0, 0, 0, 0, 0, False)
    assert picks(choose("mbr", inputs, thresholds=off)[0])["s1"] == 0
    assert picks(choose("rerank", inputs, thresholds=off)[0])["s2"] == 3
    # ref is not filtered: every sentence keeps its reference
    ref, nbest, counts = choose("ref", inputs)
    assert list(ref.label) == list(SENTENCES.target) and (ref.hyp_id == -1).all() and nbest is None and counts is None


def test_top1_without_provenance_takes_the_lowest_remaining_hyp_id(tmp_path):
    nbest = tmp_path / "nbest.parquet"
    NBEST[NBEST.sent_id == "s1"][["sent_id", "hyp_id", "hypothesis"]].to_parquet(nbest)
    labels = select_labels.select("top1", SENTENCES[SENTENCES.sent_id == "s1"], [nbest])
    assert labels.hyp_id.tolist() == [1] and "from_l2r" not in labels


def test_sentences_missing_from_the_nbest_are_still_an_error(inputs):
    extra = pd.concat([SENTENCES, SENTENCES.iloc[:1].assign(sent_id="s9")], ignore_index=True)
    with pytest.raises(InputError, match="1 transfer sentences have no hypothesis"):
        choose("top1", inputs, extra)


def test_seqinter_paper_form_and_merged_all_pick_differently(tmp_path):
    sentences = pd.DataFrame({"sent_id": ["s1"], "source": ["der könig ging in die stadt davids"],
                              "target": ["the king went to the city of david"],
                              "references": [["the ruler travelled into jerusalem today"]]})
    nbest = tmp_path / "nbest.parquet"
    pd.DataFrame([
        ("s1", 0, "the king went to a town", 1, 0),
        ("s1", 1, "the king went to the town", 1, 0),  # the teacher's closest to the target
        ("s1", 2, "the ruler went into the city", 1, 1),
        ("s1", 3, "the ruler travelled into jerusalem today", 0, 1),  # the second reference, found only by R2L
    ], columns=["sent_id", "hyp_id", "hypothesis", "from_l2r", "from_r2l"]).to_parquet(nbest)

    def pick(candidates, references):
        return select_labels.select("seqinter", sentences, [nbest], seqinter_candidates=candidates,
                                    seqinter_references=references).hyp_id.item()

    assert pick("l2r", "first") == 1 == select_labels.select("seqinter", sentences, [nbest]).hyp_id.item()  # default
    assert pick("merged", "all") == 3
    assert pick("merged", "first") == 1  # the references decide ...
    assert pick("l2r", "all") != 3  # ... and so do the candidates


def test_filter_counts_and_diagnostics_on_a_hand_made_table():
    sentences = pd.DataFrame({"sent_id": [f"s{i}" for i in range(1, 7)],
                              "source": ["a b c d", "a b", "a b c d e", "a b", "a b c d", "a b"]})
    labels = pd.DataFrame({"sent_id": ["s1", "s2", "s3", "s4", "s5"],
                           "source": ["a b c d", "a b", "a b c d e", "a b", "a b c d"],
                           "label": ["w x y z", "A B", "so many hundred hundred hundred", "scooooore", ""]})
    nbest = pd.DataFrame({"sent_id": ["s1", "s2", "s3", "s4", "s5", "s6", "s1"], "hyp_id": [0, 0, 0, 0, 0, 0, 1],
                          "hypothesis": ["w x y z", "p q", "so many hundred hundred hundred", "score", "", "u v", "p"]})
    kept, counts = filter_nbest(nbest, dict(zip(sentences.sent_id, sentences.source)), FilterThresholds())
    assert counts == {"thresholds": {"max_ngram": 4, "max_repeats": 2, "max_char_run": 3, "min_length_ratio": 0.5,
                                     "max_length_ratio": 2.0, "drop_source_copies": True},
                      "hypotheses": 7, "hypotheses_dropped": 3, "sentences": 6, "sentences_dropped": 2,
                      "dropped_by_reason": {"empty": 1, "source_copy": 0, "length_ratio": 1, "repeated_ngram": 1,
                                            "char_run": 0},
                      "dropped_sent_ids": ["s3", "s5"]}
    assert list(zip(kept.sent_id, kept.hyp_id)) == [("s1", 0), ("s2", 0), ("s4", 0), ("s6", 0)]
    diagnostics = label_diagnostics(labels, sentences, nbest, counts)
    assert diagnostics.pop("length_ratio") == pytest.approx((1 + 1 + 1 + 0.5 + 0) / 5)
    assert diagnostics == {"sentences": 6, "labels": 5, "differs_from_top1": 0.4,  # s2, s4
                           "source_copy_rate": 0.2, "empty_rate": 0.2, "repeated_ngram_rate": 0.2, "char_run_rate": 0.2,
                           "filter": counts}
    assert label_diagnostics(labels, sentences)["differs_from_top1"] is None
    off = label_diagnostics(labels, sentences, thresholds=FilterThresholds(max_ngram=0, max_char_run=None))
    assert off["repeated_ngram_rate"] is None and off["char_run_rate"] is None and off["source_copy_rate"] == 0.2


def test_command_line_writes_labels_and_diagnostics(inputs, tmp_path):
    sentences = tmp_path / "bitext.parquet"
    SENTENCES.to_parquet(sentences)
    common = ["--sentences", str(sentences), "--nbest", str(inputs["nbest"])]
    out, diagnostics = tmp_path / "labels.parquet", tmp_path / "diagnostics.json"
    assert select_labels.main(["--strategy", "mbr", *common, "--features", str(inputs["mbr"]), "--out", str(out),
                               "--diagnostics", str(diagnostics), "--set-name", "bitext"]) == 0
    assert picks(pd.read_parquet(out)) == EXPECTED["mbr"]
    written = json.loads(diagnostics.read_text())
    assert (written["strategy"], written["set"], written["sentences"], written["labels"]) == ("mbr", "bitext", 3, 2)
    assert written["differs_from_top1"] == 1.0 and written["filter"]["sentences_dropped"] == 1
    # looser thresholds: source copies kept, no ratio or loop checks; s1's loop and the copies win
    assert select_labels.main(["--strategy", "mbr", *common, "--features", str(inputs["mbr"]), "--out", str(out),
                               "--keep-source-copies", "--min-length-ratio", "0", "--max-length-ratio", "none",
                               "--max-ngram", "0", "--max-char-run", "3", "--max-repeats", "2"]) == 0
    assert picks(pd.read_parquet(out)) == {"s1": 0, "s2": 1, "s3": 3}
    # ref: every sentence, the n-best list only for the diagnostics
    assert select_labels.main(["--strategy", "ref", *common, "--out", str(out), "--diagnostics", str(diagnostics)]) == 0
    written = json.loads(diagnostics.read_text())
    assert len(pd.read_parquet(out)) == 3 and written["filter"] is None and written["set"] is None
    assert written["differs_from_top1"] == pytest.approx(2 / 3)  # s1's loop and s3's empty top-1
    assert select_labels.main(["--strategy", "seqinter", *common, "--out", str(out), "--diagnostics", str(diagnostics),
                               "--seqinter-candidates", "merged", "--seqinter-references", "all"]) == 0
    written = json.loads(diagnostics.read_text())
    assert (written["seqinter_candidates"], written["seqinter_references"], written["filter"]["hypotheses"]) == (
        "merged", "all", 12)
