"""Evaluate one system on the test set: sacreBLEU BLEU and chrF (multi-reference, with
signatures) for greedy and beam decoding, parameter count, size on disk and sentences/s."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import sacrebleu

from . import models
from .decode import best_translations
from .features import reference_streams
from .files import read_table, run_main, write_json

log = logging.getLogger("mtdistill")


def disk_megabytes(path: str) -> float | None:
    path = Path(path)
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20 if path.is_dir() else None


def evaluate(model_path: str, test_path: str, beam: int, batch_size: int) -> dict:
    model, tokenizer = models.load(model_path)
    test = read_table(test_path)
    refs = reference_streams(test)
    result = {"model": str(model_path), "parameters": models.count_parameters(model),
              "nonzero_parameters": models.nonzero_parameters(model),
              "size_mb": disk_megabytes(model_path), "test_sentences": len(test), "references": len(refs)}
    for decoding, width in (("greedy", 1), ("beam", beam)):
        started = time.perf_counter()
        hyps = best_translations(model, tokenizer, list(test.source), beam=width, batch_size=batch_size)
        seconds = time.perf_counter() - started
        bleu = sacrebleu.metrics.BLEU()
        chrf = sacrebleu.metrics.CHRF()
        result[decoding] = {
            "beam": width,
            "bleu": bleu.corpus_score(hyps, refs).score, "bleu_signature": str(bleu.get_signature()),
            "chrf": chrf.corpus_score(hyps, refs).score, "chrf_signature": str(chrf.get_signature()),
            "seconds": seconds, "sentences_per_s": len(hyps) / seconds, "batch_size": batch_size,
            "hypotheses": hyps,
        }
        log.info("%s: BLEU %.2f chrF %.2f, %.1f sent/s", decoding, result[decoding]["bleu"], result[decoding]["chrf"], result[decoding]["sentences_per_s"])
    return result


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", required=True)
    p.add_argument("--test", required=True, help="test table with source, target and references")
    p.add_argument("--system", required=True, help="system name in the report")
    p.add_argument("--strategy", default="-", help="label strategy the system was trained on")
    p.add_argument("--round", type=int, default=0, help="self-training round of its labels (or of the teacher)")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True, help="metrics (JSON)")
    return p.parse_args(argv)


def run(args) -> None:
    models.set_threads(args.threads)
    result = {"system": args.system, "strategy": args.strategy, "round": args.round, "threads": args.threads}
    result.update(evaluate(args.model, args.test, args.beam, args.batch_size))
    write_json(result, args.out)


def main(argv=None) -> int:
    return run_main(run, parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
