"""The measurement side of `mtdistill.estimate`: the dry-run DAG's jobs and the work each does, and the
seconds per unit of work measured in an earlier run's benchmark files, models' training.json and
results/data/stats.json."""

from __future__ import annotations

import shlex
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from snakemake.exceptions import WorkflowError
from snakemake.io import apply_wildcards

from . import dag, plan
from .decode import shard_rows
from .core.io import InputError, read_json
from .train import parser as train_parser
from .training import record

BENCHMARKS = "results/benchmarks"
# Wildcards that only say which data a job processes; the others say which model or method it runs.
DATA_WILDCARDS = ("round", "set", "shard")
TRAINING_MODULE = "mtdistill.train"


@dataclass
class PlannedRun:
    """The dry-run DAG as plain records, and what the estimate needs from the workflow's plan."""

    jobs: list[dict]
    config: dict
    benchmark_patterns: dict  # rule -> compiled regex of its benchmark path
    output_patterns: dict  # rule -> its first output's pattern
    reranker_scorers: list[str]
    scorer_gpus: dict  # scorer -> GPUs its jobs request
    compositions: dict  # transfer of a student's labels (bitext, mono, both) -> its sets


def dry_run(directory: Path, configfiles: list[Path], snakefile: Path = dag.SNAKEFILE) -> PlannedRun:
    """The jobs of the whole DAG for `directory`'s config/config.yaml with `configfiles` merged over it
    (as `snakemake --directory directory --configfile ...`), planned in an empty directory so that
    nothing already computed is left out."""
    base = directory / "config" / "config.yaml"
    for path in [base, *configfiles]:
        if not path.is_file():
            raise InputError(f"{path}: config file not found")
    with tempfile.TemporaryDirectory(prefix="mtdistill-estimate.") as tmp:
        workdir = Path(tmp)
        (workdir / "config").mkdir()
        shutil.copy(base, workdir / "config" / "config.yaml")
        try:
            planned = dag.dry_run(workdir, configfiles, snakefile)
        # the schema's errors, and the config errors mtdistill.plan raises
        except (WorkflowError, ValueError) as err:
            raise InputError(f"{', '.join(map(str, [base, *configfiles]))}: {err}") from None
    return planned_run(planned)


def planned_run(planned: dag.DryRun) -> PlannedRun:
    rules = [rule for rule in planned.rules if rule.benchmark]
    jobs = [{"rule": job.rule.name, "wildcards": dict(job.wildcards), "gpu": int(job.resources.get("gpu", 0)),
             "command": job.shellcmd or ""}
            for job in planned.jobs if not job.rule.norun]  # target rules (all) run nothing
    workflow_plan = plan.Plan(planned.config)
    return PlannedRun(
        jobs=jobs,
        config=planned.config,
        benchmark_patterns={rule.name: rule.benchmark.regex() for rule in rules},
        output_patterns={rule.name: str(rule.output[0]) for rule in rules if rule.output},
        reranker_scorers=workflow_plan.reranker_scorers(),
        scorer_gpus={name: int(s.get("gpu", False)) for name, s in workflow_plan.scorers.items()},
        compositions=dict(plan.COMPOSITIONS),
    )


class SetSizes:
    """Sentences per set; a missing set names where the counts came from."""

    def __init__(self, counts: dict, source: str):
        self.counts, self.source = counts, source

    def __getitem__(self, name: str) -> int:
        if name not in self.counts:
            raise InputError(f"{self.source}: no sentence count for set {name!r}")
        return self.counts[name]


def read_stats(path: Path) -> dict:
    return {name: entry["sentences"] for name, entry in read_json(path).items()}


def run_stats(measured: Path) -> tuple[Path, dict]:
    """The measured run's results/data/stats.json beside its benchmarks, and its counts (none if absent)."""
    path = measured.parent / "data" / "stats.json"
    return path, read_stats(path) if path.exists() else {}


def training_args(command: str):
    """The training options of a `python -m mtdistill.train` command (defaults filled in), else None."""
    words = shlex.split(command)
    starts = [i + 1 for i, word in enumerate(words) if word == TRAINING_MODULE]
    if not starts:
        return None
    options = words[starts[0]:]
    options = options[: options.index(">")] if ">" in options else options
    p = train_parser()
    p.allow_abbrev = False  # an option it does not know must not pass for an abbreviation of one it does
    return p.parse_known_args(options)[0]


def data_work(rule: str, wildcards: dict, sizes: SetSizes, shards: int | None, compositions: dict) -> tuple[str, float]:
    """Sentences a job of one set (or shard) or of a student's labels (<strategy>-<transfer>) processes;
    evaluation decodes the test set; else one job."""
    if "set" in wildcards:
        sentences = sizes[wildcards["set"]]
        if "shard" in wildcards:
            sentences = len(shard_rows(pd.DataFrame(index=range(sentences)), int(wildcards["shard"]), shards))
        return "sentences", sentences
    if "labels" in wildcards:
        return "sentences", sum(sizes[name] for name in compositions[wildcards["labels"].split("-")[1]])
    if rule in ("evaluate", "evaluate_comet"):
        return "sentences", sizes["test"]
    return "job", 1


def planned_work(job: dict, sizes: SetSizes, plan: PlannedRun) -> tuple[str, float]:
    args = training_args(job["command"])
    if args is None:
        shards = plan.config["decode"]["shards"].get(job["wildcards"].get("set"))
        return data_work(job["rule"], job["wildcards"], sizes, shards, plan.compositions)
    if args.epochs:
        return "epochs x sentences", args.epochs * sum(sizes[Path(table).stem] for table in args.train)
    return "steps x batch_tokens", args.max_steps * args.batch_tokens * args.accumulate


def group_of(wildcards: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(wildcards.items()) if k not in DATA_WILDCARDS)


def read_benchmark(path: Path) -> float:
    """Mean seconds of a Snakemake benchmark file (one row per repeat)."""
    try:
        table = pd.read_csv(path, sep="\t")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not a benchmark table ({err})") from None
    if "s" not in table.columns or table.empty:
        raise InputError(f"{path}: benchmark table without rows or column 's'")
    return float(table["s"].mean())


def measured_jobs(measured: Path, plan: PlannedRun, training_rules: set) -> tuple[pd.DataFrame, int]:
    """Measured jobs of the rules the plan has: rule, group, work kind and amount, seconds.

    Their models' training.json and the run's results/data/stats.json are read beside `measured`.
    Also returns how many files matched no planned rule (other rules, other workflow versions)."""
    files = sorted(measured.rglob("*.tsv"))
    if not files:
        raise InputError(f"{measured}: no benchmark files (*.tsv)")
    run = measured.parent.parent  # <run>/results/benchmarks
    planned = {job["rule"] for job in plan.jobs}
    found, ignored = [], 0
    for path in files:
        rule = path.relative_to(measured).parts[0]
        match = rule in planned and plan.benchmark_patterns[rule].match(f"{BENCHMARKS}/{path.relative_to(measured).as_posix()}")
        if not match:
            ignored += 1
            continue
        found.append({"rule": rule, "wildcards": match.groupdict(), "seconds": read_benchmark(path), "path": path})
    if not found:
        return pd.DataFrame(columns=["rule", "group", "kind", "work", "seconds"]), ignored
    stats, counts = run_stats(measured)
    sizes = SetSizes(counts, str(stats) if counts else f"{stats} (not found)")
    shards = {}
    for job in found:
        w = job["wildcards"]
        if "shard" in w:
            key = (w.get("round"), w["set"])
            shards[key] = max(shards.get(key, 0), int(w["shard"]) + 1)
    rows = []
    for job in found:
        w = job["wildcards"]
        if job["rule"] in training_rules:
            summary = record.path(run / apply_wildcards(plan.output_patterns[job["rule"]], w))
            kind, work = record.work(read_json(summary), summary)
        else:
            kind, work = data_work(job["rule"], w, sizes, shards.get((w.get("round"), w.get("set"))), plan.compositions)
        rows.append({"rule": job["rule"], "group": group_of(w), "kind": kind, "work": work, "seconds": job["seconds"]})
    return pd.DataFrame(rows), ignored


def rates(measured: pd.DataFrame, keys: list[str]) -> pd.Series:
    """Seconds per unit of work: total measured seconds over total work of each key."""
    total = measured.groupby(keys)[["seconds", "work"]].sum()
    return (total.seconds / total.work.where(total.work > 0)).dropna()


def pending_scores(plan: PlannedRun) -> list[dict]:
    """Candidate scoring jobs of transfer shards that wait on each round's reranker (reranker.select > 0)."""
    if not plan.config["reranker"]["select"]:
        return []
    planned = {(j["wildcards"]["round"], j["wildcards"]["set"], j["wildcards"]["shard"], j["wildcards"]["scorer"])
               for j in plan.jobs if j["rule"] == "score"}
    rounds = sorted({j["wildcards"]["round"] for j in plan.jobs if j["rule"] == "tune_reranker"}, key=int)
    jobs = []
    for round in rounds:
        for name in plan.config["transfer_sets"]:
            for shard in map(str, range(plan.config["decode"]["shards"][name])):
                for scorer in plan.reranker_scorers:
                    if (round, name, shard, scorer) not in planned:
                        jobs.append({"rule": "score", "wildcards": {"round": round, "set": name, "scorer": scorer, "shard": shard},
                                     "gpu": plan.scorer_gpus[scorer], "command": ""})
    return jobs


def target_sizes(plan: PlannedRun, measured: Path, stats: Path | None) -> tuple[SetSizes, str]:
    measured_stats, counts = run_stats(measured)
    if stats is not None:
        return SetSizes({**counts, **read_stats(stats)}, str(stats)), f"sentence counts from {stats}"
    transfer = {name: plan.config["data"]["transfer"][f"{name}_size"] for name in ("bitext", "mono")}
    note = (f"sentence counts: transfer sets from data.transfer ({', '.join(f'{k} {v}' for k, v in transfer.items())}), "
            f"the other sets from {measured_stats} (give --stats for the target's own)")
    source = f"{measured_stats} ({'or --stats' if counts else 'not found; give --stats'})"
    return SetSizes({**counts, **transfer}, source), note
