"""Does a change keep the pipeline's outputs? Run the tiny end-to-end config at a commit and at the
working tree, then compare, byte for byte: report.csv (less its measured-speed columns, which are
timings, and its size_mb less each model directory's training.json and plots: the arguments
record and acceptance.png), every label table, every reranker's weights, every model's weights and
every training.json less its timings and arguments (learning curves, best steps, summaries). Before that, the
dry-run job lists (rule, wildcards, outputs, shell command of every job) of the demo, bench and
example configs must be identical too.

    python benchmarks/same_outputs.py --commit 0661d7b          # baseline commit vs working tree
    python benchmarks/same_outputs.py --commit 0661d7b --dry-run-only
    python benchmarks/same_outputs.py --commit 0661d7b --renamed train_variant=train_objective ...

`--renamed OLD=NEW` (repeatable) replaces OLD with NEW in the baseline's job lists before they are
compared, so an agreed rename (a rule, a step module, a wildcard) is the only difference it forgives.

Each run lives in runs/same-outputs/<name>/ and is reused when finished (delete it to redo it), so
the baseline is computed once. The working tree's run is always redone.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
CONFIG = "tests/configs/tiny.yaml"
TIMING_COLUMNS = ("sent_per_s", "tok_per_s", "speedup")  # wall-clock measurements, never reproducible
RECORD_TIMINGS = {"seconds", "target_tokens_per_s", "seconds_per_step"}
COMPARED = ("round*/labels/**/*.parquet", "round*/reranker/weights.json", "**/*.safetensors")


def source_tree(commit: str | None, dest: Path) -> Path:
    """The repository at `commit` (git archive), or the working tree's tracked and untracked files."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    if commit:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", commit], check=True, capture_output=True).stdout
        tarfile.open(fileobj=io.BytesIO(archive)).extractall(dest, filter="data")
    else:
        listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-co", "--exclude-standard", "-z"],
                                check=True, capture_output=True, text=True).stdout
        for name in filter(None, listed.split("\0")):
            if (REPO / name).is_file():
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / name, dest / name)
    return dest


def run(name: str, commit: str | None, root: Path, cores: int) -> Path:
    """Run the tiny config from the source at `commit` in root/name; its results folder."""
    work = root / name
    results = work / "run" / "results"
    if commit and (results / "report.csv").exists():
        print(f"{name}: reusing {results}")
        return results
    source = source_tree(commit, work / "src")
    rundir = work / "run"
    if rundir.exists():
        shutil.rmtree(rundir)
    shutil.copytree(source / "config", rundir / "config")
    # rules call `python -m mtdistill.<step>`: this interpreter's environment, this source's package
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "PYTHONPATH": str(source / "workflow"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(source / "Snakefile"), "--directory", str(rundir),
               "--cores", str(cores), "--configfile", str(source / CONFIG)]
    print(f"{name}: running the tiny config from {commit or 'the working tree'} ...", flush=True)
    with open(work / "snakemake.log", "w") as log:
        subprocess.run(command, check=True, env=env, stdout=log, stderr=subprocess.STDOUT)
    return results


def dry_run_configs(source: Path) -> list[Path]:
    return [source / "config" / "config.yaml", *sorted((source / "config").glob("bench-*.yaml")),
            *sorted((source / "config" / "examples").glob("*.yaml"))]


def job_list(source: Path, configfile: Path, rundir: Path) -> list[str]:
    """The dry run's jobs, each as its rule, wildcards, outputs and shell command, sorted."""
    if rundir.exists():
        shutil.rmtree(rundir)
    shutil.copytree(source / "config", rundir / "config")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "PYTHONPATH": str(source / "workflow")}
    printed = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "--snakefile", str(source / "Snakefile"),
                              "--directory", str(rundir), "--configfile", str(configfile)],
                             check=True, env=env, capture_output=True, text=True).stdout
    jobs, current = [], None
    for line in printed.splitlines():
        if line.startswith("Job stats:"):  # the summary table, whose column width follows the rule names
            current = None
        elif line.startswith(("rule ", "checkpoint ", "localrule ", "localcheckpoint ")):
            current = [line]
            jobs.append(current)
        elif current is not None and line.strip().startswith(("wildcards:", "output:")):
            current.append(line.strip())
        elif current is not None and line.strip() and not line.startswith((" ", "[", "Job stats", "Select", "Building",
                                                                          "This was", "Would ", "job ", "total",
                                                                          "Reasons", "Execute", "Assuming")):
            current.append(line.strip())  # the shell command printed by -p
    return sorted("\n".join(job) for job in jobs)


def job_lists(commit: str | None, root: Path, name: str) -> dict[str, list[str]]:
    source = root / name / "src"
    if not source.exists() or not commit:
        source_tree(commit, source)
    return {path.name: job_list(source, path, root / name / "dry-run") for path in dry_run_configs(source)}


def renamed(jobs: dict[str, list[str]], renames: list[tuple[str, str]]) -> dict[str, list[str]]:
    """The job lists with every OLD replaced by NEW, in the order the renames are given."""
    def rename(job: str) -> str:
        for old, new in renames:
            job = job.replace(old, new)
        return job

    return {config: sorted(map(rename, listed)) for config, listed in jobs.items()}


def rename_pair(text: str) -> tuple[str, str]:
    old, sep, new = text.partition("=")
    if not sep or not old:
        raise argparse.ArgumentTypeError(f"{text!r} is not OLD=NEW")
    return old, new


def model_dir(results: Path, system: str, round_: int) -> Path:
    if system == "teacher":
        return results / ("models" if round_ == 0 else f"round{round_}/models") / "teacher"
    return results / f"round{round_}" / "students" / system


def records_mb(directory: Path) -> float:
    """What a model directory holds besides the model: training.json (the step's arguments, whose
    spelling a refactor may change) and plots (acceptance.png, drawn by mtdistill.figures)."""
    files = [directory / "training.json", *directory.glob("*.png")]
    return sum(f.stat().st_size for f in files if f.is_file()) / 2**20


def report_bytes(results: Path) -> bytes:
    """report.csv less its timings, and size_mb less each model directory's records and plots (the
    weights, configs and tokenizer files stay in it)."""
    table = pd.read_csv(results / "report.csv")
    kept = [c for c in table.columns if not c.startswith(TIMING_COLUMNS)]
    records = [records_mb(model_dir(results, s, r)) for s, r in zip(table.system, table["round"])]
    table["size_mb"] = (table.size_mb - records).round(9)
    return table[kept].to_csv(index=False).encode()


def without_timings(value):
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k not in RECORD_TIMINGS}
    return [without_timings(v) for v in value] if isinstance(value, list) else value


def record_bytes(path: Path) -> bytes:
    """A training.json less its timings and its arguments (their spelling is the step's, not the model's):
    the learning curve, best step, parameter count and the objective's summary stay."""
    record = without_timings(json.loads(path.read_text()))
    record.pop("arguments", None)
    return json.dumps(record, sort_keys=True).encode()


def digests(results: Path) -> dict[str, str]:
    """Relative path -> sha256 of every compared file, report.csv as its timing-free text."""
    found = {"report.csv (less timings; size_mb less records and plots)": hashlib.sha256(report_bytes(results)).hexdigest()}
    for pattern in COMPARED:
        for path in sorted(results.glob(pattern)):
            found[str(path.relative_to(results))] = hashlib.sha256(path.read_bytes()).hexdigest()
    for path in sorted(results.glob("**/training.json")):
        found[f"{path.relative_to(results)} (less timings, arguments)"] = hashlib.sha256(record_bytes(path)).hexdigest()
    return found


def compare(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """One line per file that differs or exists on one side only."""
    problems = []
    for name in sorted(before.keys() | after.keys()):
        if name not in after:
            problems.append(f"only before: {name}")
        elif name not in before:
            problems.append(f"only after: {name}")
        elif before[name] != after[name]:
            problems.append(f"differs: {name}")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commit", required=True, help="the baseline commit")
    parser.add_argument("--against", help="a second commit (default: the working tree)")
    parser.add_argument("--root", type=Path, default=REPO / "runs" / "same-outputs")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--dry-run-only", action="store_true", help="compare the dry-run job lists only")
    parser.add_argument("--renamed", type=rename_pair, action="append", default=[], metavar="OLD=NEW",
                        help="an agreed rename: OLD becomes NEW in the baseline's job lists (repeatable)")
    args = parser.parse_args(argv)
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", args.commit], check=True, capture_output=True,
                            text=True).stdout.strip()
    name = args.against or "working-tree"
    before_jobs, after_jobs = job_lists(commit, args.root, commit[:12]), job_lists(args.against, args.root, name)
    before_jobs = renamed(before_jobs, args.renamed)
    for old, new in args.renamed:
        print(f"renamed: {old} -> {new}")
    different = [config for config in before_jobs if before_jobs[config] != after_jobs.get(config)]
    for config, jobs in before_jobs.items():
        print(f"dry run {config}: {len(jobs)} jobs, {'DIFFERENT' if config in different else 'identical'}")
        if config in different:
            gone, new = set(jobs) - set(after_jobs.get(config, [])), set(after_jobs.get(config, [])) - set(jobs)
            print("  only before:", *sorted(gone)[:3], "  only after:", *sorted(new)[:3], sep="\n    ")
    if args.dry_run_only:
        return 1 if different else 0
    before = digests(run(commit[:12], commit, args.root, args.cores))
    after = digests(run(name, args.against, args.root, args.cores))
    kinds = {"labels": "label tables", "weights.json": "reranker weights", "safetensors": "model weights",
             "training.json": "training records (less timings, arguments)"}
    for key, what in kinds.items():
        print(f"{sum(key in name for name in before)} {what} compared")
    problems = compare(before, after)
    print("\n".join(problems) if problems else f"identical: all {len(before)} files (report.csv less its timing columns, "
                                         "its size_mb less each model's training.json and plots)")
    return 1 if problems or different else 0


if __name__ == "__main__":
    sys.exit(main())
