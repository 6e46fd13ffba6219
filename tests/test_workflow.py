"""The workflow as a whole: DAG (dry run through mtdistill.dag), profiles, lint, format, end to end."""

from __future__ import annotations

import json
import math
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from comet_fixture import build_checkpoints, comet_python
from helpers import REPO, dry_run_dag, planned_jobs, tiny_config
from mtdistill import dag, figures, models
from mtdistill.objectives.prune import prunable

STAGE_RULES = {"prepare_data", "train_tokenizer", "train_teacher", "train_helper", "decode_nbest", "merge_nbest", "score",
               "tune_reranker", "select_labels", "finetune_decoders", "train_student", "evaluate", "gather_costs",
               "list_selected_features", "teacher_topk", "train_objective", "kb_projection", "build_kb",
               "tune_retrieval", "figures", "report"}
MODEL_RULES = {"train_teacher", "train_helper", "finetune_decoders", "decode_nbest", "train_student", "teacher_topk",
               "train_objective", "kb_projection", "build_kb", "tune_retrieval", "evaluate"}
NEURAL_SCORERS = {"teacher", "r2l", "backward", "lm"}


def test_dag_has_every_stage_and_model_rules_request_a_gpu(tmp_path):
    config = tiny_config()
    jobs = dry_run_dag(tmp_path, config)
    names = {name for name, _, _ in jobs}
    assert STAGE_RULES <= names
    assert "convert_ct2" not in names  # backend hf everywhere: nothing to convert
    for name, wildcards, resources in jobs:
        if name in MODEL_RULES or (name == "score" and wildcards["scorer"] in NEURAL_SCORERS):
            assert resources.get("gpu") == 1, name
        if name == "score" and wildcards["scorer"] in ("length", "mbr", "ngram"):
            assert resources.get("gpu", 0) == 0
    shards = {("tune", "0"), ("dev", "0"), ("bitext", "0"), ("bitext", "1"), ("mono", "0")}
    rounds = {"0", "1"}
    decoded = {(w["round"], w["set"], w["shard"], w["direction"]) for n, w, _ in jobs if n == "decode_nbest"}
    assert decoded == {(r, *shard, d) for r in rounds for shard in shards for d in ("l2r", "r2l")}
    assert {(w["round"], w["set"], w["shard"]) for n, w, _ in jobs if n == "merge_nbest"} == {(r, *s) for r in rounds for s in shards}
    assert {w["helper"] for n, w, _ in jobs if n == "train_helper"} == {"r2l", "backward", "lm"}
    # round 1 fine-tunes both decoders on round 0's rerank labels of every transfer set
    assert {(w["round"], w["finetuned"]) for n, w, _ in jobs if n == "finetune_decoders"} == {("1", "teacher"), ("1", "r2l")}
    labels = {(w["round"], w["strategy"], w["set"]) for n, w, _ in jobs if n == "select_labels"}
    assert {l for l in labels if l[0] == "0"} == {("0", "rerank", "bitext"), ("0", "rerank", "mono")}
    assert ("1", "seqinter", "mono") not in labels and {("1", "mbr", "mono"), ("1", "ref", "bitext")} <= labels
    assert {(w["round"], w["system"]) for n, w, _ in jobs if n == "train_student"} == {("1", s) for s in config["student"]["systems"]}
    students = {entry["name"] for entry in config["student"]["objectives"]}
    assert {(w["round"], w["student"]) for n, w, _ in jobs if n == "train_objective"} == {("1", s) for s in students}
    assert {(w["round"], w["labels"], w["k"]) for n, w, _ in jobs if n == "teacher_topk"} == {("1", "top1-both", "8")}
    # the reaugkd student's knowledge base: one job per shard of its labels' sets, after one projection head
    assert {(w["round"], w["labels"], w["set"], w["shard"]) for n, w, _ in jobs if n == "build_kb"} == {
        ("1", "top1-both", "bitext", "0"), ("1", "top1-both", "bitext", "1"), ("1", "top1-both", "mono", "0")}
    assert [(w["round"], w["labels"]) for n, w, _ in jobs if n == "kb_projection"] == [("1", "top1-both")]
    assert [(w["round"], w["student"]) for n, w, _ in jobs if n == "tune_retrieval"] == [("1", "reaugkd")]
    assert {(w["round"], w["system"]) for n, w, _ in jobs if n == "evaluate"} == (
        {("0", "teacher"), ("1", "teacher")} | {("1", s) for s in config["student"]["systems"]} | {("1", s) for s in students}
        | {("1", "reaugkd.knn")})
    # held-out sets get every scorer; which scorers the transfer shards get waits on each round's
    # reranker (a checkpoint): before it runs, only the MBR scorer the mbr students need is there
    scores = {(w["round"], w["set"], w["scorer"]) for n, w, _ in jobs if n == "score"}
    names = {s["name"] for s in config["scorers"]}
    assert {x for x in scores if x[1] in ("tune", "dev")} == {(r, s, n) for r in rounds for s in ("tune", "dev") for n in names}
    assert {x for x in scores if x[1] not in ("tune", "dev")} == {("1", "bitext", "mbr"), ("1", "mono", "mbr")}
    assert {w["round"] for n, w, _ in jobs if n == "tune_reranker"} == rounds


def test_student_config_errors_name_the_key(tmp_path):
    config = tiny_config()
    config["student"]["systems"] = ["top1-both", "seqinter-mono"]
    with pytest.raises(Exception, match=r"student.systems\[1\] \(seqinter-mono\): strategy seqinter needs references"):
        dry_run_dag(tmp_path, config)
    config["student"]["systems"] = ["top1-mono"]
    config["transfer_sets"] = ["bitext"]
    with pytest.raises(Exception, match=r"student.systems\[0\] \(top1-mono\): transfer set mono not in transfer_sets"):
        dry_run_dag(tmp_path / "second", config)
    config = tiny_config()
    config["student"]["objectives"] = [{"name": "skd", "objective": "skd", "labels": "top1-both", "init": "rerank-bitext"}]
    with pytest.raises(Exception, match=r"student.objectives\[0\].init \(skd\): rerank-bitext is not in student.systems"):
        dry_run_dag(tmp_path / "third", config)


def test_one_round_and_no_selection(tmp_path):
    """rounds: 1 is plain labelling; select: 0 scores the transfer sets with every scorer, no checkpoint wait."""
    config = tiny_config()
    config["self_training"]["rounds"] = 1
    config["reranker"]["select"] = 0
    jobs = dry_run_dag(tmp_path, config)
    assert {w["round"] for n, w, _ in jobs if n in ("decode_nbest", "score", "train_student")} == {"0"}
    assert not any(n == "finetune_decoders" for n, _, _ in jobs)
    scores = {(w["set"], w["scorer"]) for n, w, _ in jobs if n == "score"}
    assert scores == {(s, x["name"]) for s in ("tune", "dev", "bitext", "mono") for x in config["scorers"]}


def test_job_resources_come_from_the_config_and_two_gpus_train_with_torchrun(tmp_path):
    config = tiny_config()
    config["resources"] = {"default": {"mem_mb": 3000}, "train_student": {"gpu": 2, "runtime": 90}}
    jobs = planned_jobs(tmp_path, config)
    student = next(job for job in jobs if job.rule.name == "train_student")
    assert (student.resources["gpu"], student.resources["runtime"], student.resources["mem_mb"]) == (2, 90, 3000)
    assert "torchrun --standalone --nproc_per_node 2 -m mtdistill.train " in student.shellcmd
    teacher = next(job for job in jobs if job.rule.name == "train_teacher")  # built-in entry, not given here
    assert (teacher.resources["gpu"], teacher.resources["runtime"]) == (1, 720)
    assert teacher.shellcmd.startswith("python -m mtdistill.train ")
    tokenizer = next(job for job in jobs if job.rule.name == "train_tokenizer")
    assert (tokenizer.resources["gpu"], tokenizer.resources["runtime"], tokenizer.resources["mem_mb"]) == (0, 60, 3000)
    config["resources"]["train_techer"] = {"gpu": 1}
    with pytest.raises(Exception, match="train_techer"):
        dry_run_dag(tmp_path / "typo", config)


def test_pretrained_teacher_replaces_teacher_training(tmp_path):
    config = tiny_config()
    config["teacher"]["pretrained"] = "Helsinki-NLP/opus-mt-de-en"
    config["teacher"]["family"] = "marian"  # auto would read its config.json, which is not here
    names = {name for name, _, _ in dry_run_dag(tmp_path, config)}
    assert "import_teacher" in names and not {"train_teacher", "train_tokenizer"} & names


def test_ctranslate2_backend_converts_the_models_decoding_and_scoring_load(tmp_path):
    """backend ctranslate2: one convert_ct2 job per model decode_nbest and the seq2seq scorers load
    (round 1's fine-tuned decoders and a scorer's external model too), feeding those jobs."""
    config = tiny_config()
    config["backend"] = {"decode": "ctranslate2", "score": "ctranslate2", "evaluate": "hf"}
    config["scorers"].append({"name": "opus", "kind": "forced_decoding", "model": "/models/opus-mt-de-en"})
    jobs = planned_jobs(tmp_path, config)
    conversions = {job.wildcards["model"]: job for job in jobs if job.rule.name == "convert_ct2"}
    assert set(conversions) == {"models/teacher", "models/r2l", "models/backward", "round1/models/teacher",
                                "round1/models/r2l", "external/models_opus_mt_de_en"}
    assert list(conversions["round1/models/r2l"].input) == ["results/round1/models/r2l"]
    external = conversions["external/models_opus_mt_de_en"]
    assert not list(external.input) and external.params.model == "/models/opus-mt-de-en"
    seq2seq = {"teacher": "teacher", "r2l": "r2l", "backward": "backward", "opus": "external/models_opus_mt_de_en"}
    scored = set()
    for job in jobs:
        converted = [f for f in job.input if f.startswith("results/ct2/")]
        if job.rule.name == "decode_nbest":
            decoder = "teacher" if job.wildcards["direction"] == "l2r" else "r2l"
            where = "models" if job.wildcards["round"] == "0" else f"round{job.wildcards['round']}/models"
            assert converted == [f"results/ct2/{where}/{decoder}"] and "--backend ctranslate2" in job.params.backend
        elif job.rule.name == "score" and job.wildcards["scorer"] in seq2seq:
            scorer = job.wildcards["scorer"]
            model = seq2seq[scorer]
            if scorer in ("teacher", "r2l") and job.wildcards["round"] != "0":
                model = f"round{job.wildcards['round']}/models/{scorer}"
            elif "/" not in model:
                model = f"models/{model}"
            assert converted == [f"results/ct2/{model}"], (job.wildcards, converted)
            assert f"--model results/ct2/{model} --backend ctranslate2" in job.params.model
            scored.add(scorer)
        else:  # students, evaluation (backend.evaluate: hf), the LM scorer: the HF models
            assert not converted, job.rule.name
    assert scored == set(seq2seq)


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


EXAMPLE_CONFIGS = sorted((REPO / "config" / "examples").glob("*.yaml")) + sorted((REPO / "config").glob("bench-*.yaml"))


@pytest.mark.parametrize("example", EXAMPLE_CONFIGS, ids=lambda path: path.name)
def test_example_configs_dry_run(fresh_workdir, example):
    rules = {job.rule.name for job in dag.dry_run(fresh_workdir, [example]).jobs}
    assert {"tune_reranker", "train_student", "report"} <= rules


def test_slurm_profile_resources(fresh_workdir):
    """Under the Slurm profile, model jobs carry gpu=1 plus the profile's partition and account."""
    result = snakemake("-n", "--workflow-profile", str(REPO / "profiles" / "slurm"), cwd=fresh_workdir)
    assert result.returncode == 0, result.stderr[-2000:]
    blocks = result.stdout.split("\nrule ")
    teacher = next(b for b in blocks if b.startswith("train_teacher:"))
    assert "gpu=1" in teacher and "slurm_partition=gpu" in teacher and "slurm_account=my_account" in teacher
    assert "runtime=1440" in teacher and "gpu_model=a100" in teacher  # the profile's set-resources
    assert "mem_mb=16000" in teacher  # config resources.train_teacher, not overridden
    student = next(b for b in blocks if b.startswith("train_student:"))
    assert "gpu=1" in student and "runtime=360" in student and "mem_mb=8000" in student
    tokenizer = next(b for b in blocks if b.startswith("train_tokenizer:"))
    assert "gpu=0" in tokenizer and "runtime=60" in tokenizer  # resources.default
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
    config["reranker"]["select"] = 0  # every reranker scorer on the transfer sets: no checkpoint wait
    config["scorers"] = [s for s in config["scorers"] if s["name"] not in ("r2l", "lm")] + [
        {"name": "qe", "kind": "comet", "model": "/models/kiwi/checkpoints/model.ckpt", "gpu": True},
        {"name": "comet_ref", "kind": "comet", "model": "/models/comet", "sets": ["tune"], "gpu": True},
    ]
    jobs = planned_jobs(tmp_path, config)
    scores = {(job.wildcards["scorer"], job.wildcards["set"]) for job in jobs if job.rule.name == "score"}
    assert {("qe", s) for s in ("tune", "dev", "bitext", "mono")} <= scores
    assert ("comet_ref", "tune") in scores and not {("comet_ref", "bitext"), ("comet_ref", "mono")} & scores
    assert {job.wildcards["direction"] for job in jobs if job.rule.name == "decode_nbest"} == {"l2r"}
    assert {job.wildcards["helper"] for job in jobs if job.rule.name == "train_helper"} == {"backward"}
    # the comet kind scores in the COMET environment (its interpreter; envs/comet.yaml under --sdm conda)
    comet = shlex.quote(comet_python())
    for job in jobs:
        if job.rule.name == "score":
            uses_comet = job.wildcards["scorer"] in ("qe", "comet_ref")
            assert job.shellcmd.startswith(f"{comet if uses_comet else 'python'} -m mtdistill.score "), job.shellcmd
            assert conda_env(job) == ("comet.yaml" if uses_comet else "mtdistill.yaml")


def conda_env(job) -> str:
    """The file name of the conda environment a job runs in under --sdm conda."""
    spec = job.rule.expand_conda_env(job.wildcards, job.params, job.input)
    return Path(spec.file.get_path_or_uri(secret_free=True)).name


def test_evaluation_comet_runs_in_the_comet_environment_and_feeds_the_report(tmp_path):
    """evaluation.comet: one evaluate_comet job per evaluation, after evaluate, in the COMET
    environment; significance, figures and report read its output."""
    config = tiny_config()
    config["evaluation"].update(comet="/models/wmt22-comet-da", comet_encoder="/models/xlm-roberta-large")
    jobs = planned_jobs(tmp_path, config)
    evaluations = {(job.wildcards["round"], job.wildcards["system"]) for job in jobs if job.rule.name == "evaluate"}
    comet = {(job.wildcards["round"], job.wildcards["system"]): job for job in jobs if job.rule.name == "evaluate_comet"}
    assert set(comet) == evaluations and len(evaluations) > 10
    job = comet[("1", "top1-both")]
    assert list(job.input) == ["results/round1/eval/top1-both.json", "results/data/test.parquet"]
    assert list(job.output) == ["results/round1/eval/top1-both.comet.json"]
    assert job.shellcmd.startswith(f"{shlex.quote(comet_python())} -m mtdistill.comet_evaluate ")
    assert "--comet /models/wmt22-comet-da --comet-encoder /models/xlm-roberta-large" in job.shellcmd
    assert job.resources["gpu"] == 1  # resources.evaluate_comet
    assert conda_env(job) == "comet.yaml"
    for job in jobs:
        if job.rule.name == "evaluate":
            assert "--comet" not in job.shellcmd
        if job.rule.name in ("compare_systems", "figures", "report"):
            read = [f for f in job.input if "/eval/" in f and not f.endswith("significance.json")]
            assert read and all(f.endswith(".comet.json") for f in read), job.rule.name


def test_comet_without_its_environment_is_refused_naming_the_key(tmp_path, monkeypatch):
    config = tiny_config()
    config["scorers"].append({"name": "kiwi", "kind": "comet", "model": "/models/kiwi"})
    monkeypatch.setenv("MTDISTILL_COMET_PYTHON", str(tmp_path / "nowhere" / "python"))
    with pytest.raises(Exception, match=r"config key scorers\[7\]\.kind \(kiwi\): COMET runs in its own environment,"
                                        rf" but its interpreter {tmp_path}/nowhere/python .*run `make install`"):
        dry_run_dag(tmp_path, config)
    config = tiny_config()
    config["evaluation"]["comet"] = "/models/comet"
    with pytest.raises(Exception, match="config key evaluation.comet: COMET runs in its own environment"):
        dry_run_dag(tmp_path / "evaluation", config)


def test_dag_figures_job_draws_every_figure_from_every_trained_model(tmp_path):
    """One job draws every figure from all evaluations, diagnostics, significance tests and trained models, and
    the report links them; without a speculative KD student there is no acceptance figure."""
    config = tiny_config()
    jobs = {job.rule.name: job for job in planned_jobs(tmp_path, config) if job.rule.name in ("figures", "report")}
    job = jobs["figures"]
    assert sorted(job.output) == sorted(f"results/figures/{name}.png" for name in figures.FIGURES)
    assert set(job.output) <= set(jobs["report"].input)
    assert list(job.input.significance) == ["results/round1/eval/significance.json"]
    assert list(job.input.diagnostics) == [f"results/round{r}/reranker/diagnostics.json" for r in (0, 1)]
    students = [*config["student"]["systems"], *(entry["name"] for entry in config["student"]["objectives"])]
    assert set(job.input.evaluations) == {"results/round0/eval/teacher.json", "results/round1/eval/teacher.json",
                                          *(f"results/round1/eval/{s}.json" for s in [*students, "reaugkd.knn"])}
    assert set(job.input.models) == {"results/models/teacher", "results/models/r2l", "results/models/backward",
                                     "results/models/lm", "results/round1/models/teacher", "results/round1/models/r2l",
                                     *(f"results/round1/students/{s}" for s in students)}

    config["student"]["objectives"] = [e for e in config["student"]["objectives"] if e["objective"] != "skd"]
    job = next(job for job in planned_jobs(tmp_path / "no_skd", config) if job.rule.name == "figures")
    assert "results/figures/skd_acceptance.png" not in job.output and len(job.output) == len(figures.FIGURES) - 1


def test_scorer_without_its_model_is_named(tmp_path):
    config = tiny_config()
    config["scorers"].append({"name": "kiwi", "kind": "comet"})
    # the schema says it (if kind loads a model, then model is required), naming the entry and why
    with pytest.raises(Exception, match=r"(?s)'model' is a required property.*need `model`.*"
                                        r"instance\['scorers'\]\[7\].*'kind': 'comet', 'name': 'kiwi'"):
        dry_run_dag(tmp_path, config)


@pytest.mark.parametrize("section, old, new", [("student", "variants", "student.objectives"),
                                               ("resources", "train_variant", "resources.train_objective"),
                                               ("resources", "finetune_teacher", "resources.finetune_decoders")])
def test_a_renamed_config_key_is_refused_naming_the_new_one(tmp_path, section, old, new):
    config = tiny_config()
    value = config["student"].pop("objectives") if section == "student" else {}
    config.setdefault(section, {})[old] = value
    with pytest.raises(Exception, match=rf"config key {section}\.{old}: renamed {new}"):
        dry_run_dag(tmp_path, config)


@pytest.mark.slow
def test_end_to_end_tiny_run(tmp_path):
    workdir = tmp_path / "run"
    (workdir / "config").mkdir(parents=True)
    config = tiny_config()
    # COMET in its own environment: QE and reference-based scorers, and COMET in the evaluation
    checkpoints = build_checkpoints(tmp_path / "comet")
    config["scorers"] += [
        {"name": "kiwi", "kind": "comet", "model": str(checkpoints["qe"]), "batch_size": 32},
        {"name": "comet", "kind": "comet", "model": str(checkpoints["ref"]), "sets": ["tune"]},
    ]
    config["evaluation"]["comet"] = str(checkpoints["ref"].parents[1])
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake("--cores", "2", "--workflow-profile", str(REPO / "profiles" / "default"), cwd=workdir, timeout=2700)
    assert result.returncode == 0, result.stderr[-4000:]
    results = workdir / "results"
    table = pd.read_csv(results / "report.csv")
    systems = config["student"]["systems"]
    entries = config["student"]["objectives"]
    assert list(zip(table.system, table["round"])) == (
        [("teacher", 0), ("teacher", 1)] + [(s, 1) for s in systems] + [(e["name"], 1) for e in entries]
        + [("reaugkd.knn", 1)])
    assert list(table.strategy[2:]) == [s.split("-")[0] for s in systems] + [
        f"{e['labels'].split('-')[0]}+{e['objective']}" for e in entries] + ["top1+reaugkd+knn"]
    pruned = table.set_index("system").loc["pruned"]
    model, _ = models.load(results / "round1" / "students" / "pruned")
    linear = [m.weight for m in prunable(model)]
    zeros = sum(int((w == 0).sum()) for w in linear)
    assert zeros == pytest.approx(0.5 * sum(w.numel() for w in linear), rel=0.01)  # config: prune 0.5
    assert pruned.nonzero <= pruned.parameters - zeros
    assert (results / "round1" / "students" / "skd" / "acceptance.png").stat().st_size > 1000
    for column in ("parameters", "bleu_greedy", "bleu_beam", "chrf_greedy", "chrf_beam", "sent_per_s_greedy", "sent_per_s_beam",
                   "comet_greedy", "comet_beam"):
        assert table[column].map(math.isfinite).all(), column
    significance = json.loads((results / "round1" / "eval" / "significance.json").read_text())
    assert all(math.isfinite(scores["comet"]["score"]) for scores in significance["systems"].values())
    assert (table.parameters[2:] < table.parameters[0]).all()
    report = (results / "report.md").read_text()
    assert "nrefs:3" in report and "## Self-training rounds" in report and "### Round 1" in report
    assert "Ablation" in report and "random search" in report
    assert "## Student objectives" in report and "skd: acceptance rate" in report and "pruned: non-zero parameters" in report
    assert "## Scorers" in report and all(s["name"] in report for s in config["scorers"])
    assert "Left-to-right lists alone" in report  # oracle of L2R-only vs merged lists
    comet_ref = pd.read_parquet(results / "round0" / "features" / "tune" / "comet" / "0.parquet")
    assert comet_ref.comet_score.map(math.isfinite).all()
    for round_ in (0, 1):
        diagnostics = json.loads((results / f"round{round_}" / "reranker" / "diagnostics.json").read_text())
        assert "kiwi" in diagnostics["groups"] and "comet" not in diagnostics["groups"]  # comet: tune only
        assert {"r2l", "backward", "lm", "provenance"} <= set(diagnostics["groups"])
        weights = json.loads((results / f"round{round_}" / "reranker" / "weights.json").read_text())
        assert len(weights["scorers"]) == config["reranker"]["select"]
        # transfer shards were scored by the selected scorers alone (and MBR, for the mbr students' labels)
        mbr = {"mbr"} if round_ == 1 else set()
        for set_name in ("bitext", "mono"):
            scored = {p.name for p in (results / f"round{round_}" / "features" / set_name).iterdir() if p.is_dir()}
            assert scored == set(weights["scorers"]) | mbr, (round_, set_name)
        labels = pd.read_parquet(results / f"round{round_}" / "labels" / "rerank" / "mono.parquet")
        assert (labels.strategy == "rerank").all() and {"hyp_id", "label", "from_l2r", "from_r2l"} <= set(labels.columns)
    finetuned = json.loads((results / "round1" / "models" / "teacher" / "training.json").read_text())
    assert finetuned["arguments"]["init"] == "results/models/teacher" and finetuned["arguments"]["epochs"] == 1
    # retrieval-augmented KD: the knowledge base in shards, the head beside the student, the tuned beta
    kb = [json.loads((results / "round1" / "kb" / "top1-both" / f"{s}" / "kb.json").read_text())
          for s in ("bitext.0", "bitext.1", "mono.0")]
    labels = sum(len(pd.read_parquet(results / "round1" / "labels" / "top1" / f"{s}.parquet").label.dropna())
                 for s in ("bitext", "mono"))
    assert sum(k["rows"] for k in kb) == labels and all(k["tokens"] > 0 and k["build_seconds"] > 0 for k in kb)
    assert (results / "round1" / "students" / "reaugkd" / "retrieval_head.pt").exists()
    tuned = json.loads((results / "round1" / "retrieval" / "reaugkd.json").read_text())
    assert len(tuned["curve"]) == 2
    assert "## Retrieval-augmented KD" in report
    for rule in ("train_teacher", "finetune_decoders", "decode_nbest", "score", "train_student", "teacher_topk",
                 "train_objective", "kb_projection", "build_kb", "tune_retrieval", "evaluate", "evaluate_comet"):
        assert any((results / "benchmarks" / rule).iterdir()), rule
        assert any((workdir / "logs" / rule).iterdir()), rule
    # the Snakemake HTML report builds from the finished run
    html = snakemake("--report", "report.html", cwd=workdir)
    assert html.returncode == 0, html.stderr[-2000:]
    html_text = (workdir / "report.html").read_text(errors="replace")
    assert "report.csv" in html_text
    for name, drawing in figures.FIGURES.items():  # every figure, with its caption, also linked from report.md
        assert (results / "figures" / f"{name}.png").stat().st_size > 10_000, name
        assert f"{name}.png" in html_text and drawing.title in html_text, name
        assert f"](figures/{name}.png)" in report, name
    # a second invocation has nothing to do: every output is cached
    again = snakemake("-n", "--cores", "2", cwd=workdir)
    assert "Nothing to be done" in again.stdout + again.stderr
