"""Prepare the corpus: read it, normalise, filter, split by whole documents, build transfer sets.

Writes `train, tune, dev, test, bitext, mono, lm` Parquet tables (columns `sent_id, doc_id, source,
target, references`) plus `stats.json` into --outdir. `bitext` and `mono` are the transfer sets
the teacher labels: sources drawn from training documents only. `lm` is monolingual target text
from training documents for the target language model (no held-out target or reference in it).
The corpus sources are mtdistill.corpora's readers (bible, files, any registered extension).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .core.cli import run_main
from .core.io import write_json, write_table
from .corpora.prepare import prepare


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--spec", required=True, help="the `data` config block as JSON")
    p.add_argument("--outdir", required=True)
    return p.parse_args(argv)


def run(args) -> None:
    sets = prepare(json.loads(args.spec))
    out = Path(args.outdir)
    for name, df in sets.items():
        write_table(df, out / f"{name}.parquet")
    stats = {name: {"sentences": len(df), "documents": int(df.doc_id.nunique()),
                    "words": int(df[side].fillna("").str.split().str.len().sum())}
             for name, df in sets.items() for side in ["target" if name == "lm" else "source"]}
    write_json(stats, out / "stats.json")


def main(argv=None) -> int:
    return run_main(run, parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
