"""The `transformers` backend: beam search or sampling with `generate`, forced scoring in one forward pass.

`HFTranslator(model, tokenizer)` also wraps a model in memory, e.g. one being trained; with a
`retrieval` (mtdistill.retrieval.knn.Retrieval) its decoding mixes the kNN distribution into every step.
Its `profile` (mtdistill.families) says how the model is fed: a seq2seq model gets its family's source
ids and forced target prefix, a causal LM its prompt, left-padded; neither the forced tokens nor the
prompt count in a score.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from tqdm import tqdm

from .. import families, models
from ..core.tokens import length_batches, pad_batch, prompted_batch, reverse_tokens
from . import Sampling, Translator


def sequence_logprobs(logits: torch.Tensor, labels: torch.Tensor, real: torch.Tensor) -> list[tuple[float, int]]:
    """(sum of the labels' log-probs over the `real` positions, their count) per row."""
    token_lp = logits.float().log_softmax(-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    sums = torch.where(real, token_lp, torch.zeros_like(token_lp)).sum(-1)
    return list(zip(sums.tolist(), real.sum(-1).tolist()))


def padded(sequences: list[list[int]], pad: int, device, left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Ids and attention mask of a batch, padded on the right (or the left, as generation from a prompt needs)."""
    width = max(map(len, sequences))
    ids = torch.full((len(sequences), width), pad, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        span = slice(width - len(seq), width) if left else slice(0, len(seq))
        ids[row, span], mask[row, span] = torch.tensor(seq, dtype=torch.long), 1
    return ids.to(device), mask.to(device)


class HFTranslator(Translator):
    def __init__(self, model, tokenizer, retrieval=None, profile: families.Profile | None = None):
        self.model, self.tokenizer, self.retrieval = model, tokenizer, retrieval
        self.profile = profile or families.Profile()
        self.codec = families.codec(tokenizer, self.profile)

    @contextlib.contextmanager
    def generation_options(self):
        """`generate`'s extra options for one call: the kNN mixing with a retrieval (its hook on the LM head
        installed for the call), else none."""
        if self.retrieval is None:
            yield {}
            return
        with self.retrieval.mixing(self.model) as processors:
            yield {"logits_processor": processors}

    def start_ids(self, rows: int, device) -> torch.Tensor:
        """A seq2seq decoder's first inputs: its start token, then the forced target prefix."""
        start = [self.model.config.decoder_start_token_id, *self.codec.target_prefix]
        return torch.tensor([start] * rows, dtype=torch.long, device=device)

    def translate(self, sources: list[str], beam: int = 1, nbest: int = 1, batch_size: int = 32,
                  max_len_a: float = 1.5, max_len_b: int = 10, max_len: int = 256, progress: bool = False,
                  r2l: bool = False, sampling: Sampling | None = None) -> list[list[tuple[str, float]]]:
        """As `Translator.translate`; early_stopping=True equals CTranslate2's default patience 1.

        Sources are sorted by length so each batch pads little. Greedy search has no score (NaN). With a
        retrieval, beam scores are those of the mixed distribution.
        """
        generated = self.generate(sources, beam, nbest, batch_size, max_len_a, max_len_b, max_len, progress, sampling)
        return [[(self.codec.text(reverse_tokens(ids, self.tokenizer) if r2l else ids), score) for ids, score in outputs]
                for outputs in generated]

    @torch.no_grad()
    def generate(self, sources: list[str], beam: int = 1, nbest: int = 1, batch_size: int = 32,
                 max_len_a: float = 1.5, max_len_b: int = 10, max_len: int = 256, progress: bool = False,
                 sampling: Sampling | None = None) -> list[list[tuple[list[int], float]]]:
        """`translate`'s outputs as token ids: what the model wrote after its start token and forced prefix (or
        after its prompt), up to its stop token, with the score."""
        model, codec = self.model, self.codec
        device = next(model.parameters()).device
        results: list = [None] * len(sources)
        if sampling is not None:
            torch.manual_seed(sampling.seed)
        batches = length_batches([len(s.split()) for s in sources], batch_size, longest_first=True)
        for indices in tqdm(batches, desc="decode", mininterval=30, disable=not progress):
            texts = [sources[i] for i in indices]
            ids = codec.source_ids(texts, max_len)
            inputs, mask = padded(ids, codec.pad_id, device, left=codec.causal)
            source_len = max(map(len, self.tokenizer(texts, add_special_tokens=False)["input_ids"])) if codec.causal \
                else inputs.shape[1]
            limit = min(max_len, int(max_len_a * source_len + max_len_b))
            if sampling is not None:
                # top_k 0: nucleus sampling alone (generate's default, or the checkpoint's, would cut to a top-k)
                search = {"do_sample": True, "temperature": sampling.temperature, "top_p": sampling.top_p, "top_k": 0}
            elif beam > 1:
                search = {"num_beams": beam, "early_stopping": True, "length_penalty": 1.0, "output_scores": True,
                          "do_sample": False}
            else:
                search = {"do_sample": False}
            prompt = {} if codec.causal or not codec.target_prefix else {"decoder_input_ids": self.start_ids(len(ids), device)}
            with self.generation_options() as options:
                out = model.generate(
                    input_ids=inputs, attention_mask=mask, **prompt, **search, **options, num_return_sequences=nbest,
                    max_new_tokens=limit, return_dict_in_generate=True, eos_token_id=codec.stop_ids,
                    pad_token_id=codec.pad_id,
                )
            skip = inputs.shape[1] if codec.causal else 1 + len(codec.target_prefix)
            outputs = [self.finished(seq[skip:]) for seq in out.sequences.tolist()]
            if sampling is not None:  # a sample's score: its untempered log-prob, as a beam's is
                scored = self.scored_ids([ids[k // nbest] for k in range(len(outputs))], outputs)
                scores = [total / max(count, 1) for total, count in scored]
            else:
                scores = out.sequences_scores.tolist() if beam > 1 else [float("nan")] * len(outputs)
            for k, i in enumerate(indices):
                results[i] = list(zip(outputs[k * nbest : (k + 1) * nbest], scores[k * nbest : (k + 1) * nbest]))
        return results

    def finished(self, ids: list[int]) -> list[int]:
        """An output's ids up to and including its first stop token (all of them when it never stopped)."""
        stops = set(self.codec.stop_ids)
        end = next((i for i, t in enumerate(ids) if t in stops), None)
        return list(ids) if end is None else list(ids[: end + 1])

    def scored_ids(self, source_ids: list[list[int]], target_ids: list[list[int]]) -> list[tuple[float, int]]:
        """(sum log-prob, token count) of each target id sequence after its source (or prompt) ids."""
        model, codec = self.model, self.codec
        device = next(model.parameters()).device
        if codec.causal:
            inputs, mask, labels = prompted_batch(source_ids, target_ids, codec.pad_id, device)
            logits = model(input_ids=inputs, attention_mask=mask).logits
            return sequence_logprobs(logits, labels.clamp(min=0), labels != -100)
        enc, mask = padded(source_ids, codec.pad_id, device)
        return self.target_logprobs(target_ids, input_ids=enc, attention_mask=mask)

    def target_logprobs(self, target_ids: list[list[int]], **encoder_inputs) -> list[tuple[float, int]]:
        """A seq2seq model's (sum log-prob, token count) of each target id sequence, read after the start token
        and the forced prefix, given `encoder_inputs` (input ids, or encoder outputs, and the attention mask)."""
        device = next(self.model.parameters()).device
        labels = pad_batch(target_ids, -100, device)
        prefix = self.start_ids(len(target_ids), device)
        logits = self.model(**encoder_inputs, decoder_input_ids=torch.cat([prefix, labels[:, :-1].clamp(min=0)], 1)
                            ).logits[:, prefix.shape[1] - 1 :]
        if self.codec.masks_pad:
            logits[..., self.codec.pad_id] = float("-inf")  # <pad> is never a real output (matches CTranslate2)
        return sequence_logprobs(logits, labels.clamp(min=0), labels != -100)

    @torch.no_grad()
    def scored(self, sources: list[str], target_ids: list[list[int]], max_len: int = 256) -> list[tuple[float, int]]:
        """(sum log-prob, count) of target id sequences (as `generate` returns them) given their sources."""
        return self.scored_ids(self.codec.source_ids(sources, max_len), target_ids)

    @torch.no_grad()
    def forced_logprobs(self, inputs: list[str], outputs: list[list[str]], batch_size: int = 16,
                        max_len: int = 256, reverse: bool = False) -> list[tuple[float, int]]:
        """As `Translator.forced_logprobs`. A seq2seq model encodes each input once for all its outputs; a
        causal LM reads prompt and output together, the prompt not scored. The log-probs are the model's
        own, with a retrieval too (it mixes into decoding only)."""
        model, codec = self.model, self.codec
        device = next(model.parameters()).device
        results = []
        for start in tqdm(range(0, len(inputs), batch_size), desc="score", mininterval=30):
            src = codec.source_ids(inputs[start : start + batch_size], max_len)
            outs = outputs[start : start + batch_size]
            targets = codec.target_ids([o for os in outs for o in os], max_len, reverse)
            owner = [i for i, o in enumerate(outs) for _ in o]
            if codec.causal:
                results.extend(self.scored_ids([src[i] for i in owner], targets))
                continue
            enc, mask = padded(src, codec.pad_id, device)
            encoded = model.get_encoder()(input_ids=enc, attention_mask=mask).last_hidden_state
            rows = torch.tensor(owner, device=device, dtype=torch.long)
            results.extend(self.target_logprobs(targets, encoder_outputs=(encoded[rows],), attention_mask=mask[rows]))
        return results


def load(path: str | Path, what: str = "model", threads: int = 1, compute_type: str = "default",
         profile: families.Profile | None = None) -> HFTranslator:
    """A model directory or Hugging Face id, fed as its saved profile says (or `profile`); threads are
    torch's (`models.set_threads`), and the compute type is the model's own."""
    profile = profile or (families.Profile.load(path) if Path(str(path)).is_dir() else families.Profile())
    model, tokenizer = models.load(path, what, causal=not families.FAMILIES[profile.family].seq2seq)
    return HFTranslator(model, tokenizer, profile=profile)
