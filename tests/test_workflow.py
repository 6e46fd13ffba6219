"""The workflow as a whole: DAG (dry run through snakemake.api), profiles, lint, format, end to end."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from snakemake import api
from snakemake.settings import types as settings
from snakemake.settings.enums import Quietness

from conftest import REPO, tiny_config

STAGE_RULES = {"prepare_data", "train_tokenizer", "train_teacher", "train_helper", "decode_nbest", "merge_nbest", "score",
               "tune_reranker", "select_labels", "train_student", "evaluate", "report"}
MODEL_RULES = {"train_teacher", "train_helper", "decode_nbest", "train_student", "evaluate"}
NEURAL_SCORERS = {"teacher", "r2l", "backward", "lm"}


def dry_run_dag(tmp_path, config: dict):
    """Jobs of the dry-run DAG for `config`, as (rule name, wildcards, resources)."""
    workdir = tmp_path / "wd"
    (workdir / "config").mkdir(parents=True)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    with api.SnakemakeApi(settings.OutputSettings(quiet={Quietness.ALL})) as sm:
        workflow = sm.workflow(
            resource_settings=settings.ResourceSettings(cores=2),
            config_settings=settings.ConfigSettings(),
            snakefile=REPO / "Snakefile",
            workdir=workdir,
        )
        dag = workflow.dag(settings.DAGSettings(targets=frozenset()))
        dag.execute_workflow(executor="dryrun")
        inner = dag.workflow_api._workflow  # no public accessor for the planned jobs (pinned snakemake)
        return [(job.rule.name, dict(job.wildcards), dict(job.resources)) for job in inner.dag.jobs]


def test_dag_has_every_stage_and_model_rules_request_a_gpu(tmp_path):
    config = tiny_config()
    jobs = dry_run_dag(tmp_path, config)
    names = {name for name, _, _ in jobs}
    assert STAGE_RULES <= names
    for name, wildcards, resources in jobs:
        if name in MODEL_RULES or (name == "score" and wildcards["scorer"] in NEURAL_SCORERS):
            assert resources.get("gpu") == 1, name
        if name == "score" and wildcards["scorer"] in ("length", "mbr", "ngram"):
            assert resources.get("gpu", 0) == 0
    shards = {("tune", "0"), ("bitext", "0"), ("bitext", "1"), ("mono", "0")}
    decoded = {(w["set"], w["shard"], w["direction"]) for n, w, _ in jobs if n == "decode_nbest"}
    assert decoded == {(*shard, direction) for shard in shards for direction in ("l2r", "r2l")}
    assert {(w["set"], w["shard"]) for n, w, _ in jobs if n == "merge_nbest"} == shards
    assert {w["helper"] for n, w, _ in jobs if n == "train_helper"} == {"r2l", "backward", "lm"}
    scores = [w for n, w, _ in jobs if n == "score"]
    assert len(scores) == len(shards) * len(config["scorers"])
    students = {w["strategy"] for n, w, _ in jobs if n == "train_student"}
    assert students == set(config["strategies"])
    labels = {(w["strategy"], w["set"]) for n, w, _ in jobs if n == "select_labels"}
    assert ("seqinter", "mono") not in labels and ("rerank", "mono") in labels


def test_pretrained_teacher_replaces_teacher_training(tmp_path):
    config = tiny_config()
    config["teacher"]["pretrained"] = "Helsinki-NLP/opus-mt-de-en"
    names = {name for name, _, _ in dry_run_dag(tmp_path, config)}
    assert "import_teacher" in names and not {"train_teacher", "train_tokenizer"} & names


def snakemake(*args, cwd=REPO, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), *args],
                          cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def fresh_workdir(tmp_path):
    """A working directory with the default config and no results, whatever the checkout holds."""
    (tmp_path / "config").mkdir()
    shutil.copy(REPO / "config" / "config.yaml", tmp_path / "config" / "config.yaml")
    return tmp_path


@pytest.mark.parametrize("profile", ["default", "slurm"])
def test_profiles_dry_run(fresh_workdir, profile):
    result = snakemake("-n", "--workflow-profile", str(REPO / "profiles" / profile), cwd=fresh_workdir)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "train_teacher" in result.stdout and "report" in result.stdout


def test_slurm_profile_resources(fresh_workdir):
    """Under the Slurm profile, model jobs carry gpu=1 plus the profile's partition and account."""
    result = snakemake("-n", "--workflow-profile", str(REPO / "profiles" / "slurm"), cwd=fresh_workdir)
    assert result.returncode == 0, result.stderr[-2000:]
    blocks = result.stdout.split("\nrule ")
    teacher = next(b for b in blocks if b.startswith("train_teacher:"))
    assert "gpu=1" in teacher and "slurm_partition=gpu" in teacher and "slurm_account=my_account" in teacher
    assert "runtime=720" in teacher  # set-resources override from the profile
    tokenizer = next(b for b in blocks if b.startswith("train_tokenizer:"))
    assert "gpu=" not in tokenizer
    rules = "".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk"))
    assert "slurm_partition" not in rules and "slurm_account" not in rules


def test_lint_is_clean():
    result = snakemake("--lint")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_snakefmt_is_clean():
    result = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "Snakefile", "workflow/rules"],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]


def test_scorers_are_a_config_list_and_can_be_limited_to_sets(tmp_path):
    """An added scorer is one job per set x shard; one limited to the tune set never scores transfer
    shards and stays out of the reranker; R2L decoding and helpers are built only when used."""
    config = tiny_config()
    config["r2l"]["decode"] = False
    config["scorers"] = [s for s in config["scorers"] if s["name"] not in ("r2l", "lm")] + [
        {"name": "qe", "kind": "comet", "model": "/models/kiwi/checkpoints/model.ckpt", "gpu": True},
        {"name": "comet_ref", "kind": "comet", "model": "/models/comet", "sets": ["tune"], "gpu": True},
    ]
    jobs = dry_run_dag(tmp_path, config)
    scores = {(w["scorer"], w["set"]) for n, w, _ in jobs if n == "score"}
    assert {("qe", s) for s in ("tune", "bitext", "mono")} <= scores
    assert ("comet_ref", "tune") in scores and not {("comet_ref", "bitext"), ("comet_ref", "mono")} & scores
    assert {w["direction"] for n, w, _ in jobs if n == "decode_nbest"} == {"l2r"}
    assert {w["helper"] for n, w, _ in jobs if n == "train_helper"} == {"backward"}


def test_scorer_without_its_model_is_named(tmp_path):
    config = tiny_config()
    config["scorers"].append({"name": "kiwi", "kind": "comet"})
    with pytest.raises(Exception, match=r"scorers\[\d+\] \(kiwi\): kind comet needs `model`"):
        dry_run_dag(tmp_path, config)


@pytest.mark.slow
def test_end_to_end_tiny_run(tmp_path):
    from comet_fixture import build_tiny_comet
    from test_comet import TEXTS

    workdir = tmp_path / "run"
    (workdir / "config").mkdir(parents=True)
    config = tiny_config()
    config["scorers"] += [
        {"name": "kiwi", "kind": "comet", "model": str(build_tiny_comet(tmp_path / "kiwi", TEXTS, "qe")), "batch_size": 32},
        {"name": "comet", "kind": "comet", "model": str(build_tiny_comet(tmp_path / "comet", TEXTS, "ref")), "sets": ["tune"]},
    ]
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake("--cores", "2", "--workflow-profile", str(REPO / "profiles" / "default"), cwd=workdir, timeout=1200)
    assert result.returncode == 0, result.stderr[-4000:]
    table = pd.read_csv(workdir / "results" / "report.csv")
    assert list(table.system) == ["teacher"] + [f"student_{s}" for s in config["strategies"]]
    assert list(table.strategy[1:]) == config["strategies"]
    for column in ("parameters", "bleu_greedy", "bleu_beam", "chrf_greedy", "chrf_beam", "sent_per_s_greedy", "sent_per_s_beam"):
        assert table[column].map(math.isfinite).all(), column
    assert (table.parameters[1:] < table.parameters[0]).all()
    report = (workdir / "results" / "report.md").read_text()
    assert "nrefs:3" in report and "Reranker" in report
    assert "## Scorers" in report and all(s["name"] in report for s in config["scorers"])
    assert "Left-to-right lists alone" in report  # oracle of L2R-only vs merged lists
    comet_ref = pd.read_parquet(workdir / "results" / "features" / "tune" / "comet" / "0.parquet")
    assert comet_ref.comet_score.map(math.isfinite).all()
    assert not (workdir / "results" / "features" / "bitext" / "comet").exists()  # tune only
    weights = yaml.safe_load((workdir / "results" / "reranker" / "weights.json").read_text())
    assert "kiwi_score" in weights["features"] and "comet_score" not in weights["features"]
    assert {"from_l2r", "from_r2l", "r2l_logprob", "backward_logprob", "lm_logprob"} <= set(weights["features"])
    for rule in ("train_teacher", "decode_nbest", "score", "train_student", "evaluate"):
        assert any((workdir / "results" / "benchmarks" / rule).iterdir()), rule
        assert any((workdir / "logs" / rule).iterdir()), rule
    # the Snakemake HTML report builds from the finished run
    html = snakemake("--report", "report.html", cwd=workdir)
    assert html.returncode == 0, html.stderr[-2000:]
    assert "report.csv" in (workdir / "report.html").read_text(errors="replace")
    # a second invocation has nothing to do: every output is cached
    again = snakemake("-n", "--cores", "2", cwd=workdir)
    assert "Nothing to be done" in again.stdout + again.stderr
