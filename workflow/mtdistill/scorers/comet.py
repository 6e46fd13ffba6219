"""COMET scores for n-best hypotheses, from any COMET checkpoint on disk, never from the hub.

Reference-free QE checkpoints (CometKiwi's UnifiedMetric over (mt, src), ReferencelessRegression)
score any set; reference-based ones (RegressionMetric, COMET-22) need the set's targets as
references. The checkpoint keeps the path or hub id of its XLM-R tokenizer+config as
`pretrained_model`; `encoder` points it at a local copy instead (Unbabel's checkpoints name
`xlm-roberta-large` or `microsoft/infoxlm-large`; our own ones name a directory that may have moved).
`segments` and `predict` also serve the test-set COMET of mtdistill.comet_evaluate.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd
import torch
import yaml

from ..core.io import InputError
from ..core.nbest import KEYS

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a hub id would otherwise retry for minutes
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def quiet_lightning() -> None:
    # predict() builds a Trainer each call, which logs GPU/TPU availability at INFO; warnings still show
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning.fabric", "comet"):
        logging.getLogger(name).setLevel(logging.WARNING)


def load_comet(checkpoint: str, name: str, encoder: str | None = None, label: str | None = None,
               encoder_key: str = "give the scorer a local XLM-R tokenizer+config directory as its encoder"):
    """A COMET model from a `.ckpt` file or a model directory holding `checkpoints/model.ckpt`.

    Errors start with `label` (default: scorer `name`); `encoder_key` says how to name a local encoder."""
    label = label or f"scorer {name!r}"
    path = Path(checkpoint)
    if path.is_dir():
        path = path / "checkpoints" / "model.ckpt"
    if not path.is_file():
        raise InputError(f"{label}: COMET checkpoint {path} not found")
    if encoder is not None and not Path(encoder).is_dir():
        raise InputError(f"{label}: COMET encoder directory {encoder} not found")
    quiet_lightning()
    try:
        from comet import load_from_checkpoint
        from comet.models import str2model

        if encoder is None:
            return load_from_checkpoint(str(path), local_files_only=True)
        # hparams.yaml only picks the class; keyword arguments override the stored hparams
        hparams = yaml.safe_load((path.parents[1] / "hparams.yaml").read_text(encoding="utf-8"))
        overrides = {"pretrained_model": str(encoder)}
        if hparams.get("layer_transformation") == "sparsemax_patch":  # as comet.load_from_checkpoint (COMET #244)
            overrides["layer_transformation"] = "softmax"
        return str2model[hparams["class_identifier"]].load_from_checkpoint(
            path, load_pretrained_weights=False, local_files_only=True, map_location="cpu", strict=False, **overrides
        )
    except Exception as err:
        cause = (str(err).strip().splitlines() or [""])[0]
        # a moved encoder dir gives OSError, an uncached hub id offline AttributeError
        hint = ""
        if encoder is None and isinstance(err, (OSError, AttributeError)):
            hint = f"; if the checkpoint's encoder (pretrained_model) moved or is a hub id, {encoder_key}"
        raise InputError(f"{label}: cannot load COMET checkpoint {path}: {type(err).__name__}: {cause}{hint}") from err


def uses_references(model) -> bool:
    return model.requires_references() or "ref" in getattr(model.hparams, "input_segments", [])


def segments(sources, hypotheses, references, with_refs: bool) -> list[dict]:
    """COMET's input: one {src, mt[, ref]} dict per hypothesis."""
    return [{"src": s, "mt": h, **({"ref": r} if with_refs else {})} for s, h, r in zip(sources, hypotheses, references)]


def predict(model, inputs: list[dict], batch_size: int, gpus: int) -> list[float]:
    """One score per segment; call it once for all segments, as every call builds a new Lightning Trainer."""
    return model.predict(inputs, batch_size=batch_size, gpus=gpus, progress_bar=False).scores if inputs else []


def score_comet(nbest: pd.DataFrame, sentences: pd.DataFrame, name: str, options) -> pd.DataFrame:
    """`sent_id, hyp_id, <name>_score` in n-best row order: one COMET score per hypothesis of checkpoint
    `options.model` (its encoder at `options.encoder`)."""
    gpus = int(torch.cuda.is_available()) if options.gpus is None else options.gpus
    if gpus > 1:  # COMET then spawns DDP workers and exits them mid-step; shards already spread the work
        raise InputError(f"scorer {name!r}: COMET scoring uses at most one GPU per job, not {gpus}")
    model = load_comet(options.model, name, options.encoder)
    sentences = sentences.set_index("sent_id")
    sources = nbest.sent_id.map(sentences.source)
    if sources.isna().any():
        missing = nbest.sent_id[sources.isna()].unique()[:5].tolist()
        raise InputError(f"scorer {name!r}: no source sentence for sent_id(s) {missing} of the n-best list")
    targets = nbest.sent_id.map(sentences.target) if "target" in sentences else pd.Series(None, index=nbest.index)
    if model.requires_references() and targets.isna().any():
        raise InputError(f"scorer {name!r} is reference-based and this set has no references: "
                         "use a QE checkpoint (e.g. CometKiwi) for monolingual sets")
    with_refs = uses_references(model) and targets.notna().all()
    scores = predict(model, segments(sources, nbest.hypothesis, targets, with_refs), options.batch_size, gpus)
    return nbest[KEYS].reset_index(drop=True).assign(**{f"{name}_score": pd.Series(scores, dtype=float)})
