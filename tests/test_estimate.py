"""GPU-hour estimate (mtdistill.estimate): the tiny config's dry-run DAG against fake measurements."""

from __future__ import annotations

import json

import pytest
import yaml

from helpers import planned_jobs, tiny_config
from mtdistill import estimate, estimation
from mtdistill.core.io import InputError

# Fake measured run: seconds per benchmark file, and the run's sentence counts.
STATS = {"tune": 50, "dev": 50, "test": 100, "bitext": 80, "mono": 40, "train": 1000, "lm": 2000}
SCORER_SECONDS = {"teacher": 40.0, "r2l": 30.0, "backward": 20.0, "lm": 10.0, "length": 1.0, "mbr": 2.0, "ngram": 3.0}
TEACHER_SECONDS = 120.0
# The measured teacher stopped early: 200 steps (of 300) of 512 tokens; the tiny teacher plans 600 x 1024.
TEACHER_SCALE = (600 * 1024) / (200 * 512)


def write_tsv(path, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"s\th:m:s\tmax_rss\n{seconds}\t0:00:00\t100.0\n")


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    run = tmp_path_factory.mktemp("measured_run")
    bench = run / "results" / "benchmarks"
    write_tsv(bench / "train_teacher" / "train_teacher.tsv", TEACHER_SECONDS)
    teacher = run / "results" / "models" / "teacher"
    teacher.mkdir(parents=True)
    (teacher / "training.json").write_text(json.dumps(
        {"arguments": {"max_steps": 300, "batch_tokens": 512, "epochs": None}, "steps": 200, "train_pairs": 1000}))
    write_tsv(bench / "tune_reranker" / "round0.tsv", 30.0)
    write_tsv(bench / "tune_reranker" / "round1.tsv", 50.0)
    # bitext (80 sentences) in two shards of 40, 20 s each: 0.5 s per sentence left to right
    write_tsv(bench / "decode_nbest" / "round0" / "bitext.l2r.0.tsv", 20.0)
    write_tsv(bench / "decode_nbest" / "round0" / "bitext.l2r.1.tsv", 20.0)
    for scorer, seconds in SCORER_SECONDS.items():
        write_tsv(bench / "score" / "round0" / f"tune.{scorer}.0.tsv", seconds)
    write_tsv(bench / "evaluate" / "round0" / "teacher.tsv", 60.0)
    write_tsv(bench / "teacher_topk" / "round0" / "top1-both.k16.tsv", 12.0)  # 80 + 40 label sentences
    write_tsv(bench / "import_teacher" / "import_teacher.tsv", 5.0)  # a rule the tiny run does not have
    (run / "results" / "data").mkdir(parents=True)
    (run / "results" / "data" / "stats.json").write_text(json.dumps({k: {"sentences": v} for k, v in STATS.items()}))
    return bench


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    directory = tmp_path_factory.mktemp("target")
    (directory / "config").mkdir()
    (directory / "config" / "config.yaml").write_text(yaml.safe_dump(tiny_config()))
    return directory


@pytest.fixture(scope="module")
def plan(target):
    return estimation.dry_run(target, [])


@pytest.fixture(scope="module")
def result(plan, measured):
    return estimate.estimate_plan(plan, measured)


def seconds(result, rule: str, **wildcards) -> float:
    """Estimated seconds of the jobs of `rule` whose wildcards include `wildcards`."""
    jobs = result.jobs[result.jobs.rule == rule]
    for key, value in wildcards.items():
        jobs = jobs[jobs.wildcards.str.contains(f"{key}={value}(?:,|$)")]
    assert len(jobs), (rule, wildcards)
    return jobs.hours.sum() * 3600


def test_every_planned_job_is_counted(tmp_path, result):
    expected = sorted((job.rule.name, estimate.wildcards_text(dict(job.wildcards)))
                      for job in planned_jobs(tmp_path, tiny_config()) if job.rule.name != "all")
    planned = result.jobs[~result.jobs.pending]
    assert sorted(zip(planned.rule, planned.wildcards)) == expected
    assert result.rules.jobs.sum() == result.totals["jobs"] == len(result.jobs)


def test_scaling_of_measured_rules(result):
    teacher = result.rules.set_index("rule").loc["train_teacher"]
    assert teacher.hours * 3600 == pytest.approx(TEACHER_SECONDS * TEACHER_SCALE)
    assert result.rules.set_index("rule").loc["tune_reranker"].hours * 3600 == pytest.approx(2 * (30 + 50) / 2)
    # 40 bitext sentences in 2 shards of 20, at the measured 0.5 s per sentence; r2l borrows the rule's rate
    assert seconds(result, "decode_nbest", round=0, set="bitext", shard=0, direction="l2r") == pytest.approx(10)
    assert seconds(result, "decode_nbest", round=1, set="bitext", shard=1, direction="r2l") == pytest.approx(10)
    basis = result.jobs.set_index(["rule", "wildcards"]).basis
    assert basis["decode_nbest", "round=0,set=bitext,direction=l2r,shard=0"] == "same rule and model"
    assert basis["decode_nbest", "round=0,set=bitext,direction=r2l,shard=0"] == "rule"
    # held-out sets keep the measured run's size: each scorer's own measured seconds on tune
    for scorer, measured_seconds in SCORER_SECONDS.items():
        assert seconds(result, "score", round=0, set="tune", scorer=scorer) == pytest.approx(measured_seconds)
    assert seconds(result, "evaluate", round=0, system="teacher") == pytest.approx(60)
    # the tiny run's top1-both labels: 40 bitext + 20 mono sentences (data.transfer), at 0.1 s each
    assert seconds(result, "teacher_topk", round=1, labels="top1-both") == pytest.approx(6)


def test_doubling_teacher_steps_doubles_its_estimate(tmp_path, target, measured, result, capsys):
    override = tmp_path / "longer.yaml"
    override.write_text(yaml.safe_dump({"teacher": {"train": {"max_steps": 1200}}}))
    out = tmp_path / "estimate.json"
    assert estimate.main(["--measured", str(measured), "--directory", str(target), "--configfile", str(override),
                          "--json", str(out)]) == 0
    rules = {row["rule"]: row for row in json.loads(out.read_text())["rules"]}
    before = result.rules.set_index("rule")
    assert rules["train_teacher"]["hours"] == pytest.approx(2 * before.loc["train_teacher"].hours)
    assert rules["tune_reranker"]["hours"] == pytest.approx(before.loc["tune_reranker"].hours)
    printed = capsys.readouterr().out
    assert "| train_teacher" in printed and "GPU hours:" in printed


def test_gpu_hours_count_only_gpu_jobs(plan, measured, result):
    jobs, totals = result.jobs, result.totals
    gpu = jobs.gpu > 0
    assert totals["gpu_hours"] == pytest.approx((jobs.gpu * jobs.hours)[gpu].sum())
    assert totals["cpu_only_hours"] == pytest.approx(jobs.hours[~gpu].sum())
    assert totals["gpu_hours"] > 0 and totals["cpu_only_hours"] > 0
    # the length scorer asks for no GPU, the teacher scorer does
    length = jobs[(jobs.rule == "score") & jobs.wildcards.str.contains("scorer=length")]
    teacher = jobs[(jobs.rule == "score") & jobs.wildcards.str.contains("scorer=teacher")]
    assert (length.gpu == 0).all() and (length.gpu_hours == 0).all() and (teacher.gpu == 1).all()
    assert not gpu[jobs.rule == "tune_reranker"].any()
    # a GPU twice as fast halves the GPU hours, not the CPU-only ones
    faster = estimate.estimate_plan(plan, measured, speedup=2).totals
    assert faster["gpu_hours"] == pytest.approx(totals["gpu_hours"] / 2)
    assert faster["cpu_only_hours"] == pytest.approx(totals["cpu_only_hours"])


def test_unmeasured_rules_are_reported_not_guessed(result):
    rules = result.rules.set_index("rule")
    assert rules.loc["figures"].unmeasured == rules.loc["figures"].jobs == 1
    assert rules.loc["figures"].hours != rules.loc["figures"].hours  # NaN: no number made up
    assert {"figures", "finetune_decoders", "train_student"} <= set(result.totals["unmeasured_rules"])
    assert "train_teacher" not in result.totals["unmeasured_rules"]
    unmeasured = result.jobs.basis == "unmeasured"
    assert result.totals["unmeasured_jobs"] == unmeasured.sum() > 0
    assert result.totals["hours"] == pytest.approx(result.jobs.hours[~unmeasured].sum())
    printed = estimate.render(result)
    assert "| figures" in printed and "unmeasured" in printed
    assert any("import_teacher" not in note and "no planned rule" in note for note in result.notes)


def test_checkpoint_scoring_counts_the_selected_number_of_costliest_scorers(result):
    pending = result.jobs[result.jobs.pending]
    # 2 rounds x 3 transfer shards (bitext 2, mono 1) x reranker.select 2
    assert len(pending) == 12 and (pending.row == estimate.PENDING).all()
    assert {w.split("scorer=")[1].split(",")[0] for w in pending.wildcards} == {"teacher", "r2l"}
    # mono's 20 sentences (data.transfer) at the teacher scorer's 40 s per 50 tune sentences
    assert seconds(result, "score", round=0, set="mono", scorer="teacher") == pytest.approx(40 / 50 * 20)


def test_bad_measurements_name_the_file(tmp_path, plan, measured):
    missing = tmp_path / "nowhere" / "benchmarks"
    with pytest.raises(InputError, match=str(missing)):
        estimate.estimate(missing, directory=tmp_path)
    bench = tmp_path / "run" / "results" / "benchmarks"
    write_tsv(bench / "train_teacher" / "train_teacher.tsv", 1.0)
    with pytest.raises(InputError, match=r"results/data/stats\.json \(not found; give --stats\): no sentence count"):
        estimate.estimate_plan(plan, bench)
    (bench.parent / "data").mkdir()
    (bench.parent / "data" / "stats.json").write_bytes((measured.parent / "data" / "stats.json").read_bytes())
    with pytest.raises(InputError, match=r"models/teacher/training\.json"):
        estimate.estimate_plan(plan, bench)
    (bench / "train_teacher" / "train_teacher.tsv").write_text("seconds\n1.0\n")
    with pytest.raises(InputError, match=r"train_teacher\.tsv: .*column 's'"):
        estimate.estimate_plan(plan, bench)


def test_config_errors_name_the_file_and_key(tmp_path, target, measured):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"student": {"systems": ["seqinter-mono"]}}))
    with pytest.raises(InputError, match=r"bad\.yaml: config key student\.systems\[0\] \(seqinter-mono\)"):
        estimate.estimate(measured, directory=target, configfiles=[bad])
    with pytest.raises(InputError, match=r"absent\.yaml: config file not found"):
        estimate.estimate(measured, directory=target, configfiles=[tmp_path / "absent.yaml"])
