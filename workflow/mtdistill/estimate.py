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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import dag
from .core.io import InputError, write_json
from .core.cli import run_main
from .estimation import PlannedRun, dry_run, group_of, measured_jobs, pending_scores, planned_work, rates, target_sizes

PENDING = "score (after checkpoint)"


@dataclass
class Estimate:
    jobs: pd.DataFrame
    rules: pd.DataFrame
    totals: dict
    notes: list[str] = field(default_factory=list)


def wildcards_text(wildcards: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in wildcards.items())


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
