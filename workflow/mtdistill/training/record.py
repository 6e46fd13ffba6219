"""training.json, the record a training run leaves beside its model: written here by the loop and read
here by the report, the figures and the estimate, so that its format has one owner.

Keys: arguments (the step's options), history (one entry per dev evaluation: step, dev_loss and, after
step 0, train_loss, lr, target_tokens_per_s, seconds_per_step and the objective's window metrics;
dev_bleu with --select-by bleu), best_step, select_by, best (the kept step's entry), steps, kept_start,
parameters, train_pairs, seconds, precision, world_size, then the objective's summary (SKD: k, gamma,
max_len_a, max_len_b, acceptance_per_step; pruning: prune_fraction, nonzero_before).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..core.io import InputError, read_json

FILE = "training.json"


def summary(args, history: list[dict], best_step: int, steps: int, parameters: int, train_pairs: int,
            seconds: float, precision: str, world: int, objective: dict) -> dict:
    return {
        "arguments": vars(args), "history": history, "best_step": best_step, "select_by": args.select_by,
        "best": next(h for h in history if h["step"] == best_step), "steps": steps,
        # --eval-at-start and nothing better on dev: the starting model is what was saved
        "kept_start": bool(args.eval_at_start and best_step == 0),
        "parameters": parameters, "train_pairs": train_pairs, "seconds": seconds,
        "precision": precision, "world_size": world, **objective,
    }


def write(record: dict, model_dir: Path) -> None:
    (Path(model_dir) / FILE).write_text(json.dumps(record, indent=2), encoding="utf-8")


def path(model_dir) -> Path:
    return Path(model_dir) / FILE


def read(model_dir) -> dict | None:
    """The record of a model directory; None where there is none (an imported model)."""
    return read_json(path(model_dir)) if path(model_dir).exists() else None


def arguments(record: dict) -> dict:
    return record.get("arguments", {})


def objective(record: dict) -> str:
    return arguments(record).get("objective", "cross_entropy")


def history(record: dict) -> list[dict]:
    return record.get("history", [])


def best_step(record: dict) -> int | None:
    return record.get("best_step")


def acceptance(record: dict) -> list[float]:
    """SKD's fraction of generated tokens the student drafted, per step (empty for other objectives)."""
    return record.get("acceptance_per_step") or []


def start(record: dict) -> dict | None:
    """The starting model's evaluation (--eval-at-start), if any."""
    return next((h for h in history(record) if h["step"] == 0), None)


def cost(record: dict) -> tuple[float, float]:
    """Seconds per step and target tokens per second over every logged window (evaluation excluded)."""
    windows = [h for h in history(record) if "seconds_per_step" in h]
    if not windows:
        return float("nan"), float("nan")
    steps = [windows[0]["step"]] + [b["step"] - a["step"] for a, b in zip(windows, windows[1:])]
    seconds = sum(h["seconds_per_step"] * n for h, n in zip(windows, steps))
    tokens = sum(h["target_tokens_per_s"] * h["seconds_per_step"] * n for h, n in zip(windows, steps))
    return seconds / sum(steps), tokens / seconds


def work(record: dict, where) -> tuple[str, float]:
    """The work a finished training did: steps run x batch tokens, or epochs x training pairs."""
    try:
        options = record["arguments"]
        if options.get("epochs"):
            return "epochs x sentences", options["epochs"] * record["train_pairs"]
        return "steps x batch_tokens", record["steps"] * options["batch_tokens"] * options.get("accumulate", 1)
    except KeyError as err:
        raise InputError(f"{where}: no {err} (a training summary written by mtdistill.train)") from None
