"""Speculative generation (Xu et al. 2024), which speculative KD trains on and `skd_acceptance` measures.

Per batch the student drafts `gamma` tokens by sampling; one teacher pass scores prefix plus drafts;
a draft is kept if and only if it is among the teacher's top-K tokens by raw logits (the token
actually drafted); the first rejected one is replaced by a teacher sample; until EOS or the length
limit (decoding's: max_len_a * source tokens + max_len_b generated tokens, EOS included, never beyond
max_len). K >= vocabulary size keeps every student token (on-policy KD); K = 0 keeps none
(teacher-generated sequences).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sample(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None) -> torch.Tensor:
    """One token per row: argmax at temperature 0, else a nucleus (top-p) sample at that temperature."""
    if temperature == 0:
        return logits.argmax(-1)
    probs = F.softmax(logits.float() / temperature, -1)
    sorted_probs, order = probs.sort(-1, descending=True)
    outside = sorted_probs.cumsum(-1) - sorted_probs >= top_p  # the first token always stays
    sorted_probs = sorted_probs.masked_fill(outside, 0.0)
    choice = torch.multinomial(sorted_probs, 1, generator=generator)
    return order.gather(-1, choice).squeeze(-1)


def accepted_length(drafts: torch.Tensor, teacher_logits: torch.Tensor, k: int) -> int:
    """Leading drafted tokens that rank among the teacher's top k by raw logit (ties count as inside)."""
    if len(drafts) == 0:
        return 0
    drafted = teacher_logits.gather(-1, drafts[:, None])
    rank = (teacher_logits > drafted).sum(-1)  # tokens strictly better than the drafted one
    inside = (rank < k).long()
    return int(inside.cumprod(0).sum())


class Speculator:
    """Speculative sequence generation for a batch of sources; the student's and teacher's encoders run once."""

    def __init__(self, student, teacher, tokenizer, k: int, gamma: int, student_sampling=(0.5, 0.5),
                 teacher_sampling=(0.2, 0.5), max_len: int = 128, generator: torch.Generator | None = None,
                 max_len_a: float = 1.5, max_len_b: int = 10):
        self.student, self.teacher, self.k, self.gamma = student, teacher, k, gamma
        self.student_sampling, self.teacher_sampling, self.max_len, self.generator = student_sampling, teacher_sampling, max_len, generator
        self.max_len_a, self.max_len_b = max_len_a, max_len_b
        self.start, self.eos, self.pad = student.config.decoder_start_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id

    def limits(self, attention_mask: torch.Tensor) -> list[int]:
        """Per sentence, the most tokens it may generate (EOS included, the start token not), as decoding's
        max_new_tokens: max_len_a * its source tokens (EOS included) + max_len_b, at most max_len, at least 1."""
        return [max(1, min(self.max_len, int(self.max_len_a * n + self.max_len_b))) for n in attention_mask.sum(1).tolist()]

    def next_logits(self, model, encoded, attention_mask, prefixes: list[list[int]], rows: list[int]) -> torch.Tensor:
        """(len(rows), longest, V) decoder logits of the given rows' prefixes, right-padded."""
        longest = max(len(prefixes[r]) for r in rows)
        ids = torch.full((len(rows), longest), self.pad, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, :len(prefixes[r])] = torch.tensor(prefixes[r])
        device = attention_mask.device
        logits = model(encoder_outputs=(encoded[rows],), attention_mask=attention_mask[rows],
                       decoder_input_ids=ids.to(device)).logits.float()
        logits[..., self.pad] = -float("inf")  # <pad> starts decoding; it is never an output
        return logits.cpu()

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[list[list[int]], int, int]:
        """Sequences (without the start token, EOS included when reached), student tokens kept, tokens generated."""
        student_enc = self.student.get_encoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        teacher_enc = self.teacher.get_encoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        sequences = [[self.start] for _ in range(len(input_ids))]
        limits = self.limits(attention_mask)  # a sequence holds the start token plus at most limits[r] tokens
        active = list(range(len(input_ids)))
        kept = generated = 0
        while active:
            drafts = {r: [] for r in active}
            if self.k > 0:  # K = 0 rejects every draft: do not draft at all
                drafting = list(active)
                for _ in range(self.gamma):
                    rows = [r for r in drafting if len(sequences[r]) + len(drafts[r]) <= limits[r]]
                    if not rows:
                        break
                    prefixes = {r: sequences[r] + drafts[r] for r in rows}
                    logits = self.next_logits(self.student, student_enc, attention_mask, prefixes, rows)
                    last = torch.stack([logits[i, len(prefixes[r]) - 1] for i, r in enumerate(rows)])
                    tokens = sample(last, *self.student_sampling, self.generator).tolist()
                    for r, token in zip(rows, tokens):
                        drafts[r].append(token)
                    drafting = [r for r in rows if drafts[r][-1] != self.eos]
            prefixes = {r: sequences[r] + drafts[r] for r in active}
            logits = self.next_logits(self.teacher, teacher_enc, attention_mask, prefixes, active)
            still = []
            for i, r in enumerate(active):
                start = len(sequences[r]) - 1  # teacher logits predicting drafts[r][0], drafts[r][1], ...
                proposed = torch.tensor(drafts[r], dtype=torch.long)
                n = accepted_length(proposed, logits[i, start:start + len(proposed)], self.k)
                new = drafts[r][:n]
                if n < len(drafts[r]) or not drafts[r]:  # the first rejected draft: a teacher sample instead
                    new.append(int(sample(logits[i, start + n][None], *self.teacher_sampling, self.generator)))
                sequences[r] += new
                kept, generated = kept + n, generated + len(new)
                if self.eos not in new and len(sequences[r]) <= limits[r]:
                    still.append(r)
            active = still
        return [s[1:] for s in sequences], kept, generated


def speculator(student, teacher, tokenizer, k: int, gamma: int, student_sampling, teacher_sampling, max_len: int,
               generator: torch.Generator | None, max_len_a: float, max_len_b: int) -> Speculator:
    """The Speculator of a K as given (-1: the whole vocabulary, on-policy KD): one place, so that
    `skd_acceptance` measures what training does."""
    return Speculator(student, teacher, tokenizer, len(tokenizer) if k < 0 else k, gamma, student_sampling,
                      teacher_sampling, max_len, generator, max_len_a, max_len_b)
