"""Corpus source `jsonl` (data.jsonl.path): one JSON object per line with source, target and split
(train, tune, dev or test); each split is one document."""

import json

import pandas as pd

from mtdistill.core.io import read_lines
from mtdistill.corpora import READERS, monolingual


@READERS.register("jsonl")
def read_jsonl(spec: dict, seed: int):
    table = pd.DataFrame([json.loads(line) for line in read_lines(spec["path"])])
    table["sent_id"] = [f"J{i:06d}" for i in range(len(table))]
    table["doc_id"] = table["split"]
    table["references"] = [[] for _ in range(len(table))]
    return table, monolingual([], "source"), monolingual([], "target")
