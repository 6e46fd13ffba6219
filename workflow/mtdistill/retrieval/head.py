"""The student's projection head into the knowledge base's key space, saved beside its model."""

from __future__ import annotations

from pathlib import Path

import torch

from ..core.io import InputError, atomic_path

HEAD_FILE = "retrieval_head.pt"


def new_head(d_model: int, dim: int, seed: int) -> torch.nn.Linear:
    """The identity when the widths match (the student starts from its own states), else seeded Xavier."""
    head = torch.nn.Linear(d_model, dim)
    with torch.no_grad():
        if d_model == dim:
            head.weight.copy_(torch.eye(dim))
        else:
            torch.nn.init.xavier_uniform_(head.weight, generator=torch.Generator().manual_seed(seed))
        head.bias.zero_()
    return head


def save_head(head: torch.nn.Linear, outdir, **meta) -> None:
    state = {"weight": head.weight.detach().cpu().clone(), "bias": head.bias.detach().cpu().clone(), **meta}
    with atomic_path(Path(outdir) / HEAD_FILE) as tmp:
        torch.save(state, tmp)


def load_head(model_dir) -> tuple[torch.nn.Linear, dict]:
    path = Path(model_dir) / HEAD_FILE
    if not path.exists():
        raise InputError(f"{path}: missing; retrieval needs a student trained with objective reaugkd")
    state = torch.load(path, weights_only=False)
    weight, bias = state.pop("weight"), state.pop("bias")
    head = torch.nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.copy_(bias)
    return head.eval(), state


def student_states(outputs) -> torch.Tensor:
    """The final decoder state at every target position: the input of the LM head."""
    return outputs.decoder_hidden_states[-1]
