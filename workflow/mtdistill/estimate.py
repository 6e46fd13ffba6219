"""Expected hours and GPU hours of a run, before it starts, from an earlier run's benchmark files.

The jobs are those of the workflow's dry-run DAG for the given config (the whole DAG, as for a
fresh directory). Each job's seconds come from the measured per-job benchmark files (column `s`)
of an earlier run, `--measured <run>/results/benchmarks`, scaled by the work the job does:

  training (mtdistill.train)  steps x batch_tokens: the measured job's steps run and
        batch tokens (its model's training.json) against the planned --max-steps and --batch-tokens,
        times --accumulate; per process: torchrun's processes take their batches side by side.
        Early stopping can only shorten a planned job, so training estimates are upper bounds.
        Training for --epochs (self-training fine-tuning) scales by epochs x training sentences.
  jobs of one set or shard (decoding, merging, scoring, labels)  sentences: the set's size
        (results/data/stats.json), split over its shards as decoding splits it; teacher_topk:
        the sentences of the transfer sets its labels come from.
  evaluate  test-set sentences.
  every other rule  one job: the measured mean.

A job's rate (seconds per unit) comes from the measured jobs of the same rule and the same
wildcards apart from round, set and shard (the same scorer, helper, student or direction); if
there are none, from every measured job of its rule. A rule never measured is reported as
unmeasured and left out of the hours. Architecture, beam size and sentence length are not
modelled: for a new model size, measure a short calibration run with the target's models (few
steps, small transfer sets), and the estimate scales it up.

Sentence counts of the target: `--stats` (its results/data/stats.json, e.g. after running only
`snakemake results/data/stats.json`); else the transfer sets' sizes from data.transfer and the
other sets' from the measured run.

--speedup X divides the seconds of the jobs that request a GPU (resources gpu > 0): how much faster
the target GPU is than the machine that produced the measurements. GPU hours = GPUs x hours of
those jobs; the other jobs' hours are reported as CPU-only hours.

Which scorers score the transfer shards is decided by each round's reranker (a checkpoint), so a
dry run cannot list those jobs: they are added as `score (after checkpoint)`, counting on each
shard the reranker.select candidate scorers with the most GPU hours, an upper bound on those.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from snakemake.exceptions import WorkflowError
from snakemake.io import apply_wildcards

from . import dag, plan
from .decode import shard_rows
from .core.io import InputError, read_json, write_json
from .core.cli import run_main
from .train import parser as train_parser
from .training import record

BENCHMARKS = "results/benchmarks"
# Wildcards that only say which data a job processes; the others say which model or method it runs.
DATA_WILDCARDS = ("round", "set", "shard")
TRAINING_MODULE = "mtdistill.train"
PENDING = "score (after checkpoint)"


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


@dataclass
class Estimate:
    jobs: pd.DataFrame
    rules: pd.DataFrame
    totals: dict
    notes: list[str] = field(default_factory=list)


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
    if rule == "evaluate":
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


def wildcards_text(wildcards: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in wildcards.items())


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


def estimate(measured: Path, directory: Path = Path("."), configfiles: list[Path] = (), stats: Path | None = None,
             speedup: float = 1.0, snakefile: Path = dag.SNAKEFILE) -> Estimate:
    """Estimate for the config of `directory` and `configfiles` from the benchmark files in `measured`."""
    if not measured.is_dir():  # before the dry run, which takes seconds
        raise InputError(f"{measured}: measured benchmark directory not found")
    return estimate_plan(dry_run(directory, list(configfiles), snakefile), measured, stats, speedup)


def estimate_plan(plan: PlannedRun, measured: Path, stats: Path | None = None, speedup: float = 1.0) -> Estimate:
    if not measured.is_dir():
        raise InputError(f"{measured}: measured benchmark directory not found")
    sizes, sizes_note = target_sizes(plan, measured, stats)
    pending = pending_scores(plan)
    jobs = pd.DataFrame([{**job, "pending": False} for job in plan.jobs] + [{**job, "pending": True} for job in pending])
    work = [planned_work(job, sizes, plan) for job in jobs.to_dict("records")]
    jobs["kind"], jobs["work"] = [k for k, _ in work], [w for _, w in work]
    jobs["group"] = jobs.wildcards.map(group_of)
    training_rules = set(jobs.rule[~jobs.kind.isin(["sentences", "job"])])
    found, ignored = measured_jobs(measured, plan, training_rules)

    jobs = jobs.join(rates(found, ["rule", "group", "kind"]).rename("group_rate"), on=["rule", "group", "kind"])
    jobs = jobs.join(rates(found, ["rule", "kind"]).rename("rule_rate"), on=["rule", "kind"])
    jobs["basis"] = np.select([jobs.group_rate.notna(), jobs.rule_rate.notna()], ["same rule and model", "rule"], "unmeasured")
    seconds = jobs.work * jobs.group_rate.fillna(jobs.rule_rate)
    jobs["hours"] = seconds.where(jobs.gpu == 0, seconds / speedup) / 3600
    jobs = keep_likeliest_pending(jobs, plan.config["reranker"]["select"])
    rank = jobs.rule.map({rule: i for i, rule in enumerate(dict.fromkeys(jobs.rule))})
    jobs = jobs.assign(rank=rank).sort_values(["rank", "pending"], kind="stable").drop(columns="rank")
    jobs["gpu_hours"] = jobs.gpu * jobs.hours
    jobs["row"] = jobs.rule.where(~jobs.pending, PENDING)
    jobs["wildcards"] = jobs.wildcards.map(wildcards_text)
    jobs = jobs[["row", "rule", "wildcards", "gpu", "kind", "work", "basis", "hours", "gpu_hours", "pending"]]

    notes = [sizes_note]
    if pending:
        notes.append(f"{PENDING}: the transfer shards' scorers are chosen by each round's reranker (checkpoint); counted "
                     f"as the {plan.config['reranker']['select']} of {len(plan.reranker_scorers)} candidate scorers with "
                     "the most GPU hours per shard, an upper bound")
    if speedup != 1:
        notes.append(f"jobs requesting a GPU: measured seconds divided by --speedup {speedup:g}")
    if ignored:
        notes.append(f"{ignored} benchmark file(s) in {measured} belong to no planned rule: not used")
    return Estimate(jobs, rule_table(jobs), totals_of(jobs), notes)


def keep_likeliest_pending(jobs: pd.DataFrame, select: int) -> pd.DataFrame:
    """Of each shard's candidate scorers, the `select` with the most GPU hours, then hours: an upper
    bound on the GPU hours. Unmeasured ones count as the most expensive (they might be)."""
    pending = jobs[jobs.pending]
    if pending.empty:
        return jobs
    hours = pending.hours.fillna(float("inf"))
    ranks = pd.DataFrame({"shard": pending.wildcards.map(lambda w: (w["round"], w["set"], w["shard"])),
                          "gpu_hours": hours.where(pending.gpu > 0, 0.0) * pending.gpu.clip(lower=1), "hours": hours})
    kept = ranks.sort_values(["gpu_hours", "hours"], ascending=False, kind="stable").groupby("shard").head(select).index
    return pd.concat([jobs[~jobs.pending], pending.loc[kept]])


def rule_table(jobs: pd.DataFrame) -> pd.DataFrame:
    """Per rule (in DAG order): jobs, GPU jobs, unmeasured jobs, scaling, hours, GPU hours, longest job."""
    table = jobs.groupby("row", sort=False).agg(
        jobs=("rule", "size"), gpu_jobs=("gpu", lambda g: int((g > 0).sum())),
        unmeasured=("basis", lambda b: int((b == "unmeasured").sum())),
        scaled_by=("kind", lambda k: ", ".join(sorted(set(k)))),
        hours=("hours", lambda h: h.sum(min_count=1)), gpu_hours=("gpu_hours", lambda h: h.sum(min_count=1)),
        longest_job_hours=("hours", "max"),
    ).reset_index().rename(columns={"row": "rule"})
    return table


def totals_of(jobs: pd.DataFrame) -> dict:
    gpu = jobs.gpu > 0
    unmeasured = jobs.basis == "unmeasured"
    return {
        "jobs": len(jobs), "gpu_jobs": int(gpu.sum()), "pending_jobs": int(jobs.pending.sum()),
        "hours": float(jobs.hours.sum()), "gpu_hours": float(jobs.gpu_hours[gpu].sum()),
        "cpu_only_hours": float(jobs.hours[~gpu].sum()),
        "unmeasured_jobs": int(unmeasured.sum()), "unmeasured_gpu_jobs": int((unmeasured & gpu).sum()),
        "unmeasured_rules": sorted(set(jobs.row[unmeasured])),
    }


def hours_text(hours: float) -> str:
    return f"{hours:.2f}" if hours >= 1 else f"{hours:.3g}"


def render(result: Estimate, with_jobs: bool = False) -> str:
    t = result.totals
    table = result.rules.astype(object)
    table.loc[len(table)] = ["total", t["jobs"], t["gpu_jobs"], t["unmeasured_jobs"], "", t["hours"], t["gpu_hours"], 0.0]
    for column in ("hours", "gpu_hours", "longest_job_hours"):
        table[column] = [hours_text(h) if pd.notna(h) else "unmeasured" for h in table[column]]
    table.loc[table.gpu_jobs == 0, "gpu_hours"] = "-"
    table.loc[table.index[-1], "longest_job_hours"] = ""
    lines = [table.rename(columns=lambda c: c.replace("_", " ")).to_markdown(index=False, colalign=["left", *["right"] * 3, "left", *["right"] * 3]),
             "", f"GPU hours: {hours_text(t['gpu_hours'])} over {t['gpu_jobs']} jobs requesting a GPU"
             + (f" ({t['unmeasured_gpu_jobs']} of them unmeasured, not counted)" if t["unmeasured_gpu_jobs"] else ""),
             f"CPU-only hours: {hours_text(t['cpu_only_hours'])} over {t['jobs'] - t['gpu_jobs']} jobs"]
    if t["unmeasured_jobs"]:
        lines.append(f"unmeasured: {t['unmeasured_jobs']} jobs of {', '.join(t['unmeasured_rules'])} (no benchmark "
                     "of their rule in the measured run), not in the hours")
    lines += [f"note: {note}" for note in result.notes]
    if with_jobs:
        lines += ["", result.jobs.drop(columns="row").to_markdown(index=False, floatfmt=".4g")]
    return "\n".join(lines)


def as_json(result: Estimate) -> dict:
    def records(df):
        return df.astype(object).where(df.notna(), None).to_dict("records")

    return {"rules": records(result.rules), "totals": result.totals, "notes": result.notes, "jobs": records(result.jobs)}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--measured", required=True, type=Path,
                   help="benchmark directory of an earlier run, e.g. results/benchmarks or runs/bench-cpu/results/benchmarks")
    p.add_argument("--configfile", action="append", default=[], type=Path,
                   help="config merged over <directory>/config/config.yaml, as snakemake's (repeatable)")
    p.add_argument("--directory", default=Path("."), type=Path, help="run directory whose config/config.yaml is the base")
    p.add_argument("--stats", type=Path, help="the target's results/data/stats.json (sentence counts per set)")
    p.add_argument("--speedup", type=float, default=1.0,
                   help="how many times faster the target GPU runs than the machine that produced the measurements")
    p.add_argument("--json", type=Path, help="also write the estimate (rules, totals, jobs) as JSON")
    p.add_argument("--jobs", action="store_true", help="also print the estimate of every job")
    args = p.parse_args(argv)
    if args.speedup <= 0:
        p.error("--speedup must be positive")
    return args


def run(args) -> None:
    result = estimate(args.measured, args.directory, args.configfile, args.stats, args.speedup)
    print(render(result, args.jobs))
    if args.json:
        write_json(as_json(result), args.json)


def main(argv=None) -> int:
    return run_main(run, parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
