"""Score every hypothesis of an n-best shard with one scorer; one feature table per scorer.

Kinds:
  forced_decoding  log p(hypothesis | source) under a seq2seq model (sum and per-token mean)
  length           word counts and the hypothesis/source length ratio
  mbr              consensus: mean sentence chrF and BLEU of a hypothesis against the others of its list
Output (Parquet): `sent_id, hyp_id, <name>_<feature>...`, joined with other scorers on the keys.
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np
import pandas as pd
import torch
from sacrebleu.metrics import BLEU, CHRF
from tqdm import tqdm

from . import models
from .files import read_table, run_main, write_json, write_table
from .features import KEYS

log = logging.getLogger("mtdistill")


@torch.no_grad()
def forced_logprobs(model, tokenizer, sources: list[str], hypotheses: list[list[str]], batch_size: int = 16,
                    max_len: int = 256) -> list[tuple[float, int]]:
    """(sum log-prob incl. EOS, token count) per hypothesis; the hypotheses of one source share one encoder pass."""
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id
    results = []
    for start in tqdm(range(0, len(sources), batch_size), desc="score", mininterval=30):
        src = sources[start : start + batch_size]
        hyps = hypotheses[start : start + batch_size]
        enc = tokenizer(src, return_tensors="pt", padding=True, truncation=True, max_length=max_len).to(device)
        encoded = model.get_encoder()(**enc).last_hidden_state
        owner = torch.tensor([i for i, h in enumerate(hyps) for _ in h], device=device)
        labels = tokenizer(text_target=[h for hs in hyps for h in hs], return_tensors="pt", padding=True,
                           truncation=True, max_length=max_len)["input_ids"].to(device)
        start_tokens = torch.full_like(labels[:, :1], model.config.decoder_start_token_id)
        logits = model(
            encoder_outputs=(encoded[owner],), attention_mask=enc["attention_mask"][owner],
            decoder_input_ids=torch.cat([start_tokens, labels[:, :-1]], 1),
        ).logits.float()
        logits[..., pad] = float("-inf")  # <pad> is never a real output (matches CTranslate2)
        token_lp = logits.log_softmax(-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
        real = labels != pad
        sums = torch.where(real, token_lp, torch.zeros_like(token_lp)).sum(-1)
        results.extend(zip(sums.tolist(), real.sum(-1).tolist()))
    return results


def score_forced(nbest: pd.DataFrame, sources: pd.DataFrame, name: str, model_path: str, batch_size: int) -> pd.DataFrame:
    model, tokenizer = models.load(model_path, f"scorer {name!r}")
    source_of = dict(zip(sources.sent_id, sources.source))
    groups = [(sent_id, group) for sent_id, group in nbest.groupby("sent_id", sort=False)]
    scored = forced_logprobs(model, tokenizer, [source_of[s] for s, _ in groups], [list(g.hypothesis) for _, g in groups], batch_size)
    keys = pd.concat([g[KEYS] for _, g in groups], ignore_index=True)
    sums = np.array([s for s, _ in scored])
    counts = np.array([n for _, n in scored])
    return keys.assign(**{
        f"{name}_logprob": sums, f"{name}_logprob_per_token": sums / np.maximum(counts, 1), f"{name}_tokens": counts.astype(float),
    })


def score_length(nbest: pd.DataFrame, sources: pd.DataFrame, name: str) -> pd.DataFrame:
    source_words = nbest.sent_id.map(dict(zip(sources.sent_id, sources.source.str.split().str.len())))
    hyp_words = nbest.hypothesis.str.split().str.len()
    return nbest[KEYS].assign(**{
        f"{name}_hyp_words": hyp_words.astype(float),
        f"{name}_ratio": hyp_words / source_words.clip(lower=1),
    })


def mbr_utilities(hypotheses: list[str], metric) -> np.ndarray:
    """Mean utility of each hypothesis with the others of its list as pseudo-references."""
    n = len(hypotheses)
    if n < 2:
        return np.zeros(n)
    utility = np.zeros((n, n))
    for i, hyp in enumerate(hypotheses):
        for j, other in enumerate(hypotheses):
            if i != j:
                utility[i, j] = metric.sentence_score(hyp, [other]).score
    return utility.sum(1) / (n - 1)


def score_mbr(nbest: pd.DataFrame, name: str) -> pd.DataFrame:
    metrics = {"chrf": CHRF(), "bleu": BLEU(effective_order=True)}
    groups = list(nbest.groupby("sent_id", sort=False))
    keys = pd.concat([g[KEYS] for _, g in groups], ignore_index=True)
    columns = {}
    for metric_name, metric in metrics.items():
        values = [mbr_utilities(list(g.hypothesis), metric) for _, g in tqdm(groups, desc=f"mbr {metric_name}", mininterval=30)]
        columns[f"{name}_{metric_name}"] = np.concatenate(values) if values else np.zeros(0)
    return keys.assign(**columns)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--name", required=True, help="scorer name: the prefix of its feature columns")
    p.add_argument("--kind", required=True, choices=["forced_decoding", "length", "mbr"])
    p.add_argument("--model", help="model directory or Hugging Face id (neural kinds)")
    p.add_argument("--nbest", required=True, help="n-best shard (Parquet)")
    p.add_argument("--sources", required=True, help="sentence table with sent_id and source")
    p.add_argument("--batch-size", type=int, default=16, help="source sentences per batch")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True)
    p.add_argument("--cost-out", help="JSON cost record: seconds and hypotheses per second, model loading included")
    args = p.parse_args(argv)
    if args.kind == "forced_decoding" and not args.model:
        p.error(f"scorer {args.name!r} of kind forced_decoding needs --model")
    return args


def run(args) -> None:
    started = time.perf_counter()
    models.set_threads(args.threads)
    nbest, sources = read_table(args.nbest), read_table(args.sources, columns=["sent_id", "source"])
    if args.kind == "forced_decoding":
        features = score_forced(nbest, sources, args.name, args.model, args.batch_size)
    elif args.kind == "mbr":
        features = score_mbr(nbest, args.name)
    else:
        features = score_length(nbest, sources, args.name)
    seconds = time.perf_counter() - started
    log.info("scored %d hypotheses with %s in %.1f s", len(features), args.name, seconds)
    write_table(features, args.out)
    if args.cost_out:
        write_json({"scorer": args.name, "kind": args.kind, "hypotheses": len(features), "seconds": seconds,
                    "hypotheses_per_s": len(features) / seconds, "threads": args.threads}, args.cost_out)


def main(argv=None) -> int:
    return run_main(run, parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
