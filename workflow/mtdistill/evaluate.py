"""Evaluate one system on the test set: sacreBLEU BLEU, chrF and TER (multi-reference, with
signatures) for greedy and beam decoding, whose hypotheses the JSON keeps (COMET, which needs an
environment of its own, scores them afterwards: mtdistill.comet_evaluate, rule evaluate_comet);
parameter count, size on disk; sentences/s and target tokens/s of the
batched passes and of greedy decoding at batch size 1. Every decoding caps its output at
--max-len-a * source tokens + --max-len-b tokens (EOS included), as n-best decoding does. With
--retrieval (mtdistill.tune_retrieval's result) and --kb, every decoding mixes the knowledge base's
kNN distribution in with the tuned beta, so the speed figures include the retrieval's cost."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import sacrebleu

from . import backends, families, models
from .backends.hf import HFTranslator
from .core.metrics import reference_streams
from .core.io import InputError, read_json, read_table, write_json
from .core.cli import run_main
from .retrieval import KNN_SUFFIX
from .retrieval.knn import Retrieval, set_search_threads

log = logging.getLogger("mtdistill")


def disk_megabytes(path: str) -> float | None:
    path = Path(path)
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20 if path.is_dir() else None


def target_tokens(translator, texts: list[str]) -> int:
    """Target-side tokens the decoder produced for `texts`, EOS included (as training counts them), no
    forced language token or prompt."""
    return sum(len(ids) for ids in translator.codec.target_ids(texts, 10**6)) if texts else 0


def timed_decoding(translator, sources: list[str], beam: int, batch_size: int, max_len_a: float = 1.5,
                   max_len_b: int = 10) -> tuple[list[str], dict]:
    """Best translations and their speed; the length limit is decoding's, on either backend."""
    started = time.perf_counter()
    hyps = translator.best_translations(sources, beam=beam, batch_size=batch_size, max_len_a=max_len_a,
                                        max_len_b=max_len_b)
    seconds = time.perf_counter() - started
    tokens = target_tokens(translator, hyps)
    return hyps, {"beam": beam, "batch_size": batch_size, "sentences": len(hyps), "seconds": seconds,
                  "sentences_per_s": len(hyps) / seconds, "target_tokens": tokens, "target_tokens_per_s": tokens / seconds}


def quality(hyps: list[str], refs: list[list[str]]) -> dict:
    """Corpus BLEU, chrF and TER against every reference stream, each with its sacreBLEU signature."""
    scores = {}
    metrics = {"bleu": sacrebleu.metrics.BLEU(), "chrf": sacrebleu.metrics.CHRF(), "ter": sacrebleu.metrics.TER()}
    for name, metric in metrics.items():
        scores[name] = metric.corpus_score(hyps, refs).score
        scores[f"{name}_signature"] = str(metric.get_signature())
    return scores


def tuned_retrieval(model_path: str, tuned_path: str, kb: list[str]) -> tuple[Retrieval, dict]:
    """The retrieval `tuned_path` (mtdistill.tune_retrieval) chose, on the shards `kb`, and what to record of it."""
    tuned = read_json(tuned_path)
    if "best_beta" not in tuned:
        raise InputError(f"--retrieval: {tuned_path}: no best_beta (not written by mtdistill.tune_retrieval)")
    retrieval = Retrieval.load(model_path, kb, tuned["best_beta"])
    if tuned.get("kb_tokens", retrieval.kb.size) != retrieval.kb.size:
        raise InputError(f"--kb: {retrieval.kb.size} entries, but {tuned_path} tuned beta on a knowledge base of "
                         f"{tuned['kb_tokens']} ({', '.join(tuned.get('kb', []))})")
    return retrieval, {"tuned": str(tuned_path), "dev_bleu": tuned.get("best_bleu"), **retrieval.describe()}


def check_retrieval_options(backend: str, retrieval: str | None, kb: list[str] | None) -> None:
    if retrieval and backend != "hf":
        raise InputError(f"--retrieval needs --backend hf, not {backend}: CTranslate2 cannot mix a kNN "
                         "distribution into its decoding steps")
    if bool(retrieval) != bool(kb):
        raise InputError("--retrieval and --kb go together: the tuned beta (JSON) and the knowledge base's shards")


def evaluate(model_path: str, test_path: str, beam: int, batch_size: int, speed_sentences: int = 100,
             backend: str = "hf", translator: str | None = None, threads: int = 1, compute_type: str = "default",
             max_len_a: float = 1.5, max_len_b: int = 10, retrieval: str | None = None,
             kb: list[str] | None = None) -> dict:
    """Quality and speed of `model_path` on the test set; with backend ctranslate2 the decoding runs on
    `translator`, its conversion (parameters and size stay those of the `transformers` model); with
    `retrieval` (a tuned JSON) and `kb` (its shards), hf decoding mixes the kNN distribution in."""
    check_retrieval_options(backend, retrieval, kb)
    model, tokenizer = models.load(model_path)
    knn, knn_record = tuned_retrieval(model_path, retrieval, kb) if retrieval else (None, None)
    if backend == "hf":  # the model already loaded for its parameter count
        decoder = HFTranslator(model, tokenizer, knn, families.Profile.load(model_path))
    else:
        decoder = backends.load(translator, backend, "--translator", threads, compute_type)
    test = read_table(test_path)
    refs = reference_streams(test)
    sources = list(test.source)
    result = {"model": str(model_path), "parameters": models.count_parameters(model),
              "nonzero_parameters": models.nonzero_parameters(model),
              "size_mb": disk_megabytes(model_path), "test_sentences": len(test), "references": len(refs),
              "backend": backend, "max_len_a": max_len_a, "max_len_b": max_len_b,
              **({"retrieval": knn_record} if knn_record else {})}
    if knn_record:
        log.info("retrieval: beta %.2f, %d neighbours, knowledge base of %d entries (%.1f MB)", knn.beta,
                 knn.neighbours, knn.kb.size, knn_record["kb_memory_mb"])
    for decoding, width in (("greedy", 1), ("beam", beam)):
        hyps, speed = timed_decoding(decoder, sources, width, batch_size, max_len_a, max_len_b)
        result[decoding] = {**speed, **quality(hyps, refs), "hypotheses": hyps}
        log.info("%s: BLEU %.2f chrF %.2f TER %.2f, %.1f sent/s, %.0f target tok/s", decoding, result[decoding]["bleu"],
                 result[decoding]["chrf"], result[decoding]["ter"], speed["sentences_per_s"], speed["target_tokens_per_s"])
    # after the batched passes, so the model is warm; one sentence at a time, as an interactive user
    _, result["batch1"] = timed_decoding(decoder, sources[:speed_sentences], 1, 1, max_len_a, max_len_b)
    log.info("greedy, batch 1: %.1f sent/s, %.0f target tok/s on %d sentences", result["batch1"]["sentences_per_s"],
             result["batch1"]["target_tokens_per_s"], result["batch1"]["sentences"])
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
    p.add_argument("--speed-sentences", type=int, default=100, help="test sentences decoded at batch size 1 for speed")
    p.add_argument("--comet", help=argparse.SUPPRESS)  # moved: refused below with where it went
    p.add_argument("--comet-encoder", help=argparse.SUPPRESS)
    p.add_argument("--backend", choices=backends.BACKENDS, default="hf", help="library that decodes")
    p.add_argument("--translator", help="CTranslate2 conversion of --model (with --backend ctranslate2)")
    p.add_argument("--compute-type", default="default", help="CTranslate2 weights type")
    p.add_argument("--max-len-a", type=float, default=1.5, help="output length limit: a * source tokens + b")
    p.add_argument("--max-len-b", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--retrieval", help="tuned beta (mtdistill.tune_retrieval JSON): decode with the kNN mixture (hf only)")
    p.add_argument("--kb", nargs="+", help="knowledge-base shard directories (mtdistill.build_kb), with --retrieval")
    p.add_argument("--out", required=True, help="metrics (JSON)")
    args = p.parse_args(argv)
    if args.comet is not None or args.comet_encoder is not None:
        p.error("--comet: COMET has its own step, which runs in the COMET environment (envs/comet.txt): "
                "python -m mtdistill.comet_evaluate --evaluation <this step's --out> --test ... --comet CKPT")
    return args


def run(args) -> None:
    models.set_threads(args.threads)
    if args.retrieval:
        if not args.system.endswith(KNN_SUFFIX):  # the report pairs <student>.knn with <student>, its beta 0
            raise InputError(f"--system: {args.system!r} decodes with --retrieval and must be named <student>.knn")
        set_search_threads(args.threads)
    result = {"system": args.system, "strategy": args.strategy, "round": args.round, "threads": args.threads}
    result.update(evaluate(args.model, args.test, args.beam, args.batch_size, args.speed_sentences,
                           args.backend, args.translator, args.threads, args.compute_type, args.max_len_a, args.max_len_b, args.retrieval, args.kb))
    write_json(result, args.out)


def main(argv=None) -> int:
    return run_main(run, parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
