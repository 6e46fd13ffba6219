"""The frozen teacher of the distillation objectives and the divergences they train towards it.

KD compares distributions token by token, so a teacher must index the student's target vocabulary.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import models
from ..core.io import InputError


def check_shared_vocabulary(teacher_tokenizer, student_tokenizer, teacher: str) -> None:
    """KD compares distributions token by token: both models must index the same target vocabulary."""
    t, s = teacher_tokenizer.get_vocab(), student_tokenizer.get_vocab()
    if t != s:
        differing = sorted(set(t.items()) ^ set(s.items()), key=lambda item: item[1])[:3]
        raise InputError(f"teacher {teacher} and the student do not share the target vocabulary "
                         f"({len(t)} vs {len(s)} entries; first differences {differing}): word-level and "
                         "speculative KD need the same tokenizer")


def load_teacher(path: str, student_tokenizer, device) -> torch.nn.Module:
    teacher, tokenizer = models.load(path, "--teacher")
    check_shared_vocabulary(tokenizer, student_tokenizer, path)
    return teacher.to(device).eval().requires_grad_(False)


def forward_kl(teacher_logits: torch.Tensor, student_logits: torch.Tensor, mask: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """Sum over masked positions of KL(softmax(t / tau) || softmax(s / tau))."""
    log_p = F.log_softmax(teacher_logits.float() / tau, -1)
    log_q = F.log_softmax(student_logits.float() / tau, -1)
    return ((log_p.exp() * (log_p - log_q)).sum(-1) * mask).sum()


def truncated_kl(ids: torch.Tensor, teacher_logprobs: torch.Tensor, student_logits: torch.Tensor, mask: torch.Tensor,
                 tau: float = 1.0) -> torch.Tensor:
    """KL over the teacher's top-k tokens only, the teacher renormalised over them: (B, T, k) ids and log-probs."""
    log_p = F.log_softmax(teacher_logprobs.float() / tau, -1)
    log_q = F.log_softmax(student_logits.float() / tau, -1).gather(-1, ids)
    return ((log_p.exp() * (log_p - log_q)).sum(-1) * mask).sum()



def topk_rows(topk: dict, labels: torch.Tensor, indices) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, k) cached teacher ids and log-probs of these rows, padded where a row is shorter than the labels."""
    width = labels.shape[1]
    ids = torch.zeros(*labels.shape, topk["k"], dtype=torch.long)
    logprobs = torch.full((*labels.shape, topk["k"]), -1e4)
    for row, index in enumerate(indices):
        length = min(width, len(topk["ids"][index]))
        ids[row, :length] = topk["ids"][index][:length].long()
        logprobs[row, :length] = topk["logprobs"][index][:length].float()
    return ids.to(labels.device), logprobs.to(labels.device)
