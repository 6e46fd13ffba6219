"""A small pipeline through profiles/slurm on a real single-node Slurm, compared with a local run.

tests/slurm/setup-slurm.sh installs Debian's slurm-wlm and munge (root, apt-get) and starts one
node with a fake GPU; the fixture stops exactly the daemons it started. The site placeholders
of the profile (partition, account, GPU model, wall time) and the CI-only settings (status
command, polling) are overridden on the command line, as a user's site edits would be; the
profile file itself is used unchanged.
"""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
import yaml

from helpers import REPO, assert_same_weights, tiny_config

SCRIPTS = REPO / "tests" / "slurm"
# Slurm daemons, snakemake and every job share the 2 CI cores: generous, but a hang still fails
SNAKEMAKE_TIMEOUT = 1800
CI_OVERRIDES = [
    # without slurmdbd, sacct cannot answer and the plugin would poll it forever
    "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "1",
    "--jobs", "2", "--latency-wait", "5", "--slurm-keep-successful-logs",
    # the profile's EDIT placeholders, as a site would fill them in (this node's partition; no
    # GPU model; the micro run's memory and wall time)
    "--default-resources", "slurm_partition=debug", "slurm_account=ci",
    "--set-resources", "train_teacher:runtime=30",
]
QUALITY = ["bleu_greedy", "bleu_beam", "chrf_greedy", "chrf_beam", "ter_beam", "parameters", "nonzero"]


def micro_config() -> dict:
    """The tiny config cut to one round, two scorers, two students and one word-KD student: every
    stage, a checkpoint, sharded decoding and model jobs with and without a GPU."""
    config = tiny_config()
    config["self_training"]["rounds"] = 1
    config["scorers"] = [s for s in config["scorers"] if s["name"] in ("teacher", "length")]
    config["r2l"]["decode"] = False
    config["transfer_sets"] = ["bitext"]
    config["teacher"]["train"]["max_steps"] = 150
    config["student"]["systems"] = ["top1-bitext", "rerank-bitext"]
    config["student"]["objectives"] = [
        {"name": "wordkd_topk", "objective": "word_kd", "labels": "top1-bitext", "alpha": 0.5, "topk": 8}]
    config["reranker"].update(tuners=["mira"], select=1)
    config["resources"] = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["resources"]
    for entry in config["resources"].values():  # jobs side by side on the 2-core, ~19 GB node
        entry.update(mem_mb=1500, runtime=20)
    return config


def why_not_runnable() -> str | None:
    if os.geteuid() != 0:
        return "installing and starting Slurm daemons needs root"
    if not shutil.which("slurmctld") and not shutil.which("apt-get"):
        return "no apt-get to install slurm-wlm"
    return None


def running(pid: int) -> bool:
    """Alive and not a zombie (a daemon whose parent is gone is never reaped in a container)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    reason = why_not_runnable()
    if reason:
        pytest.skip(reason)
    state = tmp_path_factory.mktemp("slurm-state")
    env = {**os.environ, "SLURM_CI_DIR": str(state)}
    setup = subprocess.run(["bash", str(SCRIPTS / "setup-slurm.sh")], env=env, capture_output=True, text=True,
                           timeout=600)
    pids = [int(p.read_text()) for p in (state / "pids").glob("*.pid")] if (state / "pids").exists() else []
    try:
        assert setup.returncode == 0, setup.stdout + setup.stderr
        yield state
    finally:
        subprocess.run(["bash", str(SCRIPTS / "teardown-slurm.sh")], env=env, timeout=120)
        assert not [pid for pid in pids if running(pid)], "a Slurm daemon outlived the teardown"


def snakemake(workdir: Path, *args) -> tuple[subprocess.CompletedProcess, float]:
    started = time.time()
    result = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), *args],
                            cwd=workdir, capture_output=True, text=True, timeout=SNAKEMAKE_TIMEOUT)
    assert result.returncode == 0, result.stderr[-4000:]
    return result, time.time() - started


def new_workdir(path: Path, config: dict) -> Path:
    (path / "config").mkdir(parents=True)
    (path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return path


def finished_jobs(log: str) -> collections.Counter:
    return collections.Counter(re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", log))


def slurm_jobs() -> list[dict]:
    """Every job slurmctld still knows (MinJobAge keeps finished ones), as scontrol's key=value."""
    listing = subprocess.run(["scontrol", "-d", "-o", "show", "job"], capture_output=True, text=True, check=True)
    return [dict(field.split("=", 1) for field in line.split() if "=" in field)
            for line in listing.stdout.splitlines() if line.startswith("JobId=")]


def job_rule(job: dict) -> str:
    """The plugin's --comment is rule_<rule>[_wildcards_<values>]."""
    return re.match(r"rule_(.+?)(?:_wildcards_.*)?$", job["Comment"]).group(1)


def asks_for_gpu(rule: str, comment: str, config: dict) -> bool:
    if rule == "score":
        scorer = next(s for s in config["scorers"] if f"_{s['name']}_" in f"{comment}_")
        return scorer.get("gpu", False)
    return {**config["resources"]["default"], **config["resources"].get(rule, {})}["gpu"] > 0


def same_models(a: Path, b: Path) -> None:
    weights = sorted(p.relative_to(a) for p in a.rglob("model.safetensors"))
    assert weights and weights == sorted(p.relative_to(b) for p in b.rglob("model.safetensors"))
    for path in weights:
        assert_same_weights(a / path.parent, b / path.parent)


@pytest.mark.slow
def test_pipeline_on_slurm_matches_local_run(slurm_cluster, tmp_path):
    config = micro_config()
    local = new_workdir(tmp_path / "local", config)
    on_slurm = new_workdir(tmp_path / "slurm", config)
    local_run, local_seconds = snakemake(local, "--cores", "2", "--workflow-profile", str(REPO / "profiles" / "default"))
    slurm_run, slurm_seconds = snakemake(on_slurm, "--workflow-profile", str(REPO / "profiles" / "slurm"), *CI_OVERRIDES)

    jobs = [job for job in slurm_jobs() if Path(job["WorkDir"]) == on_slurm]
    listing = "\n".join(f"{job['JobId']:>4} {job['JobState']:<10} {job.get('TresPerJob', '-'):<12} "
                        f"{job.get('JOB_GRES', '-'):<8} {job['Comment']}" for job in jobs)
    (tmp_path / "slurm-jobs.txt").write_text(listing + "\n")
    print(f"\nlocal run {local_seconds:.0f} s, Slurm run {slurm_seconds:.0f} s, {len(jobs)} Slurm jobs:\n{listing}")

    # one sbatch job per rule instance, except the workflow's local rules
    submitted = collections.Counter(job_rule(job) for job in jobs)
    ran = finished_jobs(slurm_run.stderr)
    assert ran == finished_jobs(local_run.stderr)  # the same DAG as the local run
    local_rules = set(ran) - set(submitted)
    assert local_rules == {"all", "gather_costs", "list_selected_features", "figures", "report"}
    assert submitted == collections.Counter({rule: n for rule, n in ran.items() if rule not in local_rules})
    assert all(job["JobState"] == "COMPLETED" for job in jobs)

    # GPU rules asked for a GPU and were granted the node's (fake) one; the others were not given one
    for job in jobs:
        rule = job_rule(job)
        if asks_for_gpu(rule, job["Comment"], config):
            assert job.get("TresPerJob") == "gres:gpu:1" and job.get("JOB_GRES") == "gpu:1", job["Comment"]
        else:
            assert "TresPerJob" not in job and job.get("JOB_GRES", "(null)") == "(null)", job["Comment"]
    teacher_log = (on_slurm / "logs" / "train_teacher" / "train_teacher.log").read_text()
    assert re.search(r"slurm job \d+ CUDA_VISIBLE_DEVICES=0", teacher_log)
    assert "CUDA_VISIBLE_DEVICES=0" not in (on_slurm / "logs" / "prepare_data" / "prepare_data.log").read_text()

    # same seed, same results: models, labels, reranker weights and every quality figure
    a, b = local / "results", on_slurm / "results"
    same_models(a / "models", b / "models")
    same_models(a / "round0" / "students", b / "round0" / "students")
    for labels in sorted((a / "round0" / "labels").rglob("*.parquet")):
        pd.testing.assert_frame_equal(pd.read_parquet(labels), pd.read_parquet(b / labels.relative_to(a)))
    weights = [json.loads((root / "round0" / "reranker" / "weights.json").read_text()) for root in (a, b)]
    assert weights[0] == weights[1]
    reports = [pd.read_csv(root / "report.csv").set_index("system") for root in (a, b)]
    columns = [c for c in QUALITY if c in reports[0].columns]
    assert len(columns) >= 5
    pd.testing.assert_frame_equal(reports[0][columns], reports[1][columns])


def running_job(comment: str, timeout: float) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for job in slurm_jobs():
            if job.get("Comment") == comment and job["JobState"] == "RUNNING":
                return job["JobId"]
        time.sleep(1)
    raise AssertionError(f"no running Slurm job {comment} after {timeout} s")


def training_process(workdir: Path) -> int:
    for process in psutil.process_iter(["cmdline", "cwd"]):
        if "mtdistill.train" in (process.info["cmdline"] or []) and process.info["cwd"] == str(workdir):
            return process.pid
    raise AssertionError(f"no mtdistill.train process in {workdir}")


@pytest.mark.slow
def test_training_killed_at_its_time_limit_resumes_in_the_retried_job(slurm_cluster, tmp_path):
    """The profile's `retries: 1` resubmits a teacher that hit its Slurm time limit, and the new job
    goes on from the last checkpoint instead of step 0."""
    config = micro_config()
    config["teacher"]["train"].update(max_steps=600, eval_every=25, patience=100)
    workdir = new_workdir(tmp_path / "timelimit", config)
    checkpoint = workdir / "results" / "models" / "teacher.resume" / "last.pt"
    teacher = workdir / "results" / "models" / "teacher"
    process = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), str(teacher.relative_to(workdir)),
         "--workflow-profile", str(REPO / "profiles" / "slurm"), *CI_OVERRIDES],
        cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        job_id = running_job("rule_train_teacher", timeout=300)
        deadline = time.time() + 300
        while not checkpoint.exists() and time.time() < deadline:
            time.sleep(0.5)
        assert checkpoint.exists(), "no checkpoint before the time limit"
        # Hold the training where it is (slurmctld checks limits only every 30 s or so, and a fast
        # machine could finish first), then give the job a time limit it has already used up:
        # slurmctld ends it as TIMEOUT, with SIGCONT and SIGTERM.
        os.kill(training_process(workdir), signal.SIGSTOP)
        subprocess.run(["scontrol", "update", f"JobId={job_id}", "TimeLimit=0:01"], check=True)
        output, _ = process.communicate(timeout=SNAKEMAKE_TIMEOUT)
    finally:
        process.kill()
    assert process.returncode == 0, output[-4000:]

    attempts = [job for job in slurm_jobs() if Path(job["WorkDir"]) == workdir and job["Comment"] == "rule_train_teacher"]
    assert [job["JobState"] for job in attempts] == ["TIMEOUT", "COMPLETED"]
    resumed = re.search(r"resumed from \S+last\.pt at step (\d+)", (workdir / "logs" / "train_teacher" / "train_teacher.log").read_text())
    assert resumed and 0 < int(resumed.group(1)) < 600
    summary = json.loads((teacher / "training.json").read_text())
    assert summary["steps"] == 600 and [h["step"] for h in summary["history"]] == list(range(25, 601, 25))
    assert not checkpoint.parent.exists()
    print(f"\nteacher job {attempts[0]['JobId']} TIMEOUT, retried as job {attempts[1]['JobId']}, resumed at step {resumed.group(1)}")
