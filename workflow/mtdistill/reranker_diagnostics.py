"""The reranker diagnostics file, results/round<r>/reranker/diagnostics.json: written by
`tune_reranker`, read by the report and the figures through this module alone.

Keys: labeller (the tuner whose weights label), metric (the sentence-level gain), evaluations, seed,
groups (scorer -> its feature columns), sets (tune/dev sizes), rows (per system: top1, oracle,
anti-oracle, every tuner, random, the labelling reranker; corpus BLEU/chrF on tune and dev), weights
(tuner -> feature -> weight), traces, single_features, ablation, selection (k, ranking, selected
scorers and the labelling weights), checks, lists (left-to-right lists against merged ones).
"""

from __future__ import annotations

from .core.io import InputError, read_json, write_json

REQUIRED = ("labeller", "rows", "weights")
PICKS = ("top1", "oracle", "anti-oracle")  # besides the labeller, every file has these rows


def build(*, labeller: str, metric: str, evaluations: int, seed: int, groups: dict, sets: dict, rows: list[dict],
          weights: dict, traces: dict, single_features: list[dict], ablation: list[dict], selection: dict,
          checks: dict, lists: dict) -> dict:
    return {"labeller": labeller, "metric": metric, "evaluations": evaluations, "seed": seed, "groups": groups,
            "sets": sets, "rows": rows, "weights": weights, "traces": traces, "single_features": single_features,
            "ablation": ablation, "selection": selection, "checks": checks, "lists": lists}


def write(diagnostics: dict, path) -> None:
    write_json(diagnostics, path)


def load(path) -> dict:
    """The diagnostics of `path`; an InputError naming the file when a key or a system's row is missing."""
    diagnostics = read_json(path)
    missing = [key for key in REQUIRED if key not in diagnostics]
    if missing:
        raise InputError(f"{path}: missing key(s) {', '.join(missing)}")
    systems = set(by_system(diagnostics))
    absent = [s for s in (*PICKS, diagnostics["labeller"]) if s not in systems]
    if absent:
        raise InputError(f"{path}: rows lack system(s) {', '.join(absent)}")
    return diagnostics


def by_system(diagnostics: dict) -> dict[str, dict]:
    """Each row by its system name: {"tune": {"bleu": ..., "chrf": ...}, "dev": {...}}."""
    return {row.get("system"): row for row in diagnostics["rows"]}


def selected_scorers(diagnostics: dict) -> list[str]:
    return diagnostics["selection"]["selected"]
