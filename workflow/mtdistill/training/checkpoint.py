"""Resume checkpoints: every dev evaluation writes <out>.resume/last.pt (--checkpoint-dir) with the
model, optimizer, data position, random states and the objective's state; a rerun with the same
arguments continues from it and ends with the model an uninterrupted run would have written."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..core.io import atomic_path
from . import distributed

log = logging.getLogger("mtdistill")


@dataclass
class State:
    """How far training has got: what a resume checkpoint restores besides the model and optimizer."""
    history: list = field(default_factory=list)
    best: dict = field(default_factory=lambda: {"criterion": float("inf"), "step": 0, "state": None})
    step: int = 0
    stale: int = 0  # evaluations without dev improvement
    skip: int = 0  # batches of the current epoch already trained on


def path(args) -> Path:
    """Periodic checkpoints go beside the output, never inside a declared output."""
    out = Path(args.out)
    return Path(args.checkpoint_dir or out.with_name(out.name + ".resume")) / "last.pt"


def load(run, rng: np.random.Generator) -> None:
    """Continue from the resume checkpoint, if one was written with the same arguments."""
    if not path(run.args).exists():
        return
    # rank 0 saved from its GPU: onto the CPU, from where each rank copies into its own device
    saved = torch.load(path(run.args), map_location="cpu", weights_only=False)
    if saved["fingerprint"] != run.fingerprint:
        log.warning("ignoring %s: written with other arguments", path(run.args))
        return
    run.raw.load_state_dict(saved["model"])
    run.optimizer.load_state_dict(saved["optimizer"])
    run.schedule.load_state_dict(saved["schedule"])
    distributed.load_rank_state(saved["ranks"][run.rank], run.objective, run.device)
    rng.bit_generator.state = saved["epoch_rng"]
    run.state = State(saved["history"], saved["best"], saved["step"], saved["stale"], saved["position"])
    log.info("resumed from %s at step %d", path(run.args), run.state.step)


def save(run, ranks: list[dict], epoch_rng: dict, position: int) -> None:
    state = run.state
    with atomic_path(path(run.args)) as tmp:
        torch.save({
            "fingerprint": run.fingerprint, "model": run.raw.state_dict(), "optimizer": run.optimizer.state_dict(),
            "schedule": run.schedule.state_dict(), "ranks": [r["state"] for r in ranks], "epoch_rng": epoch_rng,
            "position": position, "history": state.history, "best": state.best, "step": state.step,
            "stale": state.stale,
        }, tmp)
