"""Encoding, length-grouped token batches, collation, the summed cross-entropy, precision and dev loss."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..core.io import InputError
from ..core.tokens import prompted_batch, reverse_tokens, shift_right


def encode(tokenizer, sources: list[str], targets: list[str], max_len: int, direction: str = "l2r",
           task: str = "seq2seq") -> list[tuple[list[int], list[int]]]:
    """(source ids, label ids) pairs; an LM has no source, an R2L model reversed labels."""
    if direction == "backward":
        sources, targets = targets, sources
    labels = tokenizer(text_target=targets, truncation=True, max_length=max_len)["input_ids"]
    if direction == "r2l":
        labels = [reverse_tokens(ids, tokenizer) for ids in labels]
    if task == "lm":
        return [([], ids) for ids in labels]
    return list(zip(tokenizer(sources, truncation=True, max_length=max_len)["input_ids"], labels))


def encode_family(codec, sources: list[str], targets: list[str], max_len: int) -> list[tuple[list[int], list[int]]]:
    """(source ids, label ids) pairs of a pretrained teacher as its family feeds it (mtdistill.families): a
    seq2seq model's labels start with the forced target prefix (learnt, as its own training learnt it);
    a causal LM's source is its prompt, and collate(causal=True) scores the continuation alone."""
    sources_ids, target_ids = codec.source_ids(sources, max_len), codec.target_ids(targets, max_len)
    if codec.causal:
        return list(zip(sources_ids, target_ids))
    return [(s, [*codec.target_prefix, *t]) for s, t in zip(sources_ids, target_ids)]


def token_batches(pairs, batch_tokens: int, rng: np.random.Generator) -> list[list[int]]:
    """Indices grouped by length so that padded source+target tokens stay under batch_tokens."""
    lengths = np.array([len(s) + len(t) for s, t in pairs])
    order = np.lexsort((rng.random(len(pairs)), lengths))
    batches, current, longest = [], [], 0
    for i in order:
        longest_if_added = max(longest, lengths[i])
        if current and longest_if_added * (len(current) + 1) > batch_tokens:
            batches.append(current)
            current, longest_if_added = [], lengths[i]
        current.append(int(i))
        longest = longest_if_added
    if current:
        batches.append(current)
    rng.shuffle(batches)
    return batches


def collate(pairs, indices, pad: int, device: torch.device, start: int | None = None, causal: bool = False):
    """Padded model inputs and labels; `start` is the decoder start token (default <pad>, Marian's). With
    `causal`, the pairs are (prompt, continuation) of a causal LM: one sequence, only the continuation scored."""
    if causal:
        input_ids, mask, labels = prompted_batch([pairs[i][0] for i in indices], [pairs[i][1] for i in indices], pad,
                                                 device)
        return {"input_ids": input_ids, "attention_mask": mask}, labels
    tgt = [torch.tensor(pairs[i][1]) for i in indices]
    labels = torch.nn.utils.rnn.pad_sequence(tgt, batch_first=True, padding_value=-100)
    shifted = shift_right(labels, pad if start is None else start, pad)
    if not pairs[indices[0]][0]:  # causal LM: the shifted labels are the whole input
        return {"input_ids": shifted.to(device), "attention_mask": (labels != -100).to(device)}, labels.to(device)
    src = [torch.tensor(pairs[i][0]) for i in indices]
    input_ids = torch.nn.utils.rnn.pad_sequence(src, batch_first=True, padding_value=pad)
    return {
        "input_ids": input_ids.to(device),
        "attention_mask": (input_ids != pad).to(device),
        "decoder_input_ids": shifted.to(device),
    }, labels.to(device)


def summed_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """(Label-smoothed) cross-entropy summed over the label tokens (-100 ignored), computed in fp32."""
    return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100,
                           label_smoothing=label_smoothing, reduction="sum")


def batch_loss(model, batch, labels, label_smoothing: float = 0.0) -> tuple[torch.Tensor, int]:
    """The summed cross-entropy of a collated batch and its number of target tokens."""
    loss = summed_cross_entropy(model(**batch).logits, labels, label_smoothing)
    return loss, int((labels != -100).sum())


def resolve_precision(precision: str, device: torch.device) -> str:
    """auto: bf16 where the GPU computes in it (Ampere and newer), else fp32."""
    bf16_gpu = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if precision == "auto":
        return "bf16" if bf16_gpu else "fp32"
    if precision == "bf16" and device.type == "cuda" and not bf16_gpu:
        raise InputError(f"--precision bf16: {torch.cuda.get_device_name(device)} does not support bfloat16 (use fp32)")
    return precision


def autocast(device: torch.device, precision: str):
    """Forward passes in bf16 where `precision` says so; the losses are computed in fp32 anyway."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


@torch.no_grad()
def dev_loss(model, pairs, batches, pad, device, start=None, precision: str = "fp32", causal: bool = False) -> float:
    """Cross-entropy per target token (no label smoothing) of the dev batches, in eval mode."""
    model.eval()
    total, tokens = 0.0, 0
    for indices in batches:
        batch, labels = collate(pairs, indices, pad, device, start, causal)
        with autocast(device, precision):
            loss, n = batch_loss(model, batch, labels)
        total, tokens = total + loss.item(), tokens + n
    model.train()
    return total / max(tokens, 1)
