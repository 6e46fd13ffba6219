"""Reading and atomically writing the tables, JSON files and model directories every step shares."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pandas as pd


class InputError(ValueError):
    """Bad user input: the message names the file, line or config key at fault."""


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of `path`; rename it onto `path` only if the block succeeds.

    Works for files and directories, so a killed job never leaves a complete-looking output.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent)) / path.name
    try:
        yield tmp
        if path.is_dir():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)


def write_table(df: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def read_table(path: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    return pd.read_parquet(path, columns=columns)


def read_tables(paths: list[str] | list[Path]) -> pd.DataFrame:
    return pd.concat([read_table(p) for p in paths], ignore_index=True)


def write_json(obj, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def read_json(path: str | Path):
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    return json.loads(path.read_text(encoding="utf-8"))


def read_lines(path: str | Path) -> list[str]:
    """Lines of a UTF-8 text file without their newline; names the file and line on bad bytes."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    lines = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                lines.append(raw.decode("utf-8").rstrip("\r\n"))
            except UnicodeDecodeError as err:
                raise InputError(f"{path}, line {number}: not valid UTF-8 ({err.reason})") from None
    return lines
