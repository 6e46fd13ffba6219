"""Gather JSON records (one object per file) into one JSON list, or list the given paths.

Which scoring jobs a round has on its transfer sets is known only after its reranker selected the
scorers (a checkpoint). Jobs that need those features or cost records read them through one
gathered file, so that they, and everything they wait on, still appear in a dry run.
"""

from __future__ import annotations

import argparse

from .core.io import read_json, write_json

from .core.cli import run_main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--records", nargs="*", default=[], help="JSON files, one record each")
    p.add_argument("--paths-only", action="store_true", help="list the paths instead of their contents")
    p.add_argument("--out", required=True, help="JSON list")
    return p.parse_args(argv)


def run(args) -> None:
    write_json(args.records if args.paths_only else [read_json(path) for path in args.records], args.out)


def main(argv=None) -> int:
    return run_main(run, parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
