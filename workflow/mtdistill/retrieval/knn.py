"""Decoding with retrieval: at every step, p = (1 - beta) p_student + beta p_kNN (kNN-MT style).

A forward hook on the model's LM head keeps its input, the final decoder state of the step (with the
cache, the last position), and a `LogitsProcessor` queries the knowledge base with
normalize(P h), weights the `neighbours` nearest entries by softmax(cos / relational_tau) and mixes
their stored teacher distributions (top-k_v log-probs renormalised over k_v) into the student's.
Greedy search hands the processor raw logits and beam search log-softmaxed scores: the softmax of
either is the student's distribution, and the processor returns log p, which both searches take.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from ..core.io import InputError
from .head import HEAD_FILE, load_head
from .kb import KnowledgeBase


def output_layer(model) -> torch.nn.Module:
    """The module that turns the final decoder state into logits (Marian's lm_head)."""
    layer = model.get_output_embeddings()
    if layer is None:
        raise InputError(f"model: {type(model).__name__} has no output layer to read decoder states from")
    return layer


class DecoderStates:
    """The input of the LM head at its latest call, last position only: one row per hypothesis."""

    def __init__(self):
        self.last: torch.Tensor | None = None

    def keep(self, module, inputs, output) -> None:
        self.last = inputs[0][:, -1, :]


@contextlib.contextmanager
def captured_states(model):
    """A `DecoderStates` fed by a forward hook on the LM head, removed on exit."""
    states = DecoderStates()
    handle = output_layer(model).register_forward_hook(states.keep)
    try:
        yield states
    finally:
        handle.remove()


@dataclass
class Retrieval:
    """A knowledge base, the student's projection head and the mixing settings."""

    kb: KnowledgeBase
    head: torch.nn.Linear
    beta: float
    neighbours: int
    relational_tau: float

    @classmethod
    def load(cls, model_dir: str | Path, shards: list[str], beta: float = 0.0) -> "Retrieval":
        """The head (and its neighbours and relational_tau) saved in the student's directory, the KB's shards."""
        head, meta = load_head(model_dir)
        missing = [key for key in ("neighbours", "relational_tau") if key not in meta]
        if missing:
            raise InputError(f"{Path(model_dir) / HEAD_FILE}: no {', '.join(missing)} saved with the head")
        kb = KnowledgeBase.load(shards)
        if head.out_features != kb.dim:
            raise InputError(f"{Path(model_dir) / HEAD_FILE}: projects to {head.out_features} dimensions but the "
                             f"knowledge base {shards[0]} has {kb.dim}-dimensional keys")
        return cls(kb, head, check_beta(beta, "beta"), int(meta["neighbours"]), float(meta["relational_tau"]))

    def check_model(self, model) -> None:
        width = output_layer(model).in_features
        if self.head.in_features != width:
            raise InputError(f"{HEAD_FILE}: the head takes {self.head.in_features}-dimensional states but the "
                             f"model's decoder states have {width}")

    def queries(self, states: torch.Tensor) -> torch.Tensor:
        """normalize(P h): the key-space queries of decoder states (rows, d_model)."""
        head = self.head.to(states.device)
        return torch.nn.functional.normalize(head(states.float()), dim=-1)

    @torch.no_grad()
    def knn_distribution(self, states: torch.Tensor, vocab: int) -> torch.Tensor:
        """p_kNN (rows, vocab) of decoder states; a row whose search found no entry is all zeros."""
        cosines, ids = self.kb.search(self.queries(states).cpu().numpy(), self.neighbours)
        cosines = torch.from_numpy(cosines).to(states.device)
        found = torch.from_numpy(ids >= 0).to(states.device)
        tokens, logprobs = self.kb.values(ids.clip(min=0).reshape(-1))
        tokens = torch.from_numpy(tokens).to(states.device).view(*ids.shape, -1)
        if tokens.numel() and int(tokens.max()) >= vocab:
            raise InputError(f"{self.kb.shards[0]}: knowledge-base token id {int(tokens.max())} is outside the "
                             f"student's vocabulary of {vocab}: the KB was built with another tokenizer")
        stored = torch.from_numpy(logprobs).to(states.device).view(*ids.shape, -1).softmax(-1)  # renormalised over k_v
        weights = (cosines / self.relational_tau).masked_fill(~found, float("-inf"))
        weights = weights.softmax(-1).nan_to_num(0.0)  # rows without a neighbour: softmax of all -inf is NaN
        p_knn = torch.zeros(ids.shape[0], vocab, device=states.device)
        return p_knn.scatter_add_(1, tokens.flatten(1), (weights.unsqueeze(-1) * stored).flatten(1))

    def describe(self) -> dict:
        """What a result records of the retrieval it decoded with."""
        memory = self.kb.memory_bytes()
        searched = memory["index"] + memory["values"]  # what decoding holds; the keys file serves training
        return {"beta": self.beta, "neighbours": self.neighbours, "relational_tau": self.relational_tau,
                "kb": list(self.kb.shards), "kb_tokens": self.kb.size, "kb_memory_bytes": memory,
                "kb_memory_mb": searched / 2**20}

    @contextlib.contextmanager
    def mixing(self, model):
        """The logits processors of `generate` for decoding `model` with retrieval; the hook lives as long."""
        self.check_model(model)
        with captured_states(model) as states:
            yield LogitsProcessorList([KnnMixing(self, states)])


def set_search_threads(threads: int) -> None:
    """FAISS searches with every core unless told: the step's --threads, as torch gets them."""
    import faiss

    faiss.omp_set_num_threads(max(1, threads))


def check_beta(beta: float, what: str) -> float:
    if not 0.0 <= beta <= 1.0:
        raise InputError(f"{what}: {beta} is not a mixing weight in [0, 1]")
    return float(beta)


class KnnMixing(LogitsProcessor):
    """log((1 - beta) softmax(scores) + beta p_kNN), reading the step's decoder states from `states`."""

    def __init__(self, retrieval: Retrieval, states: DecoderStates):
        self.retrieval, self.states = retrieval, states

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        beta = self.retrieval.beta
        if beta == 0:  # the plain student, bit for bit
            return scores
        states = self.states.last
        if states is None or states.shape[0] != scores.shape[0]:
            raise RuntimeError(f"kNN mixing: {scores.shape[0]} hypotheses but the LM head's hook kept "
                               f"{None if states is None else states.shape[0]} decoder states")
        allowed = scores != float("-inf")
        p_student = scores.float().softmax(-1)
        p_knn = self.retrieval.knn_distribution(states, scores.shape[-1]) * allowed
        # the kNN mass on tokens the other processors forbid (<pad>) is spread over the allowed ones;
        # where the neighbours put none on them, the student's distribution stands in
        mass = p_knn.sum(-1, keepdim=True)
        p_knn = torch.where(mass > 0, p_knn / mass.clamp(min=1e-30), p_student)
        mixed = ((1 - beta) * p_student + beta * p_knn).log()
        return mixed.masked_fill(~allowed, float("-inf")).to(scores.dtype)
