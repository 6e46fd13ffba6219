"""Paired bootstrap resampling (Koehn 2004) of every system of a round against a baseline, the
sequence-level KD student: sacreBLEU's own test for BLEU, chrF and TER on the beam outputs of the
evaluation JSONs, and the same resamples over the per-segment scores for COMET when every system
has them. Output: score, bootstrap mean, 95% confidence interval and p-value per system and metric.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os

import numpy as np
from sacrebleu.metrics import BLEU, CHRF, TER
from sacrebleu.significance import PairedTest, estimate_ci

from .core.metrics import reference_streams
from .core.io import InputError, read_json, read_table, write_json
from .core.cli import run_main

log = logging.getLogger("mtdistill")
DECODING = "beam"
# sacrebleu's result names of the metrics
METRICS = {"bleu": "BLEU", "chrf": "chrF2", "ter": "TER"}
# sacreBLEU takes seed 0 to mean "unseeded" (entropy from the OS): resample with its default seed instead
SEED_FOR_ZERO = 12345


@contextlib.contextmanager
def sacrebleu_seed(seed: int):
    """sacreBLEU seeds the baseline's resamples from SACREBLEU_SEED (the systems' from it too)."""
    previous = os.environ.get("SACREBLEU_SEED")
    os.environ["SACREBLEU_SEED"] = str(seed)
    try:
        yield
    finally:
        if previous is None:
            del os.environ["SACREBLEU_SEED"]
        else:
            os.environ["SACREBLEU_SEED"] = previous


def summary(score: float, mean: float, half_width: float, p_value: float | None) -> dict:
    # sacreBLEU's 95% CI: the bootstrap mean +- half the spread between the 2.5th and 97.5th percentiles
    return {"score": float(score), "mean": float(mean), "ci": [float(mean - half_width), float(mean + half_width)],
            "p_value": None if p_value is None else float(p_value)}


def paired_mean_bootstrap(system: np.ndarray, baseline: np.ndarray, samples: int, seed: int) -> tuple[float, float, float]:
    """(mean, CI half width, p-value) of a segment-averaged metric (COMET), resampled as sacreBLEU's test does."""
    idxs = np.random.default_rng(seed).choice(len(system), size=(samples, len(system)), replace=True)
    system_scores, baseline_scores = system[idxs].mean(axis=1), baseline[idxs].mean(axis=1)
    mean, half_width = estimate_ci(system_scores)
    differences = np.abs(system_scores - baseline_scores)
    if not differences.any():  # the same scores: nothing to test (sacreBLEU's formula would give 1/(samples+1))
        return mean, half_width, 1.0
    p_value = (np.sum(differences - differences.mean() > abs(system.mean() - baseline.mean())) + 1) / (samples + 1)
    return mean, half_width, p_value


def compare(hypotheses: dict[str, list[str]], references: list[list[str]], baseline: str, samples: int = 1000,
            seed: int = 1, comet: dict[str, list[float]] | None = None) -> dict:
    """Every system of `hypotheses` against `baseline`: {"signatures", "systems": {name: {metric: summary}}}."""
    if baseline not in hypotheses:
        raise InputError(f"significance: baseline {baseline!r} is not among the systems ({', '.join(hypotheses)})")
    seed = seed or SEED_FOR_ZERO
    others = [name for name in hypotheses if name != baseline]
    named = [(baseline, hypotheses[baseline])] + [(name, hypotheses[name]) for name in others]
    metrics = {"bleu": BLEU(), "chrf": CHRF(), "ter": TER()}
    with sacrebleu_seed(seed):
        signatures, results = PairedTest(named, metrics, references, test_type="bs", n_samples=samples)()
    systems = {name: {} for name, _ in named}
    for metric, key in METRICS.items():
        for (name, hyps), result in zip(named, results[key]):
            p_value = result.p_value
            if name != baseline and hyps == hypotheses[baseline]:
                # every resampled difference is 0 and sacreBLEU's test then reports 1/(samples+1)
                p_value = 1.0
            systems[name][metric] = summary(result.score, result.mean, result.ci, p_value)
    signatures = {metric: str(signatures[key]) for metric, key in METRICS.items()}
    if comet:
        for name, _ in named:
            system, reference = np.asarray(comet[name], dtype=float), np.asarray(comet[baseline], dtype=float)
            mean, half_width, p_value = paired_mean_bootstrap(system, reference, samples, seed)
            systems[name]["comet"] = summary(system.mean(), mean, half_width, None if name == baseline else p_value)
        signatures["comet"] = f"segment mean|bs:{samples}|seed:{seed}"
    return {"baseline": baseline, "samples": samples, "seed": seed, "signatures": signatures, "systems": systems}


def load_outputs(paths: list[str], test_sentences: int) -> tuple[dict[str, list[str]], dict[str, list[float]] | None]:
    """Beam hypotheses (and COMET segment scores, when every file has them) per system name."""
    hypotheses, comet = {}, {}
    for path in paths:
        evaluation = read_json(path)
        try:
            name, decoding = evaluation["system"], evaluation[DECODING]
            hyps = decoding["hypotheses"]
        except KeyError as err:
            raise InputError(f"{path}: evaluation without key {err.args[0]!r}") from None
        if len(hyps) != test_sentences:
            raise InputError(f"{path}: {len(hyps)} {DECODING} hypotheses for a test set of {test_sentences} sentences")
        if name in hypotheses:
            raise InputError(f"{path}: system {name!r} given twice")
        hypotheses[name] = hyps
        if "comet_segments" in decoding:
            comet[name] = decoding["comet_segments"]
    return hypotheses, comet if len(comet) == len(hypotheses) else None


def significance(evaluations: list[str], test: str, pairs: list[tuple[str, str]], round_: int, samples: int,
                 seed: int) -> dict:
    """Each (system, baseline) pair tested; `systems` holds the first baseline's group, as the figures read it."""
    references = reference_streams(read_table(test))
    hypotheses, comet = load_outputs(evaluations, len(references[0]))
    for system, baseline in pairs:
        for name in (system, baseline):
            if name not in hypotheses:
                raise InputError(f"comparison {system}:{baseline}: no evaluation of {name!r} among {', '.join(evaluations)}")
    groups = {}
    for system, baseline in pairs:
        groups.setdefault(baseline, []).append(system)
    results = {}
    for baseline, systems in groups.items():
        named = {name: hypotheses[name] for name in [baseline, *systems]}
        scores = {name: comet[name] for name in named} if comet else None
        results[baseline] = compare(named, references, baseline, samples, seed, scores)
    comparisons = []
    for system, baseline in pairs:
        tested = results[baseline]["systems"]
        comparisons.append({"system": system, "baseline": baseline, "metrics": {
            metric: {**result, "baseline_score": tested[baseline][metric]["score"],
                     "delta": result["score"] - tested[baseline][metric]["score"]}
            for metric, result in tested[system].items()}})
    first = results[pairs[0][1]]
    return {"round": round_, **first, "comparisons": comparisons}


def parse_pair(text: str) -> tuple[str, str]:
    system, sep, baseline = text.partition(":")
    if not (sep and system and baseline):
        raise argparse.ArgumentTypeError(f"{text!r}: expected SYSTEM:BASELINE")
    return system, baseline


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--evaluations", nargs="+", required=True, help="evaluation JSON files of one round")
    p.add_argument("--test", required=True, help="test table with target and references")
    p.add_argument("--comparisons", nargs="+", type=parse_pair, required=True,
                   help="SYSTEM:BASELINE pairs to test (systems of this round)")
    p.add_argument("--round", type=int, default=0)
    p.add_argument("--samples", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", required=True, help="significance (JSON)")
    return p.parse_args(argv)


def run(args) -> None:
    result = significance(args.evaluations, args.test, args.comparisons, args.round, args.samples, args.seed)
    for pair in result["comparisons"]:
        log.info("%s vs %s: %s", pair["system"], pair["baseline"], ", ".join(
            f"{m} {r['score']:.2f} [{r['ci'][0]:.2f}, {r['ci'][1]:.2f}] delta {r['delta']:+.2f} p={r['p_value']}"
            for m, r in pair["metrics"].items()))
    write_json(result, args.out)


def main(argv=None) -> int:
    return run_main(run, parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
