"""The teacher knowledge base: one entry per target position of the transfer labels, sharded.

A shard directory holds `index.faiss` (the projected, L2-normalised teacher states, searched by inner
product: cosine), `entries.npz` (the same keys in float32, for training, the teacher's top-k next-token
ids and log-probs, the next token, every row's length and sent_id) and `kb.json` (what built it, its
size, memory and build time). Global entry ids run over the shards in order, so row i's position t is
entry `row_offsets[i] + t`.

Index kinds: `flat` (exact; memory N x dim x 4 bytes) and `ivfpq` (inverted lists over PQ codes of
`m` bytes per key at 8 bits: for large bases, approximate). A GPU index is used when faiss was built
with GPU support and the job has a GPU; faiss-cpu searches on the CPU.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.io import InputError

log = logging.getLogger("mtdistill")
logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # its INFO lines name every CPU build it tries

INDEXES = ("flat", "ivfpq")
INDEX_FILE, ENTRIES_FILE, META_FILE = "index.faiss", "entries.npz", "kb.json"


@dataclass
class IndexSettings:
    kind: str = "flat"
    nlist: int = 64  # ivfpq: inverted lists (k-means centroids)
    m: int = 16  # ivfpq: sub-quantizers, bytes per key at 8 bits; must divide the key dimension
    bits: int = 8  # ivfpq: bits per sub-quantizer code
    nprobe: int = 8  # ivfpq: lists visited per query
    seed: int = 1


def normalized(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def build_index(keys: np.ndarray, settings: IndexSettings, where: str = "kb"):
    """A FAISS inner-product index over `keys` (float32, normalised)."""
    import faiss

    count, dim = keys.shape
    if settings.kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif settings.kind == "ivfpq":
        if dim % settings.m:
            raise InputError(f"config key kb.ivfpq.m: {settings.m} does not divide the key dimension {dim}")
        # k-means needs a point per centroid, and a few per PQ code
        needed = max(settings.nlist, 2**settings.bits)
        if count < needed:
            raise InputError(f"{where}: {count} keys cannot train an IVF-PQ index with nlist {settings.nlist} and "
                             f"{settings.bits}-bit codes (at least {needed}): lower kb.ivfpq.nlist/bits or use kb.index flat")
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFPQ(quantizer, dim, settings.nlist, settings.m, settings.bits, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = settings.seed
        index.pq.cp.seed = settings.seed
        index.train(keys)
        index.nprobe = settings.nprobe
    else:
        raise InputError(f"config key kb.index: {settings.kind!r} is not one of {', '.join(INDEXES)}")
    index.add(keys)
    return index


def index_bytes(index) -> int:
    import faiss

    return int(faiss.serialize_index(index).nbytes)


def on_gpu(index):
    """The index on the GPU when faiss can put it there (faiss-gpu) and torch sees one; else itself."""
    import faiss
    import torch

    if not (torch.cuda.is_available() and hasattr(faiss, "StandardGpuResources")):
        return index
    return faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)


def write_shard(outdir: Path, index, keys: np.ndarray, value_ids: np.ndarray, value_logprobs: np.ndarray,
                next_tokens: np.ndarray, row_lengths: np.ndarray, sent_ids, meta: dict) -> dict:
    """The shard's three files into `outdir` (a temporary directory the caller renames); its kb.json."""
    import faiss

    outdir.mkdir(parents=True, exist_ok=True)
    faiss.write_index(index, str(outdir / INDEX_FILE))
    np.savez(outdir / ENTRIES_FILE, keys=keys.astype(np.float32), value_ids=value_ids.astype(np.int32),
             value_logprobs=value_logprobs.astype(np.float16), next_tokens=next_tokens.astype(np.int32),
             row_lengths=np.asarray(row_lengths, dtype=np.int64), sent_ids=np.asarray(sent_ids))
    memory = {"index": index_bytes(index), "values": int(value_ids.size * 4 + value_logprobs.size * 2),
              "keys": int(keys.size * 4)}
    searched = memory["index"] + memory["values"]  # what decoding with retrieval holds
    meta = {**meta, "tokens": int(len(keys)), "rows": int(len(row_lengths)), "dim": int(keys.shape[1]),
            "values_k": int(value_ids.shape[1]), "memory_bytes": memory,
            "mb_per_million_tokens": searched / 2**20 / max(len(keys), 1) * 1e6}
    (outdir / META_FILE).write_text(json.dumps(meta, indent=1))
    return meta


class KnowledgeBase:
    """The shards of one knowledge base, searched as one."""

    def __init__(self, shards: list, indexes: list, entries: list, metas: list):
        self.shards, self.indexes, self.entries, self.metas = shards, indexes, entries, metas
        first = metas[0]
        for path, meta in zip(shards, metas):
            for key in ("dim", "values_k", "teacher", "max_len"):
                if meta[key] != first[key]:
                    raise InputError(f"{path}: {key} {meta[key]!r} differs from {shards[0]}'s {first[key]!r}")
        self.dim, self.values_k, self.teacher, self.max_len = first["dim"], first["values_k"], first["teacher"], first["max_len"]
        self.shard_sizes = np.array([meta["tokens"] for meta in metas], dtype=np.int64)
        self.shard_offsets = np.concatenate([[0], np.cumsum(self.shard_sizes)[:-1]])
        self.size = int(self.shard_sizes.sum())
        self.row_lengths = np.concatenate([e["row_lengths"] for e in entries])
        self.row_offsets = np.concatenate([[0], np.cumsum(self.row_lengths)[:-1]]).astype(np.int64)
        self.sent_ids = [s.item() for e in entries for s in e["sent_ids"]]
        self._values = None
        self._keys = None

    @classmethod
    def load(cls, shards: list) -> "KnowledgeBase":
        import faiss

        if not shards:
            raise InputError("--kb: no shard directories given")
        indexes, entries, metas = [], [], []
        for shard in map(Path, shards):
            missing = [name for name in (INDEX_FILE, ENTRIES_FILE, META_FILE) if not (shard / name).exists()]
            if missing:
                raise InputError(f"{shard}: not a knowledge-base shard (no {', '.join(missing)}; built by mtdistill.build_kb)")
            metas.append(json.loads((shard / META_FILE).read_text()))
            indexes.append(on_gpu(faiss.read_index(str(shard / INDEX_FILE))))
            entries.append(np.load(shard / ENTRIES_FILE))
        return cls([str(s) for s in shards], indexes, entries, metas)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(Q, k) inner products and global ids of the nearest entries, best first, over every shard.

        Where an approximate index finds fewer than k entries the id is -1 and the score -inf."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        scores, ids = [], []
        for index, offset in zip(self.indexes, self.shard_offsets):
            found_scores, found = index.search(queries, k)
            missing = found < 0
            scores.append(np.where(missing, -np.inf, found_scores))
            ids.append(np.where(missing, -1, found + offset))
        scores, ids = np.concatenate(scores, 1), np.concatenate(ids, 1)
        if len(self.indexes) == 1:
            return scores.astype(np.float32), ids.astype(np.int64)
        best = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, best, 1).astype(np.float32), np.take_along_axis(ids, best, 1).astype(np.int64)

    def _gathered(self, name: str) -> np.ndarray:
        return np.concatenate([e[name] for e in self.entries])

    def keys(self, ids: np.ndarray) -> np.ndarray:
        """The stored keys of these entries (float32)."""
        if self._keys is None:
            self._keys = self._gathered("keys")
        return self._keys[ids].astype(np.float32)

    def values(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The teacher's top-k next-token ids (int64) and log-probs (float32) of these entries."""
        if self._values is None:
            self._values = (self._gathered("value_ids"), self._gathered("value_logprobs"))
        return self._values[0][ids].astype(np.int64), self._values[1][ids].astype(np.float32)

    def memory_bytes(self) -> dict:
        return {name: sum(meta["memory_bytes"][name] for meta in self.metas) for name in ("index", "values", "keys")}

    def build_seconds(self) -> float:
        return float(sum(meta["build_seconds"] for meta in self.metas))
