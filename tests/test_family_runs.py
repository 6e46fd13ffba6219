"""End to end with a pretrained teacher of each family: a tiny NLLB-style model (language codes), a
T5/MADLAD-style one (target-language prefix) and a Llama-style chat model (prompt in its chat template),
each built and taught a few steps here (tests/tiny_families.py), imported, decoded, scored, reranked and
distilled into students with their own SentencePiece vocabulary, then evaluated and reported."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import yaml

from helpers import REPO, planned_jobs, tiny_config
from mtdistill import families
from test_workflow import snakemake
from tiny_families import build_llama, build_nllb, build_t5, teach

CHAT_PROMPT = "Translate this {src_lang} text into {tgt_lang}.\n{source}"
RUNS = {  # family -> builder, teacher keys, students
    "nllb": (build_nllb, {"src_lang": "deu_Latn", "tgt_lang": "eng_Latn"},
             ["ref-bitext", "top1-both", "seqinter-bitext", "rerank-both", "mbr-both"]),
    "t5": (build_t5, {"source_prefix": "<2en> "}, ["top1-both", "rerank-mono"]),
    "causal": (build_llama, {"prompt": CHAT_PROMPT, "chat_template": True, "src_lang": "German", "tgt_lang": "English"},
               ["top1-both", "rerank-mono"]),
}


def family_config(family: str, teacher: str) -> dict:
    """The tiny config with a pretrained teacher of `family`: students with their own vocabulary and only
    sequence-level strategies."""
    _, keys, systems = RUNS[family]
    config = tiny_config()
    config["teacher"].update(pretrained=teacher, **keys)
    # self-training fine-tunes the teacher: the chat model's run takes a second round
    config["self_training"]["rounds"] = 2 if family == "causal" else 1
    config["r2l"]["decode"] = family == "nllb"  # helpers on the bitext's own tokenizer, merged lists
    scorers = [{"name": "teacher", "kind": "forced_decoding", "model": "teacher", "batch_size": 8},
               {"name": "length", "kind": "length"}, {"name": "mbr", "kind": "mbr"}]
    if family == "nllb":
        scorers += [{"name": "r2l", "kind": "r2l", "model": "r2l", "batch_size": 8},
                    {"name": "backward", "kind": "backward", "model": "backward", "batch_size": 32}]
    if family == "causal":  # the chat LLM as a scorer too
        scorers.append({"name": "llm", "kind": "causal_forced", "model": teacher, "batch_size": 8, **keys})
    config["scorers"] = scorers
    config["reranker"].update(tuners=["mira"], select=0, evaluations=3)
    if family == "t5":  # the CTranslate2 conversion decodes, scores and evaluates (the prefix as Marian's)
        config["backend"] = {"decode": "ctranslate2", "score": "ctranslate2", "evaluate": "ctranslate2"}
    if family == "causal":  # the LLM's n-best lists drawn, not searched
        config["decode"].update(search="sample", sampling={"temperature": 0.8})
    config["student"].update(systems=systems, objectives=[], vocab_size=300)
    return config


@pytest.mark.slow
@pytest.mark.parametrize("family", RUNS)
def test_end_to_end_with_a_pretrained_teacher(family, tmp_path, data_dir):
    build, keys, systems = RUNS[family]
    train = pd.read_parquet(data_dir / "train.parquet")
    texts = list(train.source) + list(train.target)
    profile = families.Profile.from_keys(family, keys)
    teacher = teach(build(tmp_path / "pretrained", texts), profile, list(train.source), list(train.target))
    workdir = tmp_path / "run"
    (workdir / "config").mkdir(parents=True)
    config = family_config(family, str(teacher))
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake("--cores", "2", "--workflow-profile", str(REPO / "profiles" / "default"), cwd=workdir, timeout=1800)
    assert result.returncode == 0, result.stderr[-4000:]
    results = workdir / "results"
    assert families.Profile.load(results / "models" / "teacher") == profile
    table = pd.read_csv(results / "report.csv")
    last = config["self_training"]["rounds"] - 1
    assert list(table.system) == ["teacher"] * (last + 1) + systems
    if last:  # the teacher fine-tuned on round 0's labels keeps its family's profile
        assert families.Profile.load(results / "round1" / "models" / "teacher") == profile
    assert table.bleu_beam.map(math.isfinite).all() and table.chrf_beam.map(math.isfinite).all()
    students = table[table.system != "teacher"]
    assert (students.vocab == "own").all() and (students.vocab_size <= 300).all()
    assert "own SentencePiece vocabulary" in (results / "report.md").read_text()
    nbest = pd.read_parquet(results / "round0" / "nbest" / "tune" / "0.parquet")
    features = pd.read_parquet(results / "round0" / "features" / "tune" / "teacher" / "0.parquet")
    merged = nbest.merge(features, on=["sent_id", "hyp_id"])
    l2r = merged[merged.from_l2r == 1] if "from_l2r" in merged else merged  # the teacher's own lists
    assert l2r.score.map(math.isfinite).all() and (l2r.hypothesis.str.len() > 0).mean() > 0.5
    # forced decoding scores the teacher's hypotheses as its beam did (language token and prompt not counted)
    assert (abs(l2r.teacher_logprob_per_token - l2r.score) < 1e-3).mean() > 0.5
    if family == "t5":
        assert (results / "ct2" / "models" / "teacher" / "model.bin").is_file()
        assert json.loads((results / "round0" / "eval" / "teacher.json").read_text())["backend"] == "ctranslate2"
    for system in systems:
        labels_vocab = json.loads((results / f"round{last}" / "students" / system / "config.json").read_text())["vocab_size"]
        assert labels_vocab <= 300


@pytest.mark.parametrize("family", RUNS)
def test_a_pretrained_teacher_of_each_family_plans(family, tmp_path, data_dir):
    """The DAG of each family's run: the teacher imported with its keys, students on their own tokenizers."""
    build, keys, systems = RUNS[family]
    train = pd.read_parquet(data_dir / "train.parquet")
    teacher = build(tmp_path / "pretrained", list(train.source) + list(train.target))
    jobs = planned_jobs(tmp_path, family_config(family, str(teacher)))
    imported = next(job for job in jobs if job.rule.name == "import_teacher")
    assert f"--family {family}" in imported.shellcmd
    assert {job.wildcards["labels"] for job in jobs if job.rule.name == "train_student_tokenizer"} == set(systems)
