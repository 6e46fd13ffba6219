"""From a corpus reader's tables to the pipeline's sets: normalise, filter by length, split off the
held-out sets without overlap, draw the transfer sets, check for leakage."""

from __future__ import annotations

import re
import unicodedata

import numpy as np
import pandas as pd

from ..core.io import InputError
from .base import HELD_OUT, READERS

COLUMNS = ["sent_id", "doc_id", "source", "target", "references"]


def normalise(text: str) -> str:
    """NFC, typographic apostrophes (the WEB Bible writes God`s), single spaces."""
    text = unicodedata.normalize("NFC", text).replace("`", "'").replace("\u2019", "'")
    return re.sub(r"\s+", " ", text).strip()


def length_ok(source: pd.Series, target: pd.Series | None, spec: dict) -> pd.Series:
    s = source.str.split().str.len()
    ok = (s >= spec["min_words"]) & (s <= spec["max_words"])
    if target is not None:
        t = target.str.split().str.len()
        ok &= (t >= spec["min_words"]) & (t <= spec["max_words"])
        ok &= (np.maximum(s, t) / np.maximum(np.minimum(s, t), 1)) <= spec["max_ratio"]
    return ok


def check_leakage(held_out: dict[str, pd.DataFrame], seen: dict[str, pd.DataFrame]) -> None:
    """Fail if any held-out source sentence occurs verbatim in a training or transfer set."""
    problems = []
    for held_name, held in held_out.items():
        sources = set(held.source)
        for seen_name, table in seen.items():
            leaked = table[table.source.isin(sources)]
            if len(leaked):
                problems.append(
                    f"{len(leaked)} {held_name} source sentence(s) also in {seen_name} "
                    f"(first: sent_id {leaked.sent_id.iloc[0]}: {leaked.source.iloc[0][:80]!r})"
                )
    if problems:
        raise InputError("data leakage: " + "; ".join(problems) + ". Set data.drop_held_out_overlap: true or fix the split.")


def prepare(spec: dict) -> dict[str, pd.DataFrame]:
    if spec["source"] not in READERS:
        raise InputError(f"config key data.source: unknown corpus {spec['source']!r} (one of {', '.join(READERS)})")
    bitext, mono, mono_target = READERS[spec["source"]](spec.get(spec["source"], {}), spec["seed"])
    for column in ("source", "target"):
        bitext[column] = bitext[column].map(normalise)
    bitext["references"] = [[normalise(r) for r in refs if r] for refs in bitext.references]
    mono["source"] = mono.source.map(normalise)
    mono_target["target"] = mono_target.target.map(normalise)

    bitext = bitext[length_ok(bitext.source, bitext.target, spec["filter"])]
    mono = mono[length_ok(mono.source, None, spec["filter"])]
    mono_target = mono_target[length_ok(mono_target.target, None, spec["filter"])]

    sets, taken = {}, set()
    for name in HELD_OUT:
        df = bitext[(bitext.split == name) & ~bitext.source.isin(taken)].drop_duplicates("source")
        taken |= set(df.source)
        sets[name] = df
    train = bitext[bitext.split == "train"].drop_duplicates(["source", "target"])
    mono = mono.drop_duplicates("source")
    if spec["drop_held_out_overlap"]:
        train = train[~train.source.isin(taken)]
        mono = mono[~mono.source.isin(taken)]
    sets["train"] = train
    # Target-language LM text: no sentence that is also a held-out target or reference.
    held_targets = {t for name in HELD_OUT for t in [*sets[name].target, *(r for refs in sets[name].references for r in refs)]}
    sets["lm"] = mono_target[~mono_target.target.isin(held_targets | set(train.target))].drop_duplicates("target").assign(
        source=None, references=None
    )

    rng = np.random.default_rng(spec["seed"])
    size = spec["transfer"]["bitext_size"]
    sets["bitext"] = train.iloc[np.sort(rng.permutation(len(train))[:size])] if size else train.iloc[:0]
    mono = mono[~mono.source.isin(set(sets["bitext"].source))]
    size = spec["transfer"]["mono_size"]
    sets["mono"] = mono.iloc[np.sort(rng.permutation(len(mono))[:size])].assign(target=None, references=None)

    check_leakage({n: sets[n] for n in HELD_OUT}, {n: sets[n] for n in ("train", "bitext", "mono")})
    for name, df in sets.items():
        if name not in ("mono", "lm") and len(df) == 0:
            raise InputError(f"the {name} set is empty after filtering: check data.{spec['source']} and data.filter")
    return {name: df[COLUMNS].reset_index(drop=True) for name, df in sets.items()}
