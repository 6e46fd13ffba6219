"""Tune the kNN mixing weight beta of a retrieval-augmented student on the dev set.

The student (a model directory with the projection head its reaugkd training saved) decodes dev
once per beta with p = (1 - beta) p_student + beta p_kNN at every step; sacreBLEU BLEU against every
reference picks the beta (ties: the smaller, so retrieval must earn its cost). Output (JSON): the
curve (BLEU, chrF and decoding seconds per beta), the best beta, neighbours, relational_tau and
the knowledge base it searched.
"""

from __future__ import annotations

import argparse
import logging
import time

import sacrebleu

from . import models
from .backends.hf import HFTranslator
from .core.cli import run_main
from .core.io import InputError, read_table, write_json
from .core.metrics import reference_streams
from .objectives import OBJECTIVES
from .retrieval.knn import Retrieval, check_beta, set_search_threads

log = logging.getLogger("mtdistill")


def best_beta(curve: list[dict]) -> dict:
    """The point of highest BLEU; among equals, the smallest beta."""
    return min(curve, key=lambda point: (-point["bleu"], point["beta"]))


def tune(model_path: str, kb: list[str], dev_path: str, betas: list[float], beam: int = 1, batch_size: int = 32,
         max_len_a: float = 1.5, max_len_b: int = 10) -> dict:
    if not betas:
        raise InputError("--betas: no value given")
    betas = [check_beta(beta, "--betas") for beta in betas]
    if len(set(betas)) != len(betas):
        raise InputError(f"--betas: {betas} lists a value twice")
    model, tokenizer = models.load(model_path)
    retrieval = Retrieval.load(model_path, kb)
    translator = HFTranslator(model, tokenizer, retrieval)
    dev = read_table(dev_path)
    refs, sources = reference_streams(dev), list(dev.source)
    bleu, chrf = sacrebleu.metrics.BLEU(), sacrebleu.metrics.CHRF()
    curve = []
    for beta in betas:
        retrieval.beta = beta
        started = time.perf_counter()
        hyps = translator.best_translations(sources, beam=beam, batch_size=batch_size, max_len_a=max_len_a,
                                            max_len_b=max_len_b, progress=True)
        seconds = time.perf_counter() - started
        curve.append({"beta": beta, "bleu": bleu.corpus_score(hyps, refs).score,
                      "chrf": chrf.corpus_score(hyps, refs).score, "seconds": seconds})
        log.info("beta %.2f: dev BLEU %.2f chrF %.2f, %.1f s", beta, curve[-1]["bleu"], curve[-1]["chrf"], seconds)
    best = best_beta(curve)
    log.info("best beta %.2f (dev BLEU %.2f)", best["beta"], best["bleu"])
    return {"model": str(model_path), "dev": str(dev_path), "dev_sentences": len(sources), "references": len(refs),
            "beam": beam, "batch_size": batch_size, "max_len_a": max_len_a, "max_len_b": max_len_b,
            "best_beta": best["beta"], "best_bleu": best["bleu"], "curve": curve,
            "bleu_signature": str(bleu.get_signature()), "chrf_signature": str(chrf.get_signature()),
            **{key: value for key, value in retrieval.describe().items() if key != "beta"}}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", required=True, help="student model directory with its retrieval head")
    p.add_argument("--kb", nargs="+", required=True, help="knowledge-base shard directories (mtdistill.build_kb)")
    p.add_argument("--dev", required=True, help="dev table with source, target and references")
    p.add_argument("--betas", nargs="+", type=float, default=OBJECTIVES["reaugkd"].keys["betas"],
                   help="mixing weights to try, each in [0, 1] (reaugkd's grid)")
    p.add_argument("--beam", type=int, default=1, help="beam size of the dev decoding (1: greedy)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-len-a", type=float, default=1.5, help="output length limit: a * source tokens + b")
    p.add_argument("--max-len-b", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True, help="tuned beta and the dev curve (JSON)")
    return p.parse_args(argv)


def run(args) -> None:
    models.set_threads(args.threads)
    set_search_threads(args.threads)
    result = tune(args.model, args.kb, args.dev, args.betas, args.beam, args.batch_size, args.max_len_a, args.max_len_b)
    write_json({**result, "threads": args.threads}, args.out)


def main(argv=None) -> int:
    return run_main(run, parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
