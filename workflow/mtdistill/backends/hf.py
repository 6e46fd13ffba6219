"""The `transformers` backend: beam search with `generate`, forced scoring with one encoder pass per source.

`HFTranslator(model, tokenizer)` also wraps a model in memory, e.g. one being trained; with a
`retrieval` (mtdistill.retrieval.knn.Retrieval) its decoding mixes the kNN distribution into every step.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from tqdm import tqdm

from .. import models
from ..core.tokens import length_batches, pad_batch, reverse_tokens, target_ids
from . import Translator


def sequence_logprobs(logits: torch.Tensor, labels: torch.Tensor, real: torch.Tensor) -> list[tuple[float, int]]:
    """(sum of the labels' log-probs over the `real` positions, their count) per row."""
    token_lp = logits.float().log_softmax(-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    sums = torch.where(real, token_lp, torch.zeros_like(token_lp)).sum(-1)
    return list(zip(sums.tolist(), real.sum(-1).tolist()))


class HFTranslator(Translator):
    def __init__(self, model, tokenizer, retrieval=None):
        self.model, self.tokenizer, self.retrieval = model, tokenizer, retrieval

    @contextlib.contextmanager
    def generation_options(self):
        """`generate`'s extra options for one call: the kNN mixing with a retrieval (its hook on the LM head
        installed for the call), else none."""
        if self.retrieval is None:
            yield {}
            return
        with self.retrieval.mixing(self.model) as processors:
            yield {"logits_processor": processors}

    @torch.no_grad()
    def translate(self, sources: list[str], beam: int = 1, nbest: int = 1, batch_size: int = 32,
                  max_len_a: float = 1.5, max_len_b: int = 10, max_len: int = 256, progress: bool = False,
                  r2l: bool = False) -> list[list[tuple[str, float]]]:
        """As `Translator.translate`; early_stopping=True equals CTranslate2's default patience 1.

        Sources are sorted by length so each batch pads little. Greedy search has no score (NaN). With a
        retrieval, beam scores are those of the mixed distribution.
        """
        model, tokenizer = self.model, self.tokenizer
        device = next(model.parameters()).device
        results: list = [None] * len(sources)
        batches = length_batches([len(s.split()) for s in sources], batch_size, longest_first=True)
        for indices in tqdm(batches, desc="decode", mininterval=30, disable=not progress):
            enc = tokenizer([sources[i] for i in indices], return_tensors="pt", padding=True, truncation=True,
                            max_length=max_len).to(device)
            limit = min(max_len, int(max_len_a * enc["input_ids"].shape[1] + max_len_b))
            search = {"num_beams": beam, "early_stopping": True, "length_penalty": 1.0, "output_scores": True} if beam > 1 else {}
            with self.generation_options() as options:
                out = model.generate(
                    **enc, **search, **options, num_return_sequences=nbest, max_new_tokens=limit, do_sample=False,
                    return_dict_in_generate=True,
                )
            sequences = [reverse_tokens(seq, tokenizer) for seq in out.sequences.tolist()] if r2l else out.sequences
            texts = tokenizer.batch_decode(sequences, skip_special_tokens=True)
            scores = out.sequences_scores.tolist() if beam > 1 else [float("nan")] * len(texts)
            for k, i in enumerate(indices):
                results[i] = list(zip(texts[k * nbest : (k + 1) * nbest], scores[k * nbest : (k + 1) * nbest]))
        return results

    @torch.no_grad()
    def forced_logprobs(self, inputs: list[str], outputs: list[list[str]], batch_size: int = 16,
                        max_len: int = 256, reverse: bool = False) -> list[tuple[float, int]]:
        """As `Translator.forced_logprobs`; the outputs of one input share one encoder pass. The log-probs
        are the model's own, with a retrieval too (it mixes into decoding only)."""
        model, tokenizer = self.model, self.tokenizer
        device = next(model.parameters()).device
        pad = tokenizer.pad_token_id
        results = []
        for start in tqdm(range(0, len(inputs), batch_size), desc="score", mininterval=30):
            src = inputs[start : start + batch_size]
            outs = outputs[start : start + batch_size]
            enc = tokenizer(src, return_tensors="pt", padding=True, truncation=True, max_length=max_len).to(device)
            encoded = model.get_encoder()(**enc).last_hidden_state
            owner = torch.tensor([i for i, o in enumerate(outs) for _ in o], device=device)
            labels = pad_batch(target_ids(tokenizer, [o for os in outs for o in os], max_len, reverse), pad, device)
            start_tokens = torch.full_like(labels[:, :1], model.config.decoder_start_token_id)
            logits = model(
                encoder_outputs=(encoded[owner],), attention_mask=enc["attention_mask"][owner],
                decoder_input_ids=torch.cat([start_tokens, labels[:, :-1]], 1),
            ).logits
            logits[..., pad] = float("-inf")  # <pad> is never a real output (matches CTranslate2)
            results.extend(sequence_logprobs(logits, labels, labels != pad))
        return results


def load(path: str | Path, what: str = "model", threads: int = 1, compute_type: str = "default") -> HFTranslator:
    """A seq2seq model directory or Hugging Face id; threads are torch's (`models.set_threads`), and
    the compute type is the model's own."""
    return HFTranslator(*models.load(path, what))
