"""Bad input ends with an error that names the file, line or config key."""

from __future__ import annotations

import subprocess
import sys

import yaml

from helpers import REPO, data_spec


def prepare(tmp_path, config, capsys) -> str:
    from mtdistill import prepare_data

    assert prepare_data.main(["--spec", data_spec(config), "--outdir", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()  # nothing half-written
    return capsys.readouterr().err


def files_config(config, **files):
    config["data"].update(source="files", files={"mono": [], "doc_ids": "", "lines_per_doc": 5, "tune_fraction": 0.1,
                                                 "dev_fraction": 0.1, "test_fraction": 0.1, **files})
    return config


def test_missing_parallel_file(tmp_path, config_copy, capsys):
    (tmp_path / "src.txt").write_text("a\n")
    err = prepare(tmp_path, files_config(config_copy, parallel={"source": str(tmp_path / "src.txt"), "target": str(tmp_path / "nope.txt")}), capsys)
    assert f"{tmp_path / 'nope.txt'}: file not found" in err


def test_parallel_files_of_different_lengths(tmp_path, config_copy, capsys):
    (tmp_path / "src.txt").write_text("eins\nzwei\ndrei\n")
    (tmp_path / "tgt.txt").write_text("one\ntwo\n")
    err = prepare(tmp_path, files_config(config_copy, parallel={"source": str(tmp_path / "src.txt"), "target": str(tmp_path / "tgt.txt")}), capsys)
    assert "parallel files differ in length" in err and "src.txt has 3 lines" in err and "tgt.txt has 2 lines" in err


def test_invalid_utf8_names_the_line(tmp_path, config_copy, capsys):
    (tmp_path / "src.txt").write_bytes(b"eins\nzw\xffei\n")
    (tmp_path / "tgt.txt").write_text("one\ntwo\n")
    err = prepare(tmp_path, files_config(config_copy, parallel={"source": str(tmp_path / "src.txt"), "target": str(tmp_path / "tgt.txt")}), capsys)
    assert "src.txt, line 2: not valid UTF-8" in err


def test_unknown_bible_version(tmp_path, config_copy, capsys):
    config_copy["data"]["bible"]["references"] = ["k", "Q"]
    err = prepare(tmp_path, config_copy, capsys)
    assert "config key data.bible.references: unknown Bible version 'Q'" in err


def test_unknown_bible_book(tmp_path, config_copy, capsys):
    config_copy["data"]["bible"]["test_books"] = ["Hezekiah"]
    err = prepare(tmp_path, config_copy, capsys)
    assert "config key data.bible.test_books: unknown book 'Hezekiah'" in err


def dry_run(tmp_path, config: dict) -> subprocess.CompletedProcess:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", str(path)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)


def test_config_key_of_the_wrong_type(tmp_path, config_copy):
    config_copy["decode"]["beam"] = "eight"
    result = dry_run(tmp_path, config_copy)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "'eight' is not of type 'integer'" in output and "beam" in output


def test_unknown_config_key(tmp_path, config_copy):
    config_copy["teacher"]["epochs"] = 3
    result = dry_run(tmp_path, config_copy)
    assert result.returncode != 0 and "'epochs' was unexpected" in result.stdout + result.stderr
