"""Word-level KD (Kim & Rush 2016): (1 - alpha) * CE(labels) + alpha * tau^2 * KL(teacher || student)
per label token. The teacher runs frozen in the loop, or its top-k next-token log-probabilities were
precomputed (`teacher_topk`, --topk FILE) and the KL is truncated to them."""

from __future__ import annotations

from .base import register
from .cross_entropy import CrossEntropy


def check_cache_covers(path: str, cache: dict, pairs, max_len: int) -> None:
    """Every label position trained on needs its cached teacher row: a missing one would be KL towards `</s>`."""
    from ..core.io import InputError  # pandas: loaded only when training

    short = [i for i, (_, label) in enumerate(pairs) if len(label) > len(cache["ids"][i])]
    if short:
        i = short[0]
        raise InputError(f"{path}: built with max_len {cache.get('max_len', 'unknown (not recorded)')}, but training uses "
                         f"max_len {max_len}: {len(short)} label(s) are longer than their cached rows (row {i}: "
                         f"{len(pairs[i][1])} tokens, {len(cache['ids'][i])} cached); rebuild it with "
                         f"teacher_topk --max-len {max_len}")


@register
class WordKD(CrossEntropy):
    name = "word_kd"
    # `topk`: the k of the workflow's top-k cache; on the command line --topk is the cache file
    keys = {"alpha": 0.5, "tau": 1.0, "topk": 0}
    needs_teacher = True
    needs_teacher_vocabulary = True
    arguments = {
        "alpha": {"type": float, "help": f"word_kd, reaugkd: weight of the KL term ({keys['alpha']})"},
        "tau": {"type": float, "help": f"word_kd, reaugkd: softmax temperature of both distributions ({keys['tau']})"},
        "topk": {"help": "word_kd: the teacher's precomputed top-k log-probs of these labels"},
    }
    checkpointed = ("window",)

    def __init__(self, teacher: str, alpha: float, tau: float, label_smoothing: float = 0.0, topk_path: str | None = None,
                 max_len: int = 128):
        super().__init__(label_smoothing)
        self.teacher_path, self.alpha, self.tau, self.topk_path, self.max_len = teacher, alpha, tau, topk_path, max_len
        self.window = {"ce": 0.0, "kd": 0.0, "tokens": 0}

    @classmethod
    def from_args(cls, args):
        return cls(args.teacher, args.alpha, args.tau, args.label_smoothing, args.topk, max_len=args.max_len)

    @classmethod
    def option_keys(cls) -> list[str]:
        return [key for key in super().option_keys() if key != "topk"]

    @classmethod
    def teacher_required(cls, args) -> bool:
        return not args.topk

    def prepare(self, model, tokenizer, table, pairs, device) -> None:
        import torch

        from .. import models
        from ..core.io import InputError
        from .teacher import check_shared_vocabulary, load_teacher

        if self.topk_path:
            cache = torch.load(self.topk_path, weights_only=False)
            if list(cache["sent_ids"]) != list(table.sent_id):
                raise InputError(f"{self.topk_path}: its sentences are not the training table's (rebuild it)")
            check_cache_covers(self.topk_path, cache, pairs, self.max_len)
            check_shared_vocabulary(models.load_tokenizer(cache["teacher"]), tokenizer, cache["teacher"])
            self.topk = cache
        else:
            self.teacher = load_teacher(self.teacher_path, tokenizer, device)

    def teacher_term(self, batch, labels, indices, student_logits):
        import torch

        from .teacher import forward_kl, topk_rows, truncated_kl

        mask = (labels != -100).float()
        if not self.topk_path:
            with torch.no_grad():
                teacher_logits = self.teacher(**batch).logits
            return forward_kl(teacher_logits, student_logits, mask, self.tau)
        return truncated_kl(*topk_rows(self.topk, labels, indices), student_logits, mask, self.tau)

    def __call__(self, model, batch, labels, indices):
        from ..training.batches import summed_cross_entropy

        logits = model(**batch).logits
        tokens = int((labels != -100).sum())
        ce = summed_cross_entropy(logits, labels, self.label_smoothing)
        kd = self.teacher_term(batch, labels, indices, logits)
        self.window["ce"] += ce.item()
        self.window["kd"] += kd.item()
        self.window["tokens"] += tokens
        return (1 - self.alpha) * ce + self.alpha * self.tau**2 * kd, tokens

    def window_metrics(self) -> dict:
        tokens = max(self.window["tokens"], 1)
        metrics = {"ce_per_token": self.window["ce"] / tokens, "kl_per_token": self.window["kd"] / tokens}
        self.window = {"ce": 0.0, "kd": 0.0, "tokens": 0}
        return metrics
