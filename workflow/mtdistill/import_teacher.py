"""Load a pretrained teacher (Hugging Face id or local directory) and save it into the workflow.

The rest of the pipeline then treats it like a teacher it trained: same directory layout,
explicit generation settings, its own tokenizer.
"""

from __future__ import annotations

import argparse
import logging

from . import models
from .core.io import atomic_path
from .core.cli import run_main

log = logging.getLogger("mtdistill")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--pretrained", required=True, help="Hugging Face id or local model directory")
    p.add_argument("--out", required=True)
    return p.parse_args(argv)


def run(args) -> None:
    model, tokenizer = models.load(args.pretrained, "config key teacher.pretrained")
    log.info("loaded %s: %s, %d parameters", args.pretrained, type(model).__name__, models.count_parameters(model))
    with atomic_path(args.out) as tmp:
        models.save(model.cpu(), tokenizer, tmp)


def main(argv=None) -> int:
    return run_main(run, parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
