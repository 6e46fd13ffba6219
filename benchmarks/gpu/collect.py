"""Copy what a kit run produced into its OUTDIR, as few files as the device tool brings back (eight).

Called by benchmarks/gpu/run once the pipeline has finished or was stopped at the deadline, with the
GPU machine's python3 and the standard library alone. Writes:
  report.md, report.csv   the pipeline's report, if it got that far
  timings.md, run.json    wall-clock seconds (setup, pipeline, total) against the deadline, how many
                          steps Snakemake finished, and per rule the jobs, seconds and peak memory
                          from the per-job benchmark files
  results.tar.gz          results/report.*, results/benchmarks/**, results/figures/** and every JSON
                          record under results/ (training.json, evaluations, reranker weights, ...)
  logs.tar.gz             logs/** and Snakemake's own log
snakemake.log (the run's output) is written by the run script beside them.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

RECORD_LIMIT = 1 << 20  # JSON records larger than this (none so far) stay behind


def rule_timings(benchmarks: Path) -> dict[str, dict]:
    """Per rule: jobs, summed and largest wall-clock seconds, largest resident memory (MB)."""
    rules = {}
    for tsv in sorted(benchmarks.rglob("*.tsv")):  # results/benchmarks/<rule>/[round<r>/]<job>.tsv
        with tsv.open() as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        if not rows:
            continue
        seconds, rss = number(rows[-1].get("s")), number(rows[-1].get("max_rss"))
        entry = rules.setdefault(tsv.relative_to(benchmarks).parts[0], {"jobs": 0, "seconds": 0.0, "max_seconds": 0.0, "max_rss_mb": 0.0})
        entry["jobs"] += 1
        entry["seconds"] += seconds or 0.0
        entry["max_seconds"] = max(entry["max_seconds"], seconds or 0.0)
        entry["max_rss_mb"] = max(entry["max_rss_mb"], rss or 0.0)
    return rules


def number(text) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None  # "NA": a job too short to sample


def steps_done(log: Path) -> tuple[int, int] | None:
    found = re.findall(r"(\d+) of (\d+) steps", log.read_text(errors="replace")) if log.exists() else []
    return tuple(map(int, found[-1])) if found else None


def gpu_name() -> str | None:
    if not shutil.which("nvidia-smi"):
        return None
    done = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                          capture_output=True, text=True)
    return done.stdout.strip() or None


def pack(archive: Path, root: Path, members: list[Path]) -> None:
    with tarfile.open(archive, "w:gz") as tar:
        for path in members:
            tar.add(path, arcname=str(path.relative_to(root)))


def results_members(work: Path) -> list[Path]:
    results = work / "results"
    if not results.exists():
        return []
    members = [p for p in (results / "report.md", results / "report.csv", results / "benchmarks", results / "figures")
               if p.exists()]
    members += [p for p in results.rglob("*.json") if p.stat().st_size <= RECORD_LIMIT
                and not p.is_relative_to(results / "benchmarks") and not p.is_relative_to(results / "figures")]
    return members


def outcome(status: int, steps) -> str:
    if status == 124:
        return "stopped at the deadline"
    if status == 0:
        return "completed"
    return f"failed (exit {status})" + (f" after {steps[0]} of {steps[1]} steps" if steps else "")


def timings_markdown(summary: dict) -> str:
    lines = [f"# GPU kit run ({summary['mode']}): {summary['outcome']}", "",
             f"- machine: {summary['gpu'] or 'no GPU'}, {summary['cpus']} CPUs",
             f"- setup {summary['setup_seconds']} s (wheels, checks), pipeline {summary['run_seconds']} s, "
             f"total {summary['total_seconds']} s of the {summary['deadline_seconds']} s deadline",
             f"- Snakemake steps done: " + (f"{summary['steps'][0]} of {summary['steps'][1]}" if summary["steps"] else "none"),
             f"- rules {', '.join(summary['prepared_rules'])} ran where the kit was made (timed there)", "",
             "| rule | jobs | seconds | largest job (s) | peak memory (MB) |", "|---|---:|---:|---:|---:|"]
    rules = summary["rules"]
    for rule, entry in sorted(rules.items(), key=lambda item: -item[1]["seconds"]):
        lines.append(f"| {rule} | {entry['jobs']} | {entry['seconds']:.1f} | {entry['max_seconds']:.1f} | "
                     f"{entry['max_rss_mb']:.0f} |")
    total = sum(e["seconds"] for r, e in rules.items() if r not in summary["prepared_rules"])
    lines += ["", f"Job seconds summed over the rules run here: {total:.1f} (jobs overlap: CPU jobs run beside the "
              "GPU one)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--kit", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--status", type=int, required=True)
    p.add_argument("--setup-seconds", type=int, required=True)
    p.add_argument("--run-seconds", type=int, required=True)
    p.add_argument("--deadline", type=int, required=True)
    p.add_argument("--mode", required=True)
    args = p.parse_args(argv)
    work, out = args.workdir, args.out
    for name in ("report.md", "report.csv"):
        if (work / "results" / name).exists():
            shutil.copy2(work / "results" / name, out / name)
    manifest = json.loads((args.kit / "manifest.json").read_text())
    steps = steps_done(out / "snakemake.log")
    summary = {
        "mode": args.mode, "outcome": outcome(args.status, steps), "exit_status": args.status, "gpu": gpu_name(),
        "cpus": len(os.sched_getaffinity(0)), "setup_seconds": args.setup_seconds,
        "run_seconds": args.run_seconds, "total_seconds": args.setup_seconds + args.run_seconds,
        "deadline_seconds": args.deadline, "steps": steps, "prepared_rules": manifest["prepared_rules"],
        "kit": {k: manifest[k] for k in ("mode", "configfiles", "made", "commit", "uncommitted_changes", "sizes_bytes")},
        "rules": rule_timings(work / "results" / "benchmarks"),
    }
    (out / "run.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "timings.md").write_text(timings_markdown(summary))
    pack(out / "results.tar.gz", work, results_members(work))
    logs = [p for p in (work / "logs", work / ".snakemake" / "log") if p.exists()]
    pack(out / "logs.tar.gz", work, logs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
