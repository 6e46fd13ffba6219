"""Token helpers every model family shares: target ids ending in `</s>`, right-to-left order,
padding, shifting labels into decoder inputs, and length-sorted batches."""

from __future__ import annotations

import numpy as np
import torch


def reverse_tokens(ids: list[int], tokenizer) -> list[int]:
    """A right-to-left model's token order: the real tokens reversed, a trailing `</s>` kept last.

    An involution on token sequences, so the same call turns R2L output back into normal order;
    a leading decoder start token (`<pad>`) is dropped.
    """
    specials = {tokenizer.eos_token_id, tokenizer.pad_token_id}
    end = len(ids)
    while end and ids[end - 1] in specials:
        end -= 1
    return [i for i in ids[:end] if i not in specials][::-1] + list(ids[end:])


def target_ids(tokenizer, texts: list[str], max_len: int, reverse: bool = False) -> list[list[int]]:
    """Token ids ending in `</s>` (appended where a tokenizer, like GPT-2's, adds none)."""
    ids = tokenizer(text_target=texts, truncation=True, max_length=max_len)["input_ids"]
    eos = tokenizer.eos_token_id
    ids = [seq if seq and seq[-1] == eos else [*seq, eos] for seq in ids]
    if reverse:
        ids = [reverse_tokens(seq, tokenizer) for seq in ids]
    return ids


def pad_batch(sequences: list[list[int]], value: int, device) -> torch.Tensor:
    return torch.nn.utils.rnn.pad_sequence([torch.tensor(s) for s in sequences], batch_first=True, padding_value=value).to(device)


def prompted_batch(prompts: list[list[int]], continuations: list[list[int]], pad: int, device):
    """A causal LM's batch of prompt + continuation sequences, right-padded: input ids, attention mask and
    labels aligned with the logits (each position predicts the next token), -100 but on the continuation."""
    sequences = [p + c for p, c in zip(prompts, continuations)]
    width = max(map(len, sequences)) - 1
    input_ids = torch.full((len(sequences), width), pad, dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    labels = torch.full_like(input_ids, -100)
    for row, (prompt, seq) in enumerate(zip(prompts, sequences)):
        input_ids[row, : len(seq) - 1] = torch.tensor(seq[:-1])
        mask[row, : len(seq) - 1] = 1
        labels[row, len(prompt) - 1 : len(seq) - 1] = torch.tensor(seq[len(prompt) :])
    return input_ids.to(device), mask.to(device), labels.to(device)


def shift_right(labels: torch.Tensor, start: int, pad: int) -> torch.Tensor:
    """Decoder inputs of teacher forcing: the start token, then the labels but the last, -100 as `pad`."""
    previous = labels[:, :-1].masked_fill(labels[:, :-1] == -100, pad)
    return torch.cat([torch.full_like(labels[:, :1], start), previous], 1)


def length_batches(lengths: list[int], batch_size: int, longest_first: bool = False) -> list[np.ndarray]:
    """Indices in batches of `batch_size` ordered by length, so that each batch pads little.

    A stable ascending sort; `longest_first` reverses it (so equal lengths come last index first).
    """
    order = np.argsort(lengths, kind="stable")
    if longest_first:
        order = order[::-1]
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
