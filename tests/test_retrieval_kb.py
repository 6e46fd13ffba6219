"""The teacher knowledge base of retrieval-augmented KD: its shards, index kinds, projection head and loss."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from mtdistill import build_kb, teacher_topk
from mtdistill.core.io import InputError
from mtdistill.retrieval import kb
from mtdistill.retrieval.projection import subsample, supervised_contrastive


def test_a_stored_key_retrieves_itself_across_shards(kb_shards):
    base = kb.KnowledgeBase.load(kb_shards)
    ids = np.arange(base.size)
    scores, found = base.search(base.keys(ids), 3)
    assert (found[:, 0] == ids).all()
    assert np.allclose(scores[:, 0], 1, atol=1e-5)
    assert (np.diff(scores, axis=1) <= 0).all()  # best first, merged over both shards
    assert set(found[:, 1:].ravel()) - set(ids) == set()


def test_the_shards_hold_every_label_position_and_teacher_topk_values(kb_shards, kd_labels, teacher_dir):
    base = kb.KnowledgeBase.load(kb_shards)
    labels = pd.read_parquet(kd_labels).dropna(subset=["label"])
    assert base.sent_ids == list(labels.sent_id)
    max_len = json.loads((kb_shards[0] / "kb.json").read_text())["max_len"]  # as build_kb truncated the labels
    topk = teacher_topk.teacher_topk(str(teacher_dir), [str(kd_labels)], "label", 8, max_len, 4096)
    assert list(base.row_lengths) == [len(ids) for ids in topk["ids"]] and base.size == sum(base.row_lengths)
    row = 3
    entries = base.row_offsets[row] + np.arange(base.row_lengths[row])
    ids, logprobs = base.values(entries)
    assert (ids == topk["ids"][row].numpy()).all()
    assert np.allclose(logprobs, topk["logprobs"][row].float().numpy(), atol=1e-3)
    meta = [json.loads((shard / "kb.json").read_text()) for shard in kb_shards]
    assert [m["tokens"] for m in meta] == list(base.shard_sizes)
    # a flat index stores every key in float32
    assert base.memory_bytes()["index"] >= base.size * base.dim * 4 and base.build_seconds() > 0
    assert all(m["mb_per_million_tokens"] > 0 and m["index"]["kind"] == "flat" for m in meta)


def test_ivfpq_keys_are_found_approximately_in_a_fraction_of_the_memory(tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(32, 64))
    keys = kb.normalized(centres[rng.integers(0, 32, 4096)] + 0.3 * rng.normal(size=(4096, 64)))
    settings = kb.IndexSettings("ivfpq", nlist=16, m=16, bits=8, nprobe=16)
    ivfpq, flat = kb.build_index(keys, settings), kb.build_index(keys, kb.IndexSettings("flat"))
    _, found = ivfpq.search(keys[:500], 10)
    assert np.mean([i in row for i, row in enumerate(found)]) > 0.9  # each key among its 10 nearest
    assert kb.index_bytes(ivfpq) < kb.index_bytes(flat) / 5


def test_index_settings_a_base_cannot_use_are_named():
    keys = kb.normalized(np.random.default_rng(0).normal(size=(100, 64)))
    with pytest.raises(InputError, match=r"kb\.ivfpq\.m: 6 does not divide the key dimension 64"):
        kb.build_index(keys, kb.IndexSettings("ivfpq", m=6))
    with pytest.raises(InputError, match=r"shard 3: 100 keys cannot train an IVF-PQ index with nlist 64"):
        kb.build_index(keys, kb.IndexSettings("ivfpq", nlist=64, m=8), "shard 3")


def test_a_directory_that_is_no_shard_is_named(tmp_path):
    with pytest.raises(InputError, match=r"not a knowledge-base shard \(no index\.faiss"):
        kb.KnowledgeBase.load([tmp_path])


def test_the_contrastive_loss_matches_a_hand_computation():
    # anchors 0 and 2 share the next token; 1 has no positive in the batch and does not count
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]])
    labels = torch.tensor([5, 7, 5])
    # anchor 0: s(0,1) = 0, s(0,2) = 1 -> -log(e^{1/t} / (e^0 + e^{1/t})), the same for anchor 2
    t = 0.5
    expected = -math.log(math.exp(1 / t) / (1 + math.exp(1 / t)))
    assert supervised_contrastive(z, labels, t).item() == pytest.approx(expected, rel=1e-6)
    assert supervised_contrastive(z, torch.tensor([1, 2, 3]), t).item() == 0.0  # no positives at all


def test_frequent_next_tokens_are_subsampled():
    tokens = np.array([0] * 100 + [1] * 3 + [2])
    kept = subsample(tokens, 5, np.random.default_rng(0))
    assert sorted(np.bincount(tokens[kept]).tolist()) == [1, 3, 5]
    assert (kept == subsample(tokens, 5, np.random.default_rng(0))).all()


def test_build_kb_is_deterministic_and_refuses_a_bad_shard_number(kb_shards, kd_labels, teacher_dir, tmp_path, capsys):
    again = tmp_path / "again"
    argv = ["--teacher", str(teacher_dir), "--projection", str(kb_shards[0].parent / "projection.pt"),
            "--labels", str(kd_labels), "--shard", "1", "--num-shards", "2", "--values-k", "8"]
    assert build_kb.main([*argv, "--out", str(again)]) == 0
    for name in ("keys", "value_ids", "value_logprobs", "next_tokens"):
        assert (np.load(again / kb.ENTRIES_FILE)[name] == np.load(kb_shards[1] / kb.ENTRIES_FILE)[name]).all()
    with pytest.raises(SystemExit):
        build_kb.main([*argv[:-4], "--shard", "2", "--num-shards", "2", "--out", str(tmp_path / "bad")])
    assert "--shard must be in [0, 2)" in capsys.readouterr().err
