"""Helpers the tests share: the tiny config, the workflow's plan and dry run, step runners and checks.

Option building comes from mtdistill.plan (as the rules get it), so no test copies rule logic.
"""

from __future__ import annotations

import contextlib
import copy
import json
import shlex
import subprocess
import time
from pathlib import Path

import yaml
from snakemake.utils import validate

from mtdistill import dag, plan

REPO = Path(__file__).resolve().parents[1]


def tiny_config() -> dict:
    return yaml.safe_load((REPO / "tests" / "configs" / "tiny.yaml").read_text())


def validated(config: dict) -> dict:
    """A copy of `config` checked by the workflow's schema, with its defaults filled in."""
    config = copy.deepcopy(config)
    plan.refuse_renamed(config)
    with plan.schema_file() as schema:
        validate(config, schema)
    return config


def plan_of(config: dict) -> plan.Plan:
    """The workflow's plan of `config`, as the Snakefile builds it (schema defaults, then the checks)."""
    planned = plan.Plan(validated(config))
    planned.check()
    return planned


def data_spec(config: dict) -> str:
    return plan_of(config).data_spec()


def train_args(config: dict, section: str) -> list[str]:
    return shlex.split(plan_of(config).train_options(section))


def helper_args(config: dict, name: str) -> list[str]:
    """Direction or task, architecture and training options of a helper model, as rule train_helper's."""
    return shlex.split(plan_of(config).helper_options(name))


def planned_jobs(tmp_path: Path, config: dict) -> list:
    """The jobs (snakemake Job objects: rule, wildcards, input, params, ...) of the dry-run DAG for `config`."""
    workdir = tmp_path / "wd"
    (workdir / "config").mkdir(parents=True)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return dag.dry_run(workdir, cores=2).jobs


def dry_run_dag(tmp_path: Path, config: dict) -> list[tuple[str, dict, dict]]:
    """Jobs of the dry-run DAG for `config`, as (rule name, wildcards, resources)."""
    return [(job.rule.name, dict(job.wildcards), dict(job.resources)) for job in planned_jobs(tmp_path, config)]


def interrupt_and_rerun(argv: list[str], out: Path, max_steps: int) -> int:
    """Start a training command, SIGKILL it and its children (torchrun's workers, which run in
    sessions of their own) as soon as it has written a checkpoint, and run it again to the end;
    `max_steps` must leave it time to die. Returns the step it resumed from."""
    import psutil
    import torch

    checkpoint = out.with_name(out.name + ".resume") / "last.pt"
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not checkpoint.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    family = []
    with contextlib.suppress(psutil.NoSuchProcess):  # if it has finished, the assertions below say so
        family = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    for member in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()  # SIGKILL
    process.wait()
    assert checkpoint.exists(), "training finished before it could be interrupted"
    assert not out.exists()  # no half-written model
    killed_at = torch.load(checkpoint, weights_only=False)["step"]
    assert 0 < killed_at < max_steps
    result = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=600)
    assert f"resumed from {checkpoint} at step" in result.stderr
    assert not checkpoint.parent.exists()  # cleaned up after the final save
    return killed_at


TIMINGS = ("seconds", "target_tokens_per_s", "seconds_per_step")


def training_record(outdir: Path) -> dict:
    """training.json without what differs between identical runs: paths and timings."""
    summary = json.loads((outdir / "training.json").read_text())
    history = [{k: v for k, v in h.items() if k not in TIMINGS} for h in summary["history"]]
    best = {k: v for k, v in summary["best"].items() if k not in TIMINGS}
    return {**{k: v for k, v in summary.items() if k not in ("arguments", *TIMINGS)}, "history": history, "best": best}


def assert_same_weights(a: Path, b: Path) -> None:
    """Two model directories with the same weights, bit for bit."""
    import torch
    from safetensors.torch import load_file

    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), (a, b)


def assert_same_training(a: Path, b: Path) -> None:
    """Two model directories with the same weights, bit for bit, and the same training record."""
    assert_same_weights(a, b)
    assert training_record(a) == training_record(b)


def resume_check(argv, work: Path, name: str, steps: int) -> dict:
    """argv(out) run uninterrupted and killed and resumed ends alike; the resumed run's training.json."""
    reference, interrupted = work / f"{name}_reference", work / f"{name}_interrupted"
    subprocess.run(argv(reference), check=True, capture_output=True, timeout=600)
    killed_at = interrupt_and_rerun(argv(interrupted), interrupted, steps)
    assert_same_training(reference, interrupted)
    summary = json.loads((interrupted / "training.json").read_text())
    assert summary["best_step"] > killed_at  # the weights compared were trained after the restart
    return summary


# the teacher keeps the student's free samples only if in its top 2: the sampling generator's
# state decides the sequences, hence the weights and the acceptance record
SKD_OPTIONS = ["--objective", "skd", "--k", "2", "--gamma", "3", "--student-temperature", "1", "--student-top-p", "1"]


def student_arch(tokenizer_dir: Path, config: dict, dropout: float = 0.1) -> list[str]:
    """A fresh tiny student; with dropout, the restored random state decides its masks."""
    return ["--tokenizer", str(tokenizer_dir), "--arch", json.dumps({**config["student"]["arch"], "dropout": dropout})]


def decode_set(work: Path, data_dir: Path, teacher_dir: Path, config: dict, name: str) -> Path:
    from mtdistill import decode

    out = work / "nbest" / f"{name}.parquet"
    nbest = config["decode"]["nbest"]
    assert decode.main(["--model", str(teacher_dir), "--input", str(data_dir / f"{name}.parquet"), "--beam", str(nbest),
                        "--nbest", str(nbest), "--threads", "2", "--out", str(out)]) == 0
    return out


def score_set(work: Path, data_dir: Path, teacher_dir: Path, nbest: Path, name: str) -> list[Path]:
    """Teacher and length features, laid out as the workflow does: features/<set>/<scorer>/<shard>."""
    from mtdistill import score

    outs = [work / "features" / name / scorer / "0.parquet" for scorer in ("teacher", "length")]
    common = ["--nbest", str(nbest), "--sources", str(data_dir / f"{name}.parquet")]
    assert score.main(["--name", "teacher", "--kind", "forced_decoding", "--model", str(teacher_dir), *common, "--out", str(outs[0])]) == 0
    assert score.main(["--name", "length", "--kind", "length", *common, "--out", str(outs[1])]) == 0
    return outs


def reranker_args(data_dir, tune_nbest, tune_features, dev_nbest, dev_features) -> list[str]:
    return ["--tune-nbest", str(tune_nbest), "--tune-features", *map(str, tune_features),
            "--tune-references", str(data_dir / "tune.parquet"),
            "--dev-nbest", str(dev_nbest), "--dev-features", *map(str, dev_features),
            "--dev-references", str(data_dir / "dev.parquet")]


