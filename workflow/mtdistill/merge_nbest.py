"""Merge the n-best lists of several decoders (left-to-right and right-to-left teachers).

The union per source sentence, de-duplicated on the detokenised string (whitespace-normalised),
in the order of the inputs: the first list's hypotheses keep their ranks, so hyp_id 0 stays the
first decoder's best. Each hypothesis gets a provenance flag `from_<decoder>` (1.0 if that decoder
produced it) when more than one list is merged; `score` keeps the first decoder's beam score
(missing for hypotheses only the others found).
"""

from __future__ import annotations

import argparse

import pandas as pd

from .core.io import InputError, read_table, write_table

from .core.cli import run_main


def merge_nbest(lists: dict[str, pd.DataFrame]) -> pd.DataFrame:
    names = list(lists)
    first = names[0]
    sentences = [set(table.sent_id) for table in lists.values()]
    if any(s != sentences[0] for s in sentences):
        raise InputError(f"the n-best lists of {', '.join(names)} cover different sentences")
    tagged = pd.concat(
        [table.assign(decoder=name, order=k) for k, (name, table) in enumerate(lists.items())], ignore_index=True
    )
    tagged["key"] = tagged.hypothesis.str.split().str.join(" ")
    flags = pd.crosstab([tagged.sent_id, tagged.key], tagged.decoder).clip(upper=1).astype(float)
    flags = flags.reindex(columns=names, fill_value=0.0).add_prefix("from_").reset_index()
    # ordering by (list, rank) keeps the first decoder's ranking on top
    merged = tagged.sort_values(["order", "hyp_id"], kind="stable").drop_duplicates(["sent_id", "key"])
    merged["score"] = merged.score.where(merged.decoder == first)
    merged = merged.merge(flags, on=["sent_id", "key"], how="left")
    order = {s: i for i, s in enumerate(dict.fromkeys(lists[first].sent_id))}
    merged = merged.assign(_sent=merged.sent_id.map(order)).sort_values(["_sent", "order", "hyp_id"], kind="stable")
    merged["hyp_id"] = merged.groupby("sent_id").cumcount()
    columns = ["sent_id", "hyp_id", "hypothesis", "score"] + ([f"from_{n}" for n in names] if len(names) > 1 else [])
    return merged[columns].reset_index(drop=True)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--nbest", nargs="+", required=True, metavar="DECODER=PATH",
                   help="n-best shards, first the one whose ranking leads (e.g. l2r=a.parquet r2l=b.parquet)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    for item in args.nbest:
        if "=" not in item:
            p.error(f"--nbest {item}: expected DECODER=PATH")
    return args


def run(args) -> None:
    lists = {name: read_table(path) for name, path in (item.split("=", 1) for item in args.nbest)}
    write_table(merge_nbest(lists), args.out)


def main(argv=None) -> int:
    return run_main(run, parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
