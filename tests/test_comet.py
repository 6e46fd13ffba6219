"""COMET scorer on tiny checkpoints built at test time: QE and reference-based, loading and errors.

COMET has its own environment: the checkpoints are built and every hypothesis is scored there, by
the step the workflow runs (`<COMET python> -m mtdistill.score --kind comet`, comet_fixture.run_comet);
the tables it writes are checked here. The checks that come before COMET is imported (paths, GPUs)
run in this process."""

from __future__ import annotations

import itertools
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from comet_fixture import PAIRS, build_checkpoints, run_comet
from mtdistill.core.io import InputError
from mtdistill.scorers import Options
from mtdistill.scorers.comet import load_comet, score_comet

RUNS = itertools.count()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict:
    return build_checkpoints(tmp_path_factory.mktemp("comet"))


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("comet_scores")


def tables(sources: int = 5, hyps: int = 4, references: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """German sources, `hyps` English hypotheses each (some wrong), sent_ids deliberately unsorted."""
    picked = PAIRS[::7][:sources]
    sent_ids = [10 * (sources - i) for i in range(sources)]
    sentences = pd.DataFrame({"sent_id": sent_ids, "source": [de for de, _ in picked],
                              "target": [en for _, en in picked] if references else None})
    rows = [(sid, h, en if h == 0 else PAIRS[(7 * i + 3 * h) % len(PAIRS)][1])
            for i, (sid, (_, en)) in enumerate(zip(sent_ids, picked)) for h in range(hyps)]
    return pd.DataFrame(rows, columns=["sent_id", "hyp_id", "hypothesis"]), sentences


def score(work, name: str, checkpoint, nbest: pd.DataFrame, sentences: pd.DataFrame, *options, check: bool = True):
    """The comet kind's feature table, as rule score runs it in the COMET environment (its CPU here);
    with check=False, the finished process (for the errors)."""
    run = work / str(next(RUNS))
    run.mkdir()
    nbest.to_parquet(run / "nbest.parquet")
    sentences.to_parquet(run / "sentences.parquet")
    result = run_comet("-m", "mtdistill.score", "--name", name, "--kind", "comet", "--model", checkpoint,
                       "--nbest", run / "nbest.parquet", "--sources", run / "sentences.parquet", "--batch-size", "32",
                       *options, "--out", run / "features.parquet", "--cost-out", run / "cost.json", check=check)
    return result if not check else pd.read_parquet(run / "features.parquet")


def assert_fails(result, message: str) -> None:
    """A step's one-line error (exit 2), not a traceback."""
    assert result.returncode == 2, result.stderr[-3000:]
    error = next(line for line in result.stderr.splitlines() if line.startswith("mtdistill: error: "))
    assert re.search(message, error), error


def assert_scored(scores: pd.DataFrame, nbest: pd.DataFrame, column: str) -> None:
    assert list(scores.columns) == ["sent_id", "hyp_id", column]
    assert scores[["sent_id", "hyp_id"]].equals(nbest[["sent_id", "hyp_id"]].reset_index(drop=True))
    assert scores[column].dtype == float and np.isfinite(scores[column]).all()
    assert scores[column].nunique() > 1  # a real model, not a constant


@pytest.fixture(scope="module")
def qe_scores(work, checkpoints) -> pd.Series:
    return score(work, "kiwi", checkpoints["qe"], *tables()).kiwi_score


@pytest.fixture(scope="module")
def ref_scores(work, checkpoints) -> pd.Series:
    model_dir = checkpoints["ref"].parents[1]  # a model directory works as well as the .ckpt file
    return score(work, "comet22", model_dir, *tables()).comet22_score


def test_qe_scores_every_hypothesis_in_order(work, checkpoints, qe_scores):
    nbest, sentences = tables(references=False)
    scores = score(work, "kiwi", checkpoints["qe"], nbest, sentences)
    assert len(scores) == len(nbest) == 20
    assert_scored(scores, nbest, "kiwi_score")
    assert ((scores.kiwi_score > 0) & (scores.kiwi_score < 1)).all()  # sigmoid head, as CometKiwi
    # QE ignores references: the same scores with them (and from another process: deterministic)
    np.testing.assert_array_equal(qe_scores, scores.kiwi_score)


def test_reference_based_scores_with_references(work, checkpoints, ref_scores):
    nbest, sentences = tables()
    assert_scored(pd.DataFrame({**nbest[["sent_id", "hyp_id"]], "comet22_score": ref_scores}), nbest, "comet22_score")
    # the reference enters the score: swapping in other references changes it
    other = sentences.assign(target=sentences.target.iloc[::-1].to_list())
    assert not np.allclose(ref_scores, score(work, "comet22", checkpoints["ref"], nbest, other).comet22_score)


@pytest.mark.parametrize("targets", ["empty", "no column"])
def test_reference_based_without_references_fails(work, checkpoints, targets):
    nbest, mono = tables(references=False)
    if targets == "no column":
        mono = mono.drop(columns="target")
    assert_fails(score(work, "comet22", checkpoints["ref"], nbest, mono, check=False),
                 "'comet22' is reference-based and this set has no references")


def test_missing_checkpoint_names_scorer_and_path(tmp_path):
    missing = tmp_path / "nowhere" / "model.ckpt"
    with pytest.raises(InputError, match=rf"'kiwi'.*{missing}"):
        load_comet(str(missing), "kiwi")
    nbest, sentences = tables()
    with pytest.raises(InputError, match=rf"'kiwi'.*{tmp_path / 'nowhere'}"):
        score_comet(nbest, sentences, "kiwi", Options(model=str(tmp_path / "nowhere"), gpus=0))


def test_more_than_one_gpu_is_refused(tmp_path):
    nbest, sentences = tables()
    with pytest.raises(InputError, match="'kiwi'.*one GPU"):  # before the checkpoint is even looked at
        score_comet(nbest, sentences, "kiwi", Options(model=str(tmp_path / "model.ckpt"), gpus=2))


def test_unreadable_checkpoint_names_scorer_path_and_cause(work, tmp_path):
    broken = tmp_path / "broken" / "checkpoints" / "model.ckpt"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"not a checkpoint")
    result = score(work, "kiwi", broken, *tables(), check=False)
    assert_fails(result, rf"'kiwi': cannot load COMET checkpoint {broken}: \w+")
    assert "ModuleNotFoundError" not in result.stderr  # COMET itself read it


def copy_naming_encoder(checkpoint, copy, encoder: str):
    """A copy of a checkpoint's model directory whose stored encoder (pretrained_model) is `encoder`."""
    shutil.copytree(checkpoint.parents[1], copy)
    checkpoint = copy / "checkpoints" / "model.ckpt"
    state = torch.load(checkpoint, weights_only=True)
    state["hyper_parameters"]["pretrained_model"] = encoder
    torch.save(state, checkpoint)
    (copy / "hparams.yaml").write_text(yaml.safe_dump(state["hyper_parameters"]), encoding="utf-8")
    return checkpoint


def test_moved_encoder_loads_with_override(work, tmp_path, checkpoints, qe_scores):
    """A checkpoint whose encoder directory moved after it was built."""
    shutil.copytree(checkpoints["qe"].parents[2] / "encoder", tmp_path / "built" / "encoder")
    checkpoint = copy_naming_encoder(checkpoints["qe"], tmp_path / "built" / "comet", str(tmp_path / "built" / "encoder"))
    moved = shutil.move(tmp_path / "built" / "encoder", tmp_path / "elsewhere")
    assert_fails(score(work, "kiwi", checkpoint, *tables(), check=False),
                 rf"'kiwi': cannot load COMET checkpoint {checkpoint}.*local XLM-R tokenizer")
    np.testing.assert_array_equal(qe_scores, score(work, "kiwi", checkpoint, *tables(), "--encoder", moved).kiwi_score)
    with pytest.raises(InputError, match="'kiwi'.*encoder directory"):
        load_comet(str(checkpoint), "kiwi", encoder=str(tmp_path / "gone"))


def test_hub_id_encoder_needs_local_override(work, tmp_path, checkpoints, ref_scores):
    """Unbabel's checkpoints name their encoder by hub id; offline, a local directory replaces it."""
    # as "xlm-roberta-large", never cached
    checkpoint = copy_naming_encoder(checkpoints["ref"], tmp_path / "comet22", "mtdistill-tests/xlm-roberta-tiny")
    assert_fails(score(work, "comet22", checkpoint, *tables(), check=False),
                 "'comet22': cannot load COMET checkpoint.*local XLM-R tokenizer")
    encoder = checkpoints["ref"].parents[2] / "encoder"
    np.testing.assert_array_equal(ref_scores, score(work, "comet22", checkpoint, *tables(), "--encoder", encoder).comet22_score)


@pytest.mark.parametrize("kind", ["qe", "ref"])
def test_scores_do_not_depend_on_the_batch_size(work, checkpoints, qe_scores, ref_scores, kind):
    """Scores are deterministic (the tests above compare runs of two processes exactly) and batching
    changes them by float rounding at most."""
    expected, name = (qe_scores, "kiwi") if kind == "qe" else (ref_scores, "comet22")
    scores = score(work, name, checkpoints[kind], *tables(), "--batch-size", "3")
    np.testing.assert_allclose(expected, scores[f"{name}_score"], atol=1e-6, rtol=0)
