"""Reference-based COMET of one system's test-set evaluation (config key evaluation.comet).

Reads the JSON mtdistill.evaluate wrote and the test table, scores the hypotheses of each decoding
(greedy, beam) against the test set's target with the checkpoint, and writes the evaluation again
with, per decoding, `comet` (the system score: mean of the segments) and `comet_segments` (one score
per test sentence, which compare_systems resamples), and `comet_checkpoint` at the top level.

It runs in the COMET environment (envs/comet.txt: unbabel-comet pins transformers<5 and numpy<2),
apart from evaluate, which decodes in the main one; so it imports no decoding backend."""

from __future__ import annotations

import argparse
import logging

import numpy as np
import pandas as pd

from .core.cli import run_main
from .core.io import InputError, read_json, read_table, write_json

log = logging.getLogger("mtdistill")

DECODINGS = ("greedy", "beam")  # the decodings whose hypotheses mtdistill.evaluate keeps
CONFIG_KEY = "evaluation.comet"


def comet_scores(model, test: pd.DataFrame, outputs: dict[str, list[str]], batch_size: int,
                 gpus: int) -> dict[str, dict]:
    """Per decoding: the system-level COMET (mean of segments) and every segment's score.

    One predict call for every decoding (each call builds a Lightning Trainer); the reference is
    the test set's target (COMET takes one reference per segment)."""
    from .scorers.comet import predict, segments, uses_references

    inputs = segments([*test.source] * len(outputs), [hyp for hyps in outputs.values() for hyp in hyps],
                      [*test.target] * len(outputs), uses_references(model))
    scores = np.asarray(predict(model, inputs, batch_size, gpus), dtype=float)
    per_decoding = np.split(scores, len(outputs))
    return {name: {"comet": float(s.mean()), "comet_segments": s.tolist()} for name, s in zip(outputs, per_decoding)}


def decoded(evaluation: dict, path: str, sentences: int) -> dict[str, list[str]]:
    """The hypotheses of every decoding of an evaluation, one per test sentence."""
    outputs = {}
    for decoding in DECODINGS:
        hyps = evaluation.get(decoding, {}).get("hypotheses")
        if hyps is None:
            raise InputError(f"--evaluation: {path} has no {decoding} hypotheses (not written by mtdistill.evaluate)")
        if len(hyps) != sentences:
            raise InputError(f"--evaluation: {path} has {len(hyps)} {decoding} hypotheses for a test set of {sentences}"
                             " sentences: evaluated on another test set")
        outputs[decoding] = hyps
    return outputs


def add_comet(evaluation: dict, path: str, test: pd.DataFrame, checkpoint: str, encoder: str | None,
              batch_size: int, gpus: int | None = None) -> dict:
    """`evaluation` with the COMET scores of its decodings, as evaluate wrote them before COMET moved here."""
    import torch

    from .scorers.comet import load_comet

    outputs = decoded(evaluation, path, len(test))
    model = load_comet(checkpoint, CONFIG_KEY, encoder, label=f"config key {CONFIG_KEY}",
                       encoder_key="set evaluation.comet_encoder to a local XLM-R tokenizer+config directory")
    if gpus is None:
        gpus = int(torch.cuda.is_available())
    result = {**evaluation, **{decoding: dict(evaluation[decoding]) for decoding in outputs}}
    for decoding, scores in comet_scores(model, test, outputs, batch_size, gpus).items():
        result[decoding].update(scores)
        log.info("%s: COMET %.4f", decoding, scores["comet"])
    result["comet_checkpoint"] = str(checkpoint)
    return result


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--evaluation", required=True, help="the system's evaluation (mtdistill.evaluate JSON)")
    p.add_argument("--test", required=True, help="the test table it was evaluated on (source, target)")
    p.add_argument("--comet", required=True, help="reference-based COMET checkpoint (.ckpt or model directory)")
    p.add_argument("--comet-encoder", default="", help="local XLM-R tokenizer+config directory of the checkpoint")
    p.add_argument("--batch-size", type=int, default=32, help="segments per COMET batch")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True, help="the evaluation with COMET (JSON)")
    return p.parse_args(argv)


def run(args) -> None:
    import torch

    torch.set_num_threads(max(1, args.threads))
    evaluation = read_json(args.evaluation)
    test = read_table(args.test)
    result = add_comet(evaluation, args.evaluation, test, args.comet, args.comet_encoder or None, args.batch_size)
    write_json(result, args.out)


def main(argv=None) -> int:
    return run_main(run, parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
