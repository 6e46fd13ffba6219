"""A configured method does what the config says: the command lines the workflow plans for it (dry run)."""

from __future__ import annotations

import copy

import pytest

from helpers import planned_jobs, tiny_config
from mtdistill import objectives


def jobs_of(tmp_path, config, rule):
    return {tuple(dict(job.wildcards).values()): job for job in planned_jobs(tmp_path, config) if job.rule.name == rule}


def option(text: str, name: str) -> str:
    words = text.split()
    return words[words.index(name) + 1]


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    """One dry run of the tiny config with seed replicas, recipes, k auto and comparisons."""
    config = tiny_config()
    student = config["student"]
    student["systems"] = [*student["systems"], "top1-bitext"]
    student["init"] = "spaced"
    student["replicas"] = {"systems": ["top1-both"], "seeds": [7]}
    student["objectives"] = [
        {"name": "skd", "objective": "skd", "labels": "top1-both", "init": "top1-both", "k": 25,
         "train": {"max_steps": 4}},
        {"name": "skdlr", "objective": "skd", "labels": "top1-both", "init": "top1-both", "train": {"lr": 0.0003}},
        {"name": "skdauto", "recipe": "skd", "k": "auto"},
        {"name": "supkd", "objective": "supervised_kd", "labels": "top1-both", "init": "top1-both"},
        {"name": "wordkd", "recipe": "word_kd", "topk": 4, "train": {"max_len": 80}},
        {"name": "supkdref", "recipe": "supervised_kd"},
    ]
    config["decode"].update(max_len_a=1.25, max_len_b=7)
    config["evaluation"]["comparisons"] = [{"system": "top1-both", "baseline": "ref-bitext", "finding": "x"}]
    jobs = planned_jobs(tmp_path_factory.mktemp("semantics"), config)
    by_rule = {}
    for job in jobs:
        by_rule.setdefault(job.rule.name, {})[tuple(dict(job.wildcards).values())] = job
    return config, by_rule


def test_skd_and_supervised_kd_default_to_the_papers_lr_unless_the_entry_says(planned):
    config, jobs = planned
    assert config["student"]["train"]["lr"] != 1e-5
    options = {key[-1]: job.params.options for key, job in jobs["train_objective"].items()}
    assert float(option(options["skd"], "--lr")) == 1e-5 and float(option(options["supkd"], "--lr")) == 1e-5
    assert float(option(options["skdlr"], "--lr")) == 3e-4  # the entry's own train.lr
    assert float(option(options["wordkd"], "--lr")) == config["student"]["train"]["lr"]  # not an SKD objective


def test_recipes_name_the_papers_students(planned):
    _, jobs = planned
    students = {key[-1]: job for key, job in jobs["train_objective"].items()}
    wordkd, supkdref = students["wordkd"], students["supkdref"]
    assert option(wordkd.params.options, "--objective") == "word_kd"
    assert [str(f) for f in wordkd.input.labels] == ["results/round1/labels/ref/bitext.parquet"]
    assert option(supkdref.params.options, "--objective") == "supervised_kd"
    assert [str(f) for f in supkdref.input.labels] == ["results/round1/labels/ref/bitext.parquet"]
    # from scratch like the cross-entropy students, with the configured initialisation
    assert "--init " not in supkdref.params.options and "--init-layers spaced" in supkdref.params.options


def test_decode_length_limits_reach_evaluation_and_skd_generation(planned):
    _, jobs = planned
    for job in jobs["evaluate"].values():
        assert "--max-len-a 1.25 --max-len-b 7" in job.params.lengths
    options = {key[-1]: job.params.options for key, job in jobs["train_objective"].items()}
    assert "--max-len-a 1.25 --max-len-b 7" in options["skd"]
    assert "--max-len-a" not in options["supkd"]  # supervised KD generates nothing


def test_the_topk_cache_covers_the_longest_training_labels(planned):
    _, jobs = planned
    (job,) = jobs["teacher_topk"].values()
    assert job.params.max_len == 80  # the word_kd entry's max_len, over student.train's 64


def test_k_auto_waits_for_the_acceptance_sweep_of_its_warm_start(planned):
    _, jobs = planned
    job = next(job for key, job in jobs["train_objective"].items() if key[-1] == "skdauto")
    assert str(job.input.acceptance) == "results/round1/skd/acceptance.top1-bitext.json"
    assert "--k auto" in job.params.options and f"--acceptance {job.input.acceptance}" in job.params.options
    assert ("1", "top1-bitext") in jobs["skd_acceptance"]


def test_replicas_train_with_their_own_seed_and_init_is_passed(planned):
    config, jobs = planned
    students = {key[-1]: job for key, job in jobs["train_student"].items()}
    assert students["top1-both.seed7"].params.seed == 7 and students["top1-both"].params.seed == config["seed"]
    assert [str(f) for f in students["top1-both.seed7"].input.labels] == [str(f) for f in students["top1-both"].input.labels]
    assert students["top1-both"].params.init.endswith("--init-layers spaced")
    assert "results/round1/eval/top1-both.seed7.json" in {str(f) for f in jobs["report"][()].input.evaluations}


def test_self_training_mixes_the_bitext_and_keeps_the_better_model(planned):
    _, jobs = planned
    for key, job in jobs["finetune_decoders"].items():
        assert str(job.input.mix) == "results/data/train.parquet"
        assert f"--mix {job.input.mix}" in job.params.options and "--eval-at-start" in job.params.options
        assert option(job.params.options, "--select-by") == ("bleu" if key[-1] == "teacher" else "loss")


def test_comparisons_reach_the_paired_bootstrap(planned):
    _, jobs = planned
    (job,) = jobs["compare_systems"].values()
    assert job.params.comparisons == "top1-both:ref-bitext"


@pytest.mark.parametrize("entry, key", [
    ({"name": "v", "objective": "skd", "labels": "top1-both", "alpha": 0.5}, "alpha"),
    ({"name": "v", "objective": "word_kd", "labels": "top1-both", "k": 5}, "k"),
    ({"name": "v", "objective": "word_kd", "labels": "top1-both", "gamma": 2}, "gamma"),
    ({"name": "v", "objective": "supervised_kd", "labels": "top1-both", "topk": 8}, "topk"),
    ({"name": "v", "objective": "prune", "labels": "top1-both", "tau": 2.0}, "tau"),
    ({"name": "v", "recipe": "skd", "prune": 0.5}, "prune"),
])
def test_a_key_the_objective_does_not_use_is_refused(entry, key):
    with pytest.raises(ValueError, match=rf"config key student\.objectives\[3\]\.{key}: objective \w+ does not use it"):
        objectives.check(entry, "student.objectives[3]")


def test_the_workflow_refuses_an_unused_objective_key(tmp_path):
    config = tiny_config()
    config["student"]["objectives"] = [{"name": "v", "objective": "skd", "labels": "top1-both", "alpha": 0.5}]
    with pytest.raises(Exception, match=r"student\.objectives\[0\]\.alpha"):
        planned_jobs(tmp_path, copy.deepcopy(config))
