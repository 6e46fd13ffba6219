"""Global magnitude pruning of the student's linear weights, then cross-entropy retraining."""

from __future__ import annotations

import logging

from .base import register
from .cross_entropy import CrossEntropy

log = logging.getLogger("mtdistill")


def prunable(model) -> list:
    """The linear layers of the encoder and decoder (the output projection is tied to the embeddings)."""
    import torch

    output = model.get_output_embeddings()
    return [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not output]


@register
class Pruned(CrossEntropy):
    """Global magnitude pruning of the layers' linear weights, kept pruned while retraining with cross-entropy.

    The masks are buffers of the model (`weight_mask`), so checkpoints of the model hold them."""

    name = "prune"
    keys = {"prune": 0.5}
    arguments = {"prune": {"type": float, "help": f"prune: fraction of linear weights set to zero ({keys['prune']})"}}
    checkpointed = ("before",)

    def __init__(self, fraction: float, label_smoothing: float = 0.0):
        super().__init__(label_smoothing)
        self.fraction = fraction

    @classmethod
    def from_args(cls, args):
        return cls(args.prune, args.label_smoothing)

    @classmethod
    def check_args(cls, p, args) -> None:
        super().check_args(p, args)
        if not 0 < args.prune < 1:
            p.error("--prune is a fraction between 0 and 1")

    def prepare(self, model, tokenizer, table, pairs, device) -> None:
        from torch.nn.utils import prune

        from .. import models

        self.before = models.nonzero_parameters(model)
        weights = [(m, "weight") for m in prunable(model)]
        prune.global_unstructured(weights, pruning_method=prune.L1Unstructured, amount=self.fraction)
        log.info("pruned %.0f%% of linear weights: %d -> %d non-zero parameters", 100 * self.fraction,
                 self.before, models.nonzero_parameters(model))

    def finish(self, model) -> None:
        from torch.nn.utils import prune

        for module in model.modules():
            if prune.is_pruned(module) and hasattr(module, "weight_mask"):
                prune.remove(module, "weight")

    def summary(self) -> dict:
        return {"prune_fraction": self.fraction, "nonzero_before": self.before}
