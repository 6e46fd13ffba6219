"""Students of a teacher whose vocabulary they cannot share (student.vocabulary, student.vocab_size):
one SentencePiece vocabulary per label set, trained on its sources and labels, in the layout
models.build_model needs; the config errors that follow from it; the report's `vocab` columns."""

from __future__ import annotations

import json
import shlex

import pandas as pd
import pytest

from helpers import plan_of, planned_jobs, tiny_config
from mtdistill import models, report, train, train_tokenizer
from mtdistill.report_sections import vocabulary_lines

SNOWMAN = "☃"  # a character only in a row without a label: it must not reach the vocabulary


def nllb_teacher(directory) -> str:
    """Just enough of an NLLB model directory for the family detection and the dry run."""
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps({"model_type": "m2m_100", "is_encoder_decoder": True}))
    (directory / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "NllbTokenizer"}))
    return str(directory)


def nllb_config(tmp_path) -> dict:
    """The tiny config with a pretrained NLLB teacher and what such a teacher allows: one round, helpers
    trained from scratch, objectives that do not compare distributions with the teacher."""
    config = tiny_config()
    config["teacher"].update(pretrained=nllb_teacher(tmp_path / "nllb"), src_lang="deu_Latn", tgt_lang="eng_Latn")
    config["self_training"]["rounds"] = 1
    config["student"]["vocab_size"] = 300
    config["student"]["replicas"] = {"systems": ["top1-both"], "seeds": [7]}
    config["student"]["objectives"] = [
        {"name": "scratch", "objective": "cross_entropy", "labels": "mbr-both"},
        {"name": "pruned", "objective": "prune", "labels": "top1-both", "init": "top1-both", "prune": 0.5}]
    return config


def test_students_of_an_nllb_teacher_get_a_tokenizer_per_label_set(tmp_path):
    config = nllb_config(tmp_path)
    jobs = planned_jobs(tmp_path, config)
    tokenizers = {job.wildcards["labels"]: job for job in jobs if job.rule.name == "train_student_tokenizer"}
    assert set(tokenizers) == set(config["student"]["systems"])  # mbr-both's serves the objective student too
    for labels, job in tokenizers.items():
        assert str(job.output[0]) == f"results/round0/tokenizers/{labels}"
        assert [str(f) for f in job.input.labels] == plan_of(config).system_labels(0, labels)
        assert "--columns source label --vocab-size 300 --seed 1" in job.shellcmd
    students = {job.wildcards["system"]: job for job in jobs if job.rule.name == "train_student"}
    assert set(students) == {*config["student"]["systems"], "top1-both.seed7"}
    for system, job in students.items():
        own = f"results/round0/tokenizers/{system.split('.seed')[0]}"  # a replica shares its system's
        assert str(job.input.tokenizer) == own and f"--tokenizer {own} " in job.shellcmd
        assert "results/models/teacher" not in {str(f) for f in job.input}  # nothing copied from the teacher
    objective = {job.wildcards["student"]: job for job in jobs if job.rule.name == "train_objective"}
    scratch = shlex.split(objective["scratch"].params.options)
    assert scratch[scratch.index("--tokenizer") + 1] == "results/round0/tokenizers/mbr-both"
    assert "--tokenizer" not in objective["pruned"].params.options  # it starts from top1-both, tokenizer and all
    assert "results/round0/tokenizers/mbr-both" in {str(f) for f in objective["scratch"].input}


def test_students_of_a_marian_teacher_share_its_vocabulary_unless_told(tmp_path):
    config = tiny_config()
    shared = plan_of(config)
    assert not shared.own_vocabulary and shared.student_tokenizer(1, "top1-both.seed3") == "results/models/teacher"
    assert shared.student_inputs(1, "top1-both")["tokenizer"] == "results/models/teacher"
    # too large a vocabulary: a Marian teacher's students may get their own, from scratch, with CE objectives
    config["student"].update(vocabulary="own", vocab_size=500, objectives=[])
    own = plan_of(config)
    assert own.own_vocabulary and own.student_tokenizer(1, "top1-both.seed3") == "results/round1/tokenizers/top1-both"


def refused(config, key):
    with pytest.raises(ValueError, match=rf"^config key {key}[ :]"):
        plan_of(config)


def test_vocabulary_errors_name_their_key(tmp_path):
    config = nllb_config(tmp_path)
    plan_of(config)  # valid as it is
    refused({**config, "student": {**config["student"], "vocabulary": "teacher"}}, r"student\.vocabulary")
    refused({**config, "student": {k: v for k, v in config["student"].items() if k != "vocab_size"}},
            r"student\.vocab_size")
    refused({**config, "student": {**config["student"], "init": "bottom"}}, r"student\.init")
    for entry, key in (({"name": "wkd", "objective": "word_kd", "labels": "top1-both"}, "objective"),
                       ({"name": "skd", "recipe": "skd", "labels": "top1-both", "init": "top1-both"}, "recipe"),
                       ({"name": "sup", "objective": "supervised_kd", "labels": "top1-both"}, "objective"),
                       ({"name": "rkd", "objective": "reaugkd", "labels": "top1-both"}, "objective")):
        objectives = [*config["student"]["objectives"], entry]
        refused({**config, "student": {**config["student"], "objectives": objectives}},
                rf"student\.objectives\[2\]\.{key} \({entry['name']}\)")
    # sharing the teacher's vocabulary (the tiny teacher is a Marian model trained here): no size of its own
    marian = tiny_config()
    marian["student"]["vocab_size"] = 500
    refused(marian, r"student\.vocab_size")


@pytest.fixture(scope="module")
def labels(tmp_path_factory, data_dir):
    """Two label files as select_labels writes them (source, label), a row without a label in each."""
    directory = tmp_path_factory.mktemp("labels")
    paths = []
    for name in ("bitext", "mono"):
        table = pd.read_parquet(data_dir / f"{name}.parquet")
        table = table.assign(label=table.get("target", table.source)).astype({"label": object})
        table.loc[0, ["source", "label"]] = [f"{SNOWMAN} nur hier", None]
        table.to_parquet(directory / f"{name}.parquet")
        paths.append(str(directory / f"{name}.parquet"))
    return paths


def test_the_students_tokenizer_has_the_marian_layout_and_is_deterministic(tmp_path, labels, config):
    runs = []
    for run in ("a", "b"):
        out = tmp_path / run
        assert train_tokenizer.main(["--train", *labels, "--columns", "source", "label", "--vocab-size", "300",
                                     "--seed", "3", "--out", str(out)]) == 0
        runs.append(out)
    tokenizer = models.load_tokenizer(runs[0])
    assert tokenizer.get_vocab() == models.load_tokenizer(runs[1]).get_vocab()
    assert not any(SNOWMAN in piece for piece in tokenizer.get_vocab())  # its row had no label: dropped
    assert tokenizer.pad_token_id == len(tokenizer) - 1 and 250 < len(tokenizer) <= 302
    model = models.build_model(config["student"]["arch"], tokenizer)
    assert model.config.vocab_size == len(tokenizer)


def test_a_label_file_without_the_column_is_named(tmp_path, labels, capsys):
    assert train_tokenizer.main(["--train", *labels, "--columns", "source", "labels", "--out", str(tmp_path / "t")]) == 2
    assert "no column 'labels'" in capsys.readouterr().err and not (tmp_path / "t").exists()


def evaluation(system: str) -> dict:
    decoding = {"bleu": 1.0, "chrf": 2.0, "sentences_per_s": 10.0, "beam": 2, "batch_size": 4,
                "bleu_signature": "nrefs:1", "chrf_signature": "nrefs:1"}
    return {"system": system, "strategy": system.split("-")[0], "round": 0, "threads": 1, "parameters": 10,
            "size_mb": 1.0, "test_sentences": 3, "references": 1, "greedy": decoding, "beam": decoding}


def test_a_student_trains_on_its_own_vocabulary_and_the_report_says_so(tmp_path, labels, data_dir, tokenizer_dir,
                                                                      config):
    own = tmp_path / "tokenizer"
    assert train_tokenizer.main(["--train", *labels, "--columns", "source", "label", "--vocab-size", "300",
                                 "--out", str(own)]) == 0
    student = tmp_path / "top1-both"
    assert train.main(["--train", *labels, "--label-column", "label", "--dev", str(data_dir / "dev.parquet"),
                       "--tokenizer", str(own), "--arch", json.dumps(config["student"]["arch"]), "--max-steps", "3",
                       "--eval-every", "3", "--batch-tokens", "256", "--warmup", "1", "--out", str(student)]) == 0
    assert models.load_tokenizer(student).get_vocab() == models.load_tokenizer(own).get_vocab()
    # a teacher and a student on its vocabulary, built (untrained) on the workflow's tokenizer
    teacher_tokenizer = models.load_tokenizer(tokenizer_dir)
    for name in ("teacher", "ref-bitext"):
        models.save(models.build_model(config["student"]["arch"], teacher_tokenizer), teacher_tokenizer, tmp_path / name)
    evaluations = [evaluation(s) for s in ("teacher", "ref-bitext", "top1-both")]
    paths = []
    for ev in evaluations:
        paths.append(tmp_path / f"{ev['system']}.json")
        paths[-1].write_text(json.dumps(ev))
    csv, md = tmp_path / "report.csv", tmp_path / "report.md"
    assert report.main(["--evaluations", *map(str, paths), "--models", *(str(tmp_path / e["system"]) for e in evaluations),
                        "--csv", str(csv), "--markdown", str(md)]) == 0
    table = pd.read_csv(csv).set_index("system")
    assert dict(table.vocab) == {"teacher": "teacher", "ref-bitext": "teacher", "top1-both": "own"}
    assert dict(table.vocab_size) == {"teacher": len(teacher_tokenizer), "ref-bitext": len(teacher_tokenizer),
                                      "top1-both": len(models.load_tokenizer(own))}
    line = next(line for line in md.read_text().splitlines() if line.startswith("Vocabulary"))
    assert f"the teacher's has {len(teacher_tokenizer):,} entries" in line and "shared by ref-bitext" in line
    assert "own SentencePiece vocabulary" in line and f"top1-both {len(models.load_tokenizer(own)):,}" in line


def test_the_vocabulary_line_without_models_is_absent():
    table = report.report_table([evaluation("teacher"), evaluation("top1-both")], {})
    assert list(table.vocab) == ["-", "-"] and vocabulary_lines(table) == []
