"""The student's projection head into the knowledge base's key space, saved beside its model, and the
file format of it and of the teacher's head (a linear layer with metadata)."""

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


def save_linear(layer: torch.nn.Linear, path, **meta) -> None:
    """A linear layer and what to know of it, in one torch file (written atomically)."""
    state = {"weight": layer.weight.detach().cpu().clone(), "bias": layer.bias.detach().cpu().clone(), **meta}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_linear(path, what: str) -> tuple[torch.nn.Linear, dict]:
    """The layer `save_linear` wrote and its metadata; an InputError naming the file (`what` wrote it) otherwise."""
    try:
        state = torch.load(path, weights_only=False)
        weight, bias = state.pop("weight"), state.pop("bias")
    except Exception as error:  # missing, truncated or another file
        raise InputError(f"{path}: not a linear head written by {what} ({error})") from None
    layer = torch.nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
    return layer.eval(), state


def save_head(head: torch.nn.Linear, outdir, **meta) -> None:
    save_linear(head, Path(outdir) / HEAD_FILE, **meta)


def load_head(model_dir) -> tuple[torch.nn.Linear, dict]:
    path = Path(model_dir) / HEAD_FILE
    if not path.exists():
        raise InputError(f"{path}: missing; retrieval needs a student trained with objective reaugkd")
    return load_linear(path, "a reaugkd training")


def student_states(outputs) -> torch.Tensor:
    """The final decoder state at every target position: the input of the LM head."""
    return outputs.decoder_hidden_states[-1]
