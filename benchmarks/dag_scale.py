"""Dry-run DAG build time as the transfer set grows to 10, 100 and 1000 shards, side by side in one run.

Each shard count is one `snakemake -n` process (what a user types to inspect a run) over the embedded
default with the bitext transfer set cut into that many shards and scorer selection off
(`reranker.select: 0`), so every decoding and scoring job of every shard is in the static DAG. The
ratio to the smallest count shows how DAG building scales: linear in the number of jobs is the target.

    python benchmarks/dag_scale.py [--shards 10 100 1000]

Writes benchmarks/results/dag_scale.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
OUT = Path(__file__).resolve().parent / "results"


def dry_run(workdir: Path, shards: int) -> dict:
    """Seconds and planned jobs of one dry run with `shards` bitext shards."""
    override = workdir / f"shards{shards}.yaml"
    override.write_text(yaml.safe_dump({"decode": {"shards": {"bitext": shards}}, "reranker": {"select": 0}}))
    snakemake = Path(sys.executable).with_name("snakemake")
    command = [str(snakemake), "-n", "--quiet", "rules", "--snakefile", str(REPO / "Snakefile"),
               "--configfile", str(REPO / "config" / "config.yaml"), str(override), "--directory", str(workdir)]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"dry run with {shards} shards failed:\n{result.stderr[-3000:]}")
    total = re.search(r"^total\s+(\d+)", result.stdout + result.stderr, re.MULTILINE)
    return {"shards": shards, "jobs": int(total.group(1)) if total else None, "seconds": seconds}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shards", type=int, nargs="+", default=[10, 100, 1000])
    p.add_argument("--out-dir", default=str(OUT))
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        shutil.copytree(REPO / "config", workdir / "config")  # example configs and the schema's neighbours
        dry_run(workdir, min(args.shards))  # warm-up: imports and bytecode compilation
        for shards in args.shards:
            row = dry_run(workdir, shards)
            rows.append(row)
            print(f"{shards:5d} shards: {row['jobs']} jobs, {row['seconds']:.1f} s", flush=True)
    table = pd.DataFrame(rows)
    base = table.iloc[0]
    table["x time"] = table.seconds / base.seconds
    table["x jobs"] = table.jobs / base.jobs
    table["ms per job"] = 1000 * table.seconds / table.jobs
    meta = {"machine": platform.processor() or platform.machine(), "python": platform.python_version()}
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "dag_scale.json").write_text(json.dumps({**meta, "results": table.to_dict("records")}, indent=2) + "\n")
    (out / "dag_scale.md").write_text(
        "# Dry-run DAG build time against the number of shards\n\n"
        "`snakemake -n` on the embedded default, bitext transfer set in N shards, every scorer on every shard "
        "(`reranker.select: 0`); process start-up included.\n\n" + table.to_markdown(index=False, floatfmt=".2f") + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
