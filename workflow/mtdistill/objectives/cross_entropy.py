"""The objective protocol, and its default: (label-smoothed) cross-entropy on the labels.

An objective class owns its config keys and their defaults (`keys`, the keys of a
student.objectives entry), the training settings it brings over student.train (`train`), whether the
workflow must give it the teacher (`needs_teacher`), whether it compares the student's next-token
distributions with the teacher's, so that both must index one vocabulary (`needs_teacher_vocabulary`:
students with a vocabulary of their own cannot use it) and its command-line options (`arguments`: option
dest -> argparse keywords, all defaulting to None, so that `train` sees and refuses one given to
another objective). `from_args` builds it from `train`'s parsed options.

An instance is called per batch with the model, the collated batch, its labels and the row indices
of the training table; it returns the summed loss and the number of target tokens. `prepare` sees
the unwrapped model and the training table before the first step (and before a checkpoint is
loaded); `window_metrics` returns averages since its last call, logged with every dev evaluation.
`state_dict` holds what changes while training (the `checkpointed` attributes), saved in resume
checkpoints and given back to `load_state_dict` after `prepare`.

The class modules import torch only where they compute, so that the workflow reads the registry
cheaply when it builds its DAG.
"""

from __future__ import annotations

import copy
from pathlib import Path

from .base import register


@register
class CrossEntropy:
    name = "cross_entropy"
    keys: dict = {}
    train: dict = {}
    needs_teacher = False
    needs_teacher_vocabulary = False
    arguments: dict = {}
    checkpointed: tuple[str, ...] = ()

    def __init__(self, label_smoothing: float = 0.0):
        self.label_smoothing = label_smoothing

    @classmethod
    def from_args(cls, args):
        return cls(args.label_smoothing)

    @classmethod
    def option_keys(cls) -> list[str]:
        """Its config keys that are command-line options of the same name."""
        return [key for key in cls.keys if key in cls.arguments]

    @classmethod
    def check_args(cls, p, args) -> None:
        """Fill in the defaults of its options not given; refuse what it cannot train with (p.error)."""
        for key in cls.option_keys():
            if getattr(args, key) is None:
                setattr(args, key, cls.keys[key])
        if cls.teacher_required(args) and not args.teacher:
            p.error(f"--objective {cls.name} needs --teacher")

    @classmethod
    def teacher_required(cls, args) -> bool:
        return cls.needs_teacher

    def prepare(self, model, tokenizer, table, pairs, device) -> None:
        pass

    def state_dict(self) -> dict:
        return {name: copy.deepcopy(getattr(self, name)) for name in self.checkpointed}

    def load_state_dict(self, state: dict) -> None:
        for name in self.checkpointed:
            setattr(self, name, copy.deepcopy(state[name]))

    def __call__(self, model, batch, labels, indices):
        from ..training.batches import batch_loss

        return batch_loss(model, batch, labels, self.label_smoothing)

    def window_metrics(self) -> dict:
        return {}

    def finish(self, model) -> None:
        """Called on the selected checkpoint before it is saved."""

    def write(self, outdir: Path) -> None:
        """Extra files (plots) into the model directory, written with it."""

    def summary(self) -> dict:
        """Its entries of training.json."""
        return {}
