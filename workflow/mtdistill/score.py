"""Score every hypothesis of an n-best shard with one scorer; one feature table per scorer.

Output (Parquet): `sent_id, hyp_id, <name>_<feature>...`, joined with other scorers on the keys.
`--backend ctranslate2` scores the seq2seq kinds with a model converted by `mtdistill.ct2`
(`score_batch`; the same log-probs to about 1e-4). Kinds (`mtdistill.scorers.KINDS`):
"""

from __future__ import annotations

import argparse
import logging
import resource
import time

from . import backends, models
from .core.cli import run_main
from .core.io import read_table, write_json, write_table
from .core.nbest import KEYS
from .scorers import KINDS, Options

log = logging.getLogger("mtdistill")


def description() -> str:
    return __doc__ + "".join(f"  {kind:16s} {entry.summary}\n" for kind, entry in KINDS.items())


def parse_args(argv=None):
    seq2seq = [kind for kind, entry in KINDS.items() if entry.seq2seq]
    p = argparse.ArgumentParser(description=description(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", required=True, help="scorer name: the prefix of its feature columns")
    p.add_argument("--kind", required=True, choices=sorted(KINDS))
    p.add_argument("--model", help="model directory, Hugging Face id or checkpoint (neural kinds; optional for packaged ones)")
    p.add_argument("--encoder", help="comet: local directory of the checkpoint's encoder tokenizer and config")
    p.add_argument("--nbest", required=True, help="n-best shard (Parquet)")
    p.add_argument("--sources", required=True, help="sentence table with sent_id, source (and target for reference-based kinds)")
    p.add_argument("--batch-size", type=int, default=16, help="inputs per batch (source sentences; hypotheses for backward, lm)")
    p.add_argument("--backend", choices=backends.BACKENDS, default="hf",
                   help=f"{', '.join(seq2seq)}: ctranslate2 reads a --model converted by mtdistill.ct2")
    p.add_argument("--compute-type", default="default", help="ctranslate2 compute type (default: as converted)")
    p.add_argument("--src-lang", default="", help="forced_decoding, backward, causal_forced: the source language")
    p.add_argument("--tgt-lang", default="", help="... and the target language (mtdistill.families)")
    p.add_argument("--prompt", default="", help="causal_forced: the prompt, with {source}, {src_lang}, {tgt_lang}")
    p.add_argument("--chat-template", action="store_true", help="causal_forced: the prompt as a chat user turn")
    p.add_argument("--stop", nargs="*", default=[], help="causal_forced: more end tokens")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True)
    p.add_argument("--cost-out", help="JSON cost record: seconds and hypotheses per second, model loading included")
    args = p.parse_args(argv)
    if KINDS[args.kind].needs_model and not args.model:
        p.error(f"scorer {args.name!r} of kind {args.kind} needs --model")
    if args.backend != "hf" and not KINDS[args.kind].seq2seq:
        p.error(f"--backend {args.backend}: only kinds {', '.join(seq2seq)} have one; {args.kind} runs with hf")
    return args


def peak_rss_mb() -> float:
    """This process's peak resident memory (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(args) -> None:
    started = time.perf_counter()
    models.set_threads(args.threads)
    nbest, sentences = read_table(args.nbest), read_table(args.sources)
    options = Options(model=args.model, encoder=args.encoder, batch_size=args.batch_size, threads=args.threads,
                      backend=args.backend, compute_type=args.compute_type, src_lang=args.src_lang,
                      tgt_lang=args.tgt_lang, prompt=args.prompt, chat_template=args.chat_template, stop=tuple(args.stop))
    features = KINDS[args.kind].score(nbest, sentences, args.name, options)
    seconds = time.perf_counter() - started
    log.info("scored %d hypotheses with %s in %.1f s", len(features), args.name, seconds)
    write_table(features, args.out)
    if args.cost_out:
        values = features.drop(columns=KEYS)
        write_json({
            "scorer": args.name, "kind": args.kind, "backend": args.backend, "hypotheses": len(features), "seconds": seconds,
            "hypotheses_per_s": len(features) / seconds, "threads": args.threads, "peak_rss_mb": peak_rss_mb(),
            "feature_means": {column: float(values[column].mean()) for column in values},
        }, args.cost_out)


def main(argv=None) -> int:
    return run_main(run, parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
