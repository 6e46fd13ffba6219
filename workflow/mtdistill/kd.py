"""Distillation objectives for `train.train`: word-level KD, speculative KD and its special cases, pruning.

- WordKD (Kim & Rush 2016): (1 - alpha) * CE(labels) + alpha * tau^2 * KL(teacher || student) per
  label token; the teacher runs frozen in the loop, or its top-k next-token log-probabilities were
  precomputed (`teacher_topk`) and the KL is truncated to them.
- SpeculativeKD (Xu et al. 2024): per batch the student drafts `gamma` tokens by sampling; one
  teacher pass scores prefix plus drafts; a draft is kept if and only if it is among the teacher's
  top-K tokens by raw logits (the token actually drafted); the first rejected one is replaced by a
  teacher sample; until EOS or the length limit (decoding's: max_len_a * source tokens + max_len_b
  generated tokens, EOS included, never beyond max_len). Loss: token-averaged forward KL(teacher || student)
  on the finished sequences, no gradient through generation. K >= vocabulary size keeps every
  student token (on-policy KD); K = 0 keeps none (teacher-generated sequences); `supervised` applies
  the same KL to the label sequences without sampling (supervised KD).
- Pruned: global magnitude pruning of the student's linear weights, then cross-entropy retraining.

Under torchrun every rank runs the objective on its own batches: the teachers are frozen copies per
rank, SKD drafts with the unwrapped student (no DDP forward without a backward) from a generator
seeded per rank.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch.nn.utils import prune

from . import models
from .core.io import InputError
from .train import CrossEntropy

log = logging.getLogger("mtdistill")


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


def check_cache_covers(path: str, cache: dict, pairs, max_len: int) -> None:
    """Every label position trained on needs its cached teacher row: a missing one would be KL towards `</s>`."""
    short = [i for i, (_, label) in enumerate(pairs) if len(label) > len(cache["ids"][i])]
    if short:
        i = short[0]
        raise InputError(f"{path}: built with max_len {cache.get('max_len', 'unknown (not recorded)')}, but training uses "
                         f"max_len {max_len}: {len(short)} label(s) are longer than their cached rows (row {i}: "
                         f"{len(pairs[i][1])} tokens, {len(cache['ids'][i])} cached); rebuild it with "
                         f"teacher_topk --max-len {max_len}")


class WordKD(CrossEntropy):
    checkpointed = ("window",)

    def __init__(self, teacher: str, alpha: float, tau: float, label_smoothing: float = 0.0, topk_path: str | None = None,
                 max_len: int = 128):
        super().__init__(label_smoothing)
        self.teacher_path, self.alpha, self.tau, self.topk_path, self.max_len = teacher, alpha, tau, topk_path, max_len
        self.window = {"ce": 0.0, "kd": 0.0, "tokens": 0}

    def prepare(self, model, tokenizer, table, pairs, device) -> None:
        if self.topk_path:
            cache = torch.load(self.topk_path, weights_only=False)
            if list(cache["sent_ids"]) != list(table.sent_id):
                raise InputError(f"{self.topk_path}: its sentences are not the training table's (rebuild it)")
            check_cache_covers(self.topk_path, cache, pairs, self.max_len)
            check_shared_vocabulary(models.load_tokenizer(cache["teacher"]), tokenizer, cache["teacher"])
            self.topk = cache
        else:
            self.teacher = load_teacher(self.teacher_path, tokenizer, device)

    def teacher_term(self, batch, labels, indices, student_logits) -> torch.Tensor:
        mask = (labels != -100).float()
        if not self.topk_path:
            with torch.no_grad():
                teacher_logits = self.teacher(**batch).logits
            return forward_kl(teacher_logits, student_logits, mask, self.tau)
        width = labels.shape[1]
        ids = torch.zeros(*labels.shape, self.topk["k"], dtype=torch.long)
        logprobs = torch.full((*labels.shape, self.topk["k"]), -1e4)
        for row, index in enumerate(indices):
            length = min(width, len(self.topk["ids"][index]))
            ids[row, :length] = self.topk["ids"][index][:length].long()
            logprobs[row, :length] = self.topk["logprobs"][index][:length].float()
        return truncated_kl(ids.to(labels.device), logprobs.to(labels.device), student_logits, mask, self.tau)

    def __call__(self, model, batch, labels, indices):
        logits = model(**batch).logits
        tokens = int((labels != -100).sum())
        ce = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100,
                             label_smoothing=self.label_smoothing, reduction="sum")
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


class SpeculativeKD(CrossEntropy):
    """Forward KL(teacher || student) on speculative sequences, or on the labels (`supervised`)."""

    checkpointed = ("window", "acceptance")

    def __init__(self, teacher: str, k: int, gamma: int, student_sampling=(0.5, 0.5), teacher_sampling=(0.2, 0.5),
                 supervised: bool = False, max_len: int = 128, seed: int = 1, max_len_a: float = 1.5, max_len_b: int = 10):
        super().__init__()
        self.teacher_path, self.k, self.gamma, self.supervised = teacher, k, gamma, supervised
        self.student_sampling, self.teacher_sampling, self.max_len, self.seed = student_sampling, teacher_sampling, max_len, seed
        self.max_len_a, self.max_len_b = max_len_a, max_len_b
        self.generator = torch.Generator()
        self.window = {"kept": 0, "generated": 0, "kl": 0.0, "tokens": 0}
        self.acceptance: list[float] = []  # per step: the fraction of generated tokens the student drafted

    def prepare(self, model, tokenizer, table, pairs, device) -> None:
        self.teacher = load_teacher(self.teacher_path, tokenizer, device)
        self.tokenizer = tokenizer
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        self.generator.manual_seed(self.seed + rank)  # under torchrun each rank samples its own sequences
        self.speculator = speculator(model, self.teacher, tokenizer, self.k, self.gamma, self.student_sampling,
                                     self.teacher_sampling, self.max_len, self.generator, self.max_len_a, self.max_len_b)

    def sequence_batch(self, model, batch, labels):
        """Labels of the speculative sequences, collated like training labels."""
        was_training = model.training
        model.eval()  # drafting samples from the student as it decodes: no dropout
        sequences, kept, generated = self.speculator.generate(batch["input_ids"], batch["attention_mask"])
        model.train(was_training)
        self.window["kept"] += kept
        self.window["generated"] += generated
        self.acceptance.append(kept / max(generated, 1))
        device = labels.device
        labels = torch.nn.utils.rnn.pad_sequence([torch.tensor(s) for s in sequences], batch_first=True, padding_value=-100)
        start = torch.full((len(sequences), 1), self.speculator.start)
        shifted = torch.cat([start, labels[:, :-1].masked_fill(labels[:, :-1] == -100, self.speculator.pad)], 1)
        return {**batch, "decoder_input_ids": shifted.to(device)}, labels.to(device)

    def __call__(self, model, batch, labels, indices):
        if not self.supervised:
            batch, labels = self.sequence_batch(model, batch, labels)
        mask = (labels != -100).float()
        with torch.no_grad():
            teacher_logits = self.teacher(**batch).logits
        kl = forward_kl(teacher_logits, model(**batch).logits, mask)
        tokens = int(mask.sum())
        self.window["kl"] += kl.item()
        self.window["tokens"] += tokens
        return kl, tokens

    def window_metrics(self) -> dict:
        metrics = {"kl_per_token": self.window["kl"] / max(self.window["tokens"], 1)}
        if not self.supervised:
            metrics["acceptance_rate"] = self.window["kept"] / max(self.window["generated"], 1)
        self.window = {"kept": 0, "generated": 0, "kl": 0.0, "tokens": 0}
        return metrics

    def state_dict(self) -> dict:
        return {**super().state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.generator.set_state(state["generator"])  # in place: the speculator holds this generator

    def summary(self) -> dict:
        """The K and gamma trained with (K as given: -1 is the vocabulary) and the acceptance per step."""
        if self.supervised:
            return {}
        return {"k": self.k, "gamma": self.gamma, "max_len_a": self.max_len_a, "max_len_b": self.max_len_b,
                "acceptance_per_step": self.acceptance}

    def write(self, outdir) -> None:
        if self.supervised or not self.acceptance:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(figsize=(6, 3.5))
        axes.plot(range(1, len(self.acceptance) + 1), self.acceptance, lw=1)
        axes.set(xlabel="training step", ylabel="student tokens kept", ylim=(0, 1.02),
                 title=f"Speculative KD acceptance rate (K={self.speculator.k}, gamma={self.gamma})")
        axes.grid(alpha=0.3)
        figure.tight_layout()
        figure.savefig(outdir / "acceptance.png", dpi=120)
        plt.close(figure)


def prunable(model) -> list[torch.nn.Linear]:
    """The linear layers of the encoder and decoder (the output projection is tied to the embeddings)."""
    output = model.get_output_embeddings()
    return [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not output]


class Pruned(CrossEntropy):
    """Global magnitude pruning of the layers' linear weights, kept pruned while retraining with cross-entropy.

    The masks are buffers of the model (`weight_mask`), so checkpoints of the model hold them."""

    checkpointed = ("before",)

    def __init__(self, fraction: float, label_smoothing: float = 0.0):
        super().__init__(label_smoothing)
        self.fraction = fraction

    def prepare(self, model, tokenizer, table, pairs, device) -> None:
        self.before = models.nonzero_parameters(model)
        weights = [(m, "weight") for m in prunable(model)]
        prune.global_unstructured(weights, pruning_method=prune.L1Unstructured, amount=self.fraction)
        log.info("pruned %.0f%% of linear weights: %d -> %d non-zero parameters", 100 * self.fraction,
                 self.before, models.nonzero_parameters(model))

    def finish(self, model) -> None:
        for module in model.modules():
            if prune.is_pruned(module) and hasattr(module, "weight_mask"):
                prune.remove(module, "weight")

    def summary(self) -> dict:
        return {"prune_fraction": self.fraction, "nonzero_before": self.before}
