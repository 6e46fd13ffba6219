"""Objective `confidence_penalty` (Pereyra et al. 2017): cross-entropy minus `beta` times the entropy
of the student's next-token distributions, which discourages over-confident students."""

from mtdistill.objectives import register
from mtdistill.objectives.cross_entropy import CrossEntropy


@register
class ConfidencePenalty(CrossEntropy):
    name = "confidence_penalty"
    keys = {"beta": 0.1}
    arguments = {"beta": {"type": float, "help": "confidence_penalty: weight of the entropy bonus (0.1)"}}

    def __init__(self, beta: float, label_smoothing: float = 0.0):
        super().__init__(label_smoothing)
        self.beta = beta

    @classmethod
    def from_args(cls, args):
        return cls(args.beta, args.label_smoothing)

    def __call__(self, model, batch, labels, indices):
        import torch.nn.functional as F

        logits = model(**batch).logits.float()
        real = labels != -100
        ce = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100,
                             label_smoothing=self.label_smoothing, reduction="sum")
        log_q = logits.log_softmax(-1)
        entropy = -(log_q.exp() * log_q).sum(-1)[real].sum()
        return ce - self.beta * entropy, int(real.sum())
