"""Label strategies' registry, the `Strategy` record and the options strategies read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..core.registry import Registry
from .quality import FilterThresholds

INPUTS = ("reranker", "mbr")  # the extra inputs a strategy may ask the workflow for


@dataclass(frozen=True)
class LabelOptions:
    """What strategies may read besides the candidates: the reranker's weights file, the MBR
    utility column, Seq-Inter's choices and the degenerate-hypothesis filter."""

    weights_path: str | None = None
    mbr_feature: str = "mbr_chrf"
    thresholds: FilterThresholds = FilterThresholds()
    seqinter_candidates: str = "l2r"
    seqinter_references: str = "first"


@dataclass(frozen=True)
class Strategy:
    """`choose(candidates, sentences, options)` returns one row per sentence it labels (sent_id,
    hyp_id, hypothesis[, from_l2r, from_r2l]). Without `uses_nbest` it gets the sentences as
    candidates (hypothesis = target, hyp_id -1) and no filter runs."""

    choose: Callable
    needs_reference: bool = False
    inputs: tuple[str, ...] = ()
    candidates: str | Callable[[LabelOptions], str] = "merged"
    uses_nbest: bool = True

    def candidate_rows(self, options: LabelOptions) -> str:
        """'l2r' (the teacher's own beam) or 'merged' (every decoder's hypotheses)."""
        return self.candidates(options) if callable(self.candidates) else self.candidates


STRATEGIES: Registry[Strategy] = Registry("label_strategies")


def strategy(name: str, **attributes) -> Callable:
    """Decorator: register the decorated `choose` function as strategy `name`."""
    unknown = set(attributes.get("inputs", ())) - set(INPUTS)
    if unknown:
        raise ValueError(f"strategy {name}: unknown input(s) {', '.join(sorted(unknown))} (known: {', '.join(INPUTS)})")

    def register(choose: Callable) -> Callable:
        STRATEGIES.add(name, Strategy(choose, **attributes))
        return choose
    return register

