"""log p(hypothesis) under a causal language model (a GPT-2-style LM over the shared vocabulary)."""

from __future__ import annotations

import pandas as pd
import torch
from tqdm import tqdm

from .. import models
from ..backends.hf import sequence_logprobs
from ..core.nbest import KEYS
from ..core.tokens import length_batches, pad_batch, target_ids
from .forced import logprob_features


@torch.no_grad()
def lm_logprobs(model, tokenizer, texts: list[str], batch_size: int = 64, max_len: int = 256) -> list[tuple[float, int]]:
    """(sum log-prob incl. EOS, token count) of each text under a causal LM started from its BOS token."""
    device = next(model.parameters()).device
    bos = model.config.bos_token_id if model.config.bos_token_id is not None else tokenizer.eos_token_id
    results: list = [None] * len(texts)
    for indices in tqdm(length_batches([len(t) for t in texts], batch_size), desc="lm", mininterval=30):
        ids = target_ids(tokenizer, [texts[i] for i in indices], max_len)
        labels = pad_batch(ids, -100, device)
        real = labels != -100
        inputs = torch.cat([torch.full_like(labels[:, :1], bos), labels[:, :-1].clamp(min=0)], 1)
        logits = model(input_ids=inputs, attention_mask=real).logits
        for i, result in zip(indices, sequence_logprobs(logits, labels.clamp(min=0), real)):
            results[i] = result
    return results


def score_lm(nbest, sentences, name, options) -> pd.DataFrame:
    """`<name>_logprob` and `<name>_logprob_per_token`; each distinct hypothesis is scored once."""
    model, tokenizer = models.load(options.model, f"scorer {name!r}", causal=True)
    unique = list(dict.fromkeys(nbest.hypothesis))
    scored = dict(zip(unique, lm_logprobs(model, tokenizer, unique, options.batch_size)))
    return logprob_features(name, nbest[KEYS], [scored[h] for h in nbest.hypothesis], with_tokens=False)
