"""Load a pretrained teacher (Hugging Face id or local directory) and save it into the workflow.

The rest of the pipeline then treats it like a teacher it trained: same directory layout, explicit
generation settings, its own tokenizer, and its family's profile (`mtdistill_teacher.json`: the family
and the keys that tell it the languages, mtdistill.families), which every step that runs it reads.
"""

from __future__ import annotations

import argparse
import logging

from . import families, models
from .core.cli import run_main
from .core.io import atomic_path

log = logging.getLogger("mtdistill")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--pretrained", required=True, help="Hugging Face id or local model directory")
    p.add_argument("--family", default="auto", help=f"auto (from its config.json) or one of {', '.join(families.FAMILIES)}")
    p.add_argument("--src-lang", default="")
    p.add_argument("--tgt-lang", default="")
    p.add_argument("--source-prefix", default="")
    p.add_argument("--prompt", default="")
    p.add_argument("--chat-template", action="store_true")
    p.add_argument("--stop", nargs="*", default=[])
    p.add_argument("--out", required=True)
    return p.parse_args(argv)


def teacher_profile(args) -> families.Profile:
    """The checked profile: every key the family needs, none it does not use (named as config keys)."""
    family = families.resolve(args.family, args.pretrained)
    profile = families.Profile.from_keys(family, vars(args))
    families.check(profile)
    return profile


def run(args) -> None:
    profile = teacher_profile(args)
    seq2seq = families.FAMILIES[profile.family].seq2seq
    model, tokenizer = models.load(args.pretrained, "config key teacher.pretrained", causal=not seq2seq)
    families.codec(tokenizer, profile)  # language codes and stop tokens exist in this tokenizer
    log.info("loaded %s: %s (family %s), %d parameters", args.pretrained, type(model).__name__, profile.family,
             models.count_parameters(model))
    with atomic_path(args.out) as tmp:
        models.save(model.cpu(), tokenizer, tmp)
        profile.save(tmp)


def main(argv=None) -> int:
    return run_main(run, parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
