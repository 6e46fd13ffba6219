"""COMET scorer on tiny checkpoints built at test time: QE and reference-based, loading and errors."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from comet_fixture import PAIRS, TEXTS, build_tiny_comet
from mtdistill.core.io import InputError
from mtdistill.scorers import Options
from mtdistill.scorers.comet import load_comet, score_comet


@pytest.fixture(scope="session")
def comet_root(tmp_path_factory):
    return tmp_path_factory.mktemp("comet")


@pytest.fixture(scope="session")
def qe_checkpoint(comet_root):
    return build_tiny_comet(comet_root / "qe", TEXTS, "qe")


@pytest.fixture(scope="session")
def ref_checkpoint(comet_root):
    return build_tiny_comet(comet_root / "ref", TEXTS, "ref")


def tables(sources: int = 5, hyps: int = 4, references: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """German sources, `hyps` English hypotheses each (some wrong), sent_ids deliberately unsorted."""
    picked = PAIRS[::7][:sources]
    sent_ids = [10 * (sources - i) for i in range(sources)]
    sentences = pd.DataFrame({"sent_id": sent_ids, "source": [de for de, _ in picked],
                              "target": [en for _, en in picked] if references else None})
    rows = [(sid, h, en if h == 0 else PAIRS[(7 * i + 3 * h) % len(PAIRS)][1])
            for i, (sid, (_, en)) in enumerate(zip(sent_ids, picked)) for h in range(hyps)]
    return pd.DataFrame(rows, columns=["sent_id", "hyp_id", "hypothesis"]), sentences


def assert_scored(scores: pd.DataFrame, nbest: pd.DataFrame, column: str) -> None:
    assert list(scores.columns) == ["sent_id", "hyp_id", column]
    assert scores[["sent_id", "hyp_id"]].equals(nbest[["sent_id", "hyp_id"]].reset_index(drop=True))
    assert scores[column].dtype == float and np.isfinite(scores[column]).all()
    assert scores[column].nunique() > 1  # a real model, not a constant


def comet(nbest: pd.DataFrame, sentences: pd.DataFrame, name: str, checkpoint: str, **options) -> pd.DataFrame:
    """The comet kind with `checkpoint`, 32 segments per batch, on the CPU unless `options` say otherwise."""
    return score_comet(nbest, sentences, name, Options(**{"model": checkpoint, "batch_size": 32, "gpus": 0, **options}))


def test_qe_scores_every_hypothesis_in_order(qe_checkpoint):
    nbest, sentences = tables(references=False)
    scores = comet(nbest, sentences, "kiwi", str(qe_checkpoint))
    assert len(scores) == len(nbest) == 20
    assert_scored(scores, nbest, "kiwi_score")
    assert ((scores.kiwi_score > 0) & (scores.kiwi_score < 1)).all()  # sigmoid head, as CometKiwi


def test_qe_ignores_references(qe_checkpoint):
    nbest, sentences = tables()
    _, mono = tables(references=False)
    with_refs = comet(nbest, sentences, "kiwi", str(qe_checkpoint))
    np.testing.assert_array_equal(with_refs.kiwi_score, comet(nbest, mono, "kiwi", str(qe_checkpoint)).kiwi_score)


def test_reference_based_scores_with_references(ref_checkpoint):
    nbest, sentences = tables()
    model_dir = ref_checkpoint.parents[1]  # a model directory works as well as the .ckpt file
    scores = comet(nbest, sentences, "comet22", str(model_dir))
    assert_scored(scores, nbest, "comet22_score")
    # the reference enters the score: swapping in other references changes it
    other = sentences.assign(target=sentences.target.iloc[::-1].to_list())
    assert not np.allclose(scores.comet22_score, comet(nbest, other, "comet22", str(model_dir)).comet22_score)


def test_reference_based_without_references_fails(ref_checkpoint):
    nbest, mono = tables(references=False)
    with pytest.raises(InputError, match="'comet22' is reference-based.*no references"):
        comet(nbest, mono, "comet22", str(ref_checkpoint))
    with pytest.raises(InputError, match="'comet22' is reference-based"):
        comet(nbest, mono.drop(columns="target"), "comet22", str(ref_checkpoint))


def test_missing_checkpoint_names_scorer_and_path(tmp_path):
    missing = tmp_path / "nowhere" / "model.ckpt"
    with pytest.raises(InputError, match=rf"'kiwi'.*{missing}"):
        load_comet(str(missing), "kiwi")
    nbest, sentences = tables()
    with pytest.raises(InputError, match=rf"'kiwi'.*{tmp_path / 'nowhere'}"):
        comet(nbest, sentences, "kiwi", str(tmp_path / "nowhere"))


def test_more_than_one_gpu_is_refused(qe_checkpoint):
    nbest, sentences = tables()
    with pytest.raises(InputError, match="'kiwi'.*one GPU"):
        comet(nbest, sentences, "kiwi", str(qe_checkpoint), gpus=2)


def test_unreadable_checkpoint_names_scorer_path_and_cause(tmp_path, qe_checkpoint):
    broken = tmp_path / "broken" / "checkpoints" / "model.ckpt"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match=rf"'kiwi': cannot load COMET checkpoint {broken}: \w+"):
        load_comet(str(broken), "kiwi")


def test_moved_encoder_loads_with_override(tmp_path):
    checkpoint = build_tiny_comet(tmp_path / "built", TEXTS, "qe")
    nbest, sentences = tables(sources=2, hyps=3, references=False)
    before = comet(nbest, sentences, "kiwi", str(checkpoint)).kiwi_score
    moved = shutil.move(tmp_path / "built" / "encoder", tmp_path / "elsewhere")
    with pytest.raises(InputError, match=rf"'kiwi': cannot load COMET checkpoint {checkpoint}"):
        load_comet(str(checkpoint), "kiwi")
    after = comet(nbest, sentences, "kiwi", str(checkpoint), encoder=str(moved)).kiwi_score
    np.testing.assert_array_equal(before, after)
    with pytest.raises(InputError, match="'kiwi'.*encoder directory"):
        load_comet(str(checkpoint), "kiwi", encoder=str(tmp_path / "gone"))


def test_hub_id_encoder_needs_local_override(tmp_path, ref_checkpoint):
    """Unbabel's checkpoints name their encoder by hub id; offline, a local directory replaces it."""
    shutil.copytree(ref_checkpoint.parents[1], tmp_path / "comet22")
    checkpoint = tmp_path / "comet22" / "checkpoints" / "model.ckpt"
    state = torch.load(checkpoint, weights_only=True)
    state["hyper_parameters"]["pretrained_model"] = "mtdistill-tests/xlm-roberta-tiny"  # as "xlm-roberta-large", never cached
    torch.save(state, checkpoint)
    (tmp_path / "comet22" / "hparams.yaml").write_text(yaml.safe_dump(state["hyper_parameters"]), encoding="utf-8")
    with pytest.raises(InputError, match="'comet22': cannot load COMET checkpoint.*local XLM-R tokenizer"):
        load_comet(str(checkpoint), "comet22")
    nbest, sentences = tables(sources=2, hyps=3)
    expected = comet(nbest, sentences, "comet22", str(ref_checkpoint)).comet22_score
    encoder = str(ref_checkpoint.parents[2] / "encoder")
    np.testing.assert_array_equal(expected, comet(nbest, sentences, "comet22", str(checkpoint), encoder=encoder).comet22_score)


@pytest.mark.parametrize("kind", ["qe", "ref"])
def test_scores_are_deterministic(kind, qe_checkpoint, ref_checkpoint):
    checkpoint = str(qe_checkpoint if kind == "qe" else ref_checkpoint)
    nbest, sentences = tables(sources=6, hyps=5)
    first = comet(nbest, sentences, "c", checkpoint, batch_size=32).c_score
    np.testing.assert_array_equal(first, comet(nbest, sentences, "c", checkpoint, batch_size=32).c_score)
    np.testing.assert_allclose(first, comet(nbest, sentences, "c", checkpoint, batch_size=3).c_score, atol=1e-6, rtol=0)
