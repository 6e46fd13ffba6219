"""An extension is one module: tests/extension is a package as a user would ship it, with a scorer
kind, a label strategy, an objective and a corpus source, each one module registered through its entry point
(mtdistill_example_ext-0.1.dist-info). With the package on the path, the workflow plans jobs for
them (a dry run) and the steps run them (`python -m mtdistill.<step>`); without it they are unknown.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import yaml

from helpers import REPO, tiny_config

EXTENSION = REPO / "tests" / "extension"


def with_extension() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(EXTENSION), os.environ.get("PYTHONPATH")]))}


def step(name: str, *argv, extension: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"mtdistill.{name}", *map(str, argv)], capture_output=True, text=True,
                          env=with_extension() if extension else None, timeout=600)


def extended_config() -> dict:
    config = tiny_config()
    config["scorers"].append({"name": "punct", "kind": "punctuation"})
    config["student"]["systems"].append("shortest-bitext")
    config["student"]["objectives"].append(
        {"name": "confident", "objective": "confidence_penalty", "labels": "top1-both", "beta": 0.2})
    return config


def test_the_workflow_plans_the_extensions(tmp_path):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(extended_config()))
    command = [sys.executable, "-m", "snakemake", "-n", "-p", "--snakefile", str(REPO / "Snakefile"),
               "--directory", str(tmp_path)]
    planned = subprocess.run(command, capture_output=True, text=True, env=with_extension(), timeout=600)
    assert planned.returncode == 0, planned.stdout[-3000:] + planned.stderr[-3000:]
    shell = planned.stdout
    assert "--name punct --kind punctuation" in shell  # held-out sets: every scorer
    assert "--strategy shortest" in shell and "results/round1/students/shortest-bitext" in shell
    assert "--objective confidence_penalty --beta 0.2" in shell
    # a corpus source of the extension's passes the schema, its block reaching prepare_data
    config = extended_config()
    config["data"].update(source="jsonl", jsonl={"path": "/data/corpus.jsonl"})
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    corpus = subprocess.run(command, capture_output=True, text=True, env=with_extension(), timeout=600)
    assert corpus.returncode == 0, corpus.stdout[-3000:] + corpus.stderr[-3000:]
    assert '"source": "jsonl"' in corpus.stdout and '"jsonl": {"path": "/data/corpus.jsonl"}' in corpus.stdout
    # without the package, the names are not registered: the schema refuses the config
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(extended_config()))
    plain = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert plain.returncode != 0 and "punctuation" in plain.stdout + plain.stderr


def test_the_steps_run_the_extensions(tmp_path, data_dir, tune_nbest, teacher_dir, kd_labels):
    features = tmp_path / "punct.parquet"
    scored = step("score", "--name", "punct", "--kind", "punctuation", "--nbest", tune_nbest,
                  "--sources", data_dir / "tune.parquet", "--out", features)
    assert scored.returncode == 0, scored.stderr[-2000:]
    table = pd.read_parquet(features)
    nbest = pd.read_parquet(tune_nbest)
    assert list(table.columns) == ["sent_id", "hyp_id", "punct_share"] and len(table) == len(nbest)
    assert table.punct_share.between(0, 1).all() and table.punct_share.gt(0).any()

    labels = tmp_path / "labels.parquet"
    selected = step("select_labels", "--strategy", "shortest", "--sentences", data_dir / "tune.parquet",
                    "--nbest", tune_nbest, "--max-ngram", 0, "--max-repeats", 0, "--max-char-run", 0,
                    "--min-length-ratio", 0, "--max-length-ratio", 0, "--keep-source-copies", "--out", labels)
    assert selected.returncode == 0, selected.stderr[-2000:]
    chosen = pd.read_parquet(labels)
    nonempty = nbest[nbest.hypothesis.str.split().str.len() > 0]
    shortest = nonempty.loc[nonempty.hypothesis.str.len().groupby(nonempty.sent_id).idxmin()]
    assert dict(zip(chosen.sent_id, chosen.label.str.len())) == dict(zip(shortest.sent_id, shortest.hypothesis.str.len()))
    assert (chosen.strategy == "shortest").all()

    student = tmp_path / "student"
    trained = step("train", "--objective", "confidence_penalty", "--beta", "0.2", "--train", kd_labels,
                   "--label-column", "label", "--dev", data_dir / "dev.parquet", "--init", teacher_dir,
                   "--max-steps", 3, "--eval-every", 3, "--batch-tokens", 512, "--warmup", 1, "--out", student)
    assert trained.returncode == 0, trained.stderr[-2000:]
    record = json.loads((student / "training.json").read_text())
    assert record["arguments"]["objective"] == "confidence_penalty" and record["arguments"]["beta"] == 0.2
    assert record["steps"] == 3 and (student / "model.safetensors").exists()
    # an option the objective does not own is refused, naming it
    refused = step("train", "--objective", "confidence_penalty", "--alpha", "0.5", "--train", kd_labels,
                   "--label-column", "label", "--dev", data_dir / "dev.parquet", "--init", teacher_dir,
                   "--out", tmp_path / "never")
    assert refused.returncode == 2 and "--alpha" in refused.stderr

    unknown = step("score", "--name", "punct", "--kind", "punctuation", "--nbest", tune_nbest,
                   "--sources", data_dir / "tune.parquet", "--out", tmp_path / "x.parquet", extension=False)
    assert unknown.returncode == 2 and "punctuation" in unknown.stderr


def test_prepare_data_reads_an_extension_corpus(tmp_path):
    rows = [{"source": f"quelle {split} {i} wort", "target": f"source {split} {i} word", "split": split}
            for split in ("train", "tune", "dev", "test") for i in range(12 if split == "train" else 3)]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(row) + "\n" for row in rows))
    spec = {**tiny_config()["data"], "source": "jsonl", "jsonl": {"path": str(corpus)}, "seed": 1}
    spec["transfer"] = {"bitext_size": 4, "mono_size": 0}
    prepared = step("prepare_data", "--spec", json.dumps(spec), "--outdir", tmp_path / "data")
    assert prepared.returncode == 0, prepared.stderr[-2000:]
    sizes = {name: len(pd.read_parquet(tmp_path / "data" / f"{name}.parquet")) for name in ("train", "tune", "dev", "test", "bitext")}
    assert sizes == {"train": 12, "tune": 3, "dev": 3, "test": 3, "bitext": 4}
    unknown = step("prepare_data", "--spec", json.dumps(spec), "--outdir", tmp_path / "other", extension=False)
    assert unknown.returncode == 2 and "config key data.source: unknown corpus 'jsonl'" in unknown.stderr
