"""Side-by-side speed of MBR consensus scoring: sacrebleu's per-pair `sentence_score` loop vs `mtdistill.scorers.mbr`.

Builds synthetic n-best lists (seeded word drops, swaps, substitutions and punctuation edits of
Bible-like sentences), times both on the same subset, checks they agree, and extrapolates to 16 x 10,000.

    python benchmarks/mbr_speed.py [--sentences 200 --hypotheses 16 --full-sentences 10000]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from pathlib import Path

import numpy as np
import pandas as pd
from mtdistill.scorers.mbr import consensus_features, mbr_utilities
from sacrebleu.metrics import BLEU, CHRF

OUT = Path(__file__).resolve().parent / "results" / "mbr_speed.json"
SUBJECTS = ["the king", "his servants", "the people of the land", "a man of God", "the children of Israel",
            "the priest", "my brother", "the woman", "all the elders", "the Lord"]
VERBS = ["went up to", "spoke unto", "came down from", "gave bread to", "looked upon", "sent word to",
         "departed from", "returned to", "built an altar near", "called out to"]
OBJECTS = ["the city", "Jerusalem", "the mountain", "the house of his father", "the river", "the temple",
           "the wilderness", "the gate of the city", "the field", "the sea"]
TAILS = ["in the morning", "after three days", "with great joy", "and they were afraid", "as he had said",
         "because of the famine", "in those days", "and it was so", "before the sun went down", ""]
SUBSTITUTES = {"the": ["a", "that"], "went": ["came", "walked"], "king": ["ruler", "prince"], "city": ["town"],
               "spoke": ["said", "talked"], "people": ["men", "folk"], "great": ["much", "exceeding"],
               "house": ["home", "household"], "unto": ["to"], "and": ["so", "then"], "days": ["nights"]}


def source_sentence(rng: random.Random) -> str:
    clauses = [f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(TAILS)}".strip()
               for _ in range(rng.randint(1, 3))]
    text = ", and ".join(clauses)
    return text[0].upper() + text[1:] + rng.choice([".", ".", ".", ";", "!", "?"])


def perturb(sentence: str, rng: random.Random) -> str:
    words = sentence.split()
    for _ in range(rng.randint(0, 4)):
        k, edit = rng.randrange(len(words)), rng.random()
        if edit < 0.3 and len(words) > 2:
            del words[k]
        elif edit < 0.55 and k + 1 < len(words):
            words[k], words[k + 1] = words[k + 1], words[k]
        elif edit < 0.85:
            words[k] = rng.choice(SUBSTITUTES.get(words[k].lower().strip(".,;!?"), [rng.choice(OBJECTS).split()[-1]]))
        else:
            words[k] = words[k].rstrip(".,;!?") + rng.choice([",", ".", "", " ."])
    return " ".join(words)


def nbest_lists(sentences: int, hypotheses: int, seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    lists = []
    for _ in range(sentences):
        base = source_sentence(rng)
        lists.append([perturb(base, rng) for _ in range(hypotheses)])
    return lists


def naive_utilities(hypotheses: list[str], metric) -> np.ndarray:
    """The reference implementation: one sacrebleu sentence_score call per ordered pair."""
    n = len(hypotheses)
    utility = np.zeros((n, n))
    for i, hyp in enumerate(hypotheses):
        for j, other in enumerate(hypotheses):
            if i != j:
                utility[i, j] = metric.sentence_score(hyp, [other]).score
    return utility.sum(1) / (n - 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sentences", type=int, default=200, help="subset timed with both implementations")
    p.add_argument("--hypotheses", type=int, default=16)
    p.add_argument("--full-sentences", type=int, default=10_000, help="cached-only run through consensus_features; 0 skips it")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()

    lists = nbest_lists(args.sentences, args.hypotheses, args.seed)
    naive_metrics = {"chrf": CHRF(), "bleu": BLEU(effective_order=True)}
    result = {"hypotheses": args.hypotheses, "subset_sentences": args.sentences, "python": platform.python_version(),
              "machine": platform.processor() or platform.machine(), "metrics": {}}
    total_naive = total_cached = 0.0
    for name, metric in naive_metrics.items():
        t0 = time.perf_counter()
        naive = [naive_utilities(h, metric) for h in lists]
        t1 = time.perf_counter()
        cached = [mbr_utilities(h, name) for h in lists]
        t2 = time.perf_counter()
        diff = max(float(np.abs(a - b).max()) for a, b in zip(naive, cached))
        assert diff < 1e-9, f"{name}: cached differs from naive by {diff}"
        total_naive, total_cached = total_naive + t1 - t0, total_cached + t2 - t1
        result["metrics"][name] = {"naive_s": t1 - t0, "cached_s": t2 - t1, "speedup": (t1 - t0) / (t2 - t1),
                                   "max_abs_diff": diff}
        print(f"{name}: naive {t1 - t0:7.2f} s  cached {t2 - t1:6.2f} s  speed-up {(t1 - t0) / (t2 - t1):5.1f}x"
              f"  max |diff| {diff:.1e}")

    scale = 10_000 / args.sentences
    result.update(naive_s=total_naive, cached_s=total_cached, speedup=total_naive / total_cached,
                  extrapolated_10k_naive_s=total_naive * scale, extrapolated_10k_cached_s=total_cached * scale)
    print(f"both metrics: speed-up {total_naive / total_cached:.1f}x; extrapolated to {args.hypotheses} x 10,000:"
          f" naive {total_naive * scale / 3600:.2f} h, cached {total_cached * scale / 60:.1f} min")

    if args.full_sentences:
        full = nbest_lists(args.full_sentences, args.hypotheses, args.seed + 1)
        nbest = pd.DataFrame([(s, h, text) for s, hyps in enumerate(full) for h, text in enumerate(hyps)],
                             columns=["sent_id", "hyp_id", "hypothesis"])
        t0 = time.perf_counter()
        consensus_features(nbest, "mbr")
        elapsed = time.perf_counter() - t0
        result.update(full_sentences=args.full_sentences, full_cached_s=elapsed)
        print(f"consensus_features on {args.hypotheses} x {args.full_sentences:,}: {elapsed:.1f} s measured")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
