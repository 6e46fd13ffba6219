"""Train a model with cross-entropy on labels: a Marian-style translation model (teacher, student,
right-to-left teacher, backward model) or a GPT-2-style target language model.

--direction l2r      source -> label column (teachers and students)
            r2l      source -> label tokens reversed (right-to-left teacher, Setiawan 2024)
            backward label column -> source (the noisy-channel model p(source | target))
--task lm            a causal LM on the label column alone (rows without it are skipped)
The training tables need `source` and the --label-column; the dev table `source` and `target`.
The best dev checkpoint is kept and saved with `save_pretrained`, together with the tokenizer and
`training.json` (arguments, learning curve, best step, parameter count).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import sacrebleu
from tqdm import tqdm

from . import models
from .decode import best_translations
from .features import reference_streams
from .files import InputError, atomic_path, read_tables, read_table, run_main, seed_everything

log = logging.getLogger("mtdistill")


def encode(tokenizer, sources: list[str], targets: list[str], max_len: int, direction: str = "l2r",
           task: str = "seq2seq") -> list[tuple[list[int], list[int]]]:
    """(source ids, label ids) pairs; an LM has no source, an R2L model reversed labels."""
    if direction == "backward":
        sources, targets = targets, sources
    labels = tokenizer(text_target=targets, truncation=True, max_length=max_len)["input_ids"]
    if direction == "r2l":
        labels = [models.reverse_tokens(ids, tokenizer) for ids in labels]
    if task == "lm":
        return [([], ids) for ids in labels]
    return list(zip(tokenizer(sources, truncation=True, max_length=max_len)["input_ids"], labels))


def token_batches(pairs, batch_tokens: int, rng: np.random.Generator) -> list[list[int]]:
    """Indices grouped by length so that padded source+target tokens stay under batch_tokens."""
    lengths = np.array([len(s) + len(t) for s, t in pairs])
    order = np.lexsort((rng.random(len(pairs)), lengths))
    batches, current, longest = [], [], 0
    for i in order:
        longest_if_added = max(longest, lengths[i])
        if current and longest_if_added * (len(current) + 1) > batch_tokens:
            batches.append(current)
            current, longest_if_added = [], lengths[i]
        current.append(int(i))
        longest = longest_if_added
    if current:
        batches.append(current)
    rng.shuffle(batches)
    return batches


def collate(pairs, indices, pad: int, device: torch.device, start: int | None = None):
    """Padded model inputs and labels; `start` is the decoder start token (default <pad>, Marian's)."""
    start = pad if start is None else start
    tgt = [torch.tensor(pairs[i][1]) for i in indices]
    labels = torch.nn.utils.rnn.pad_sequence(tgt, batch_first=True, padding_value=-100)
    shifted = torch.cat([torch.full((len(tgt), 1), start), labels[:, :-1].masked_fill(labels[:, :-1] == -100, pad)], 1)
    if not pairs[indices[0]][0]:  # causal LM: the shifted labels are the whole input
        return {"input_ids": shifted.to(device), "attention_mask": (labels != -100).to(device)}, labels.to(device)
    src = [torch.tensor(pairs[i][0]) for i in indices]
    input_ids = torch.nn.utils.rnn.pad_sequence(src, batch_first=True, padding_value=pad)
    return {
        "input_ids": input_ids.to(device),
        "attention_mask": (input_ids != pad).to(device),
        "decoder_input_ids": shifted.to(device),
    }, labels.to(device)


def batch_loss(model, batch, labels, label_smoothing: float = 0.0) -> tuple[torch.Tensor, int]:
    logits = model(**batch).logits
    loss = F.cross_entropy(
        logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100, label_smoothing=label_smoothing, reduction="sum"
    )
    return loss, int((labels != -100).sum())


class CrossEntropy:
    """The default objective: (label-smoothed) cross-entropy on the labels.

    An objective is called per batch with the model, the collated batch, its labels and the row
    indices of the training table; it returns the summed loss and the number of target tokens.
    `prepare` sees the training table before the first step; `window_metrics` returns averages
    since its last call, logged with every dev evaluation."""

    def __init__(self, label_smoothing: float = 0.0):
        self.label_smoothing = label_smoothing

    def prepare(self, model, tokenizer, table, pairs, device) -> None:
        pass

    def __call__(self, model, batch, labels, indices) -> tuple[torch.Tensor, int]:
        return batch_loss(model, batch, labels, self.label_smoothing)

    def window_metrics(self) -> dict:
        return {}

    def finish(self, model) -> None:
        """Called on the selected checkpoint before it is saved."""

    def write(self, outdir: Path) -> None:
        """Extra files (plots) into the model directory, written with it."""

    def summary(self) -> dict:
        return {}


@torch.no_grad()
def dev_loss(model, pairs, batches, pad, device, start=None) -> float:
    model.eval()
    total, tokens = 0.0, 0
    for indices in batches:
        batch, labels = collate(pairs, indices, pad, device, start)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss, n = batch_loss(model, batch, labels)
        total, tokens = total + loss.item(), tokens + n
    model.train()
    return total / max(tokens, 1)


def resume_dir(args) -> Path:
    """Where periodic checkpoints go: beside the output, never inside a declared output."""
    return Path(args.checkpoint_dir) if args.checkpoint_dir else Path(args.out).with_name(Path(args.out).name + ".resume")


def save_checkpoint(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


@torch.no_grad()
def dev_bleu(model, tokenizer, dev, max_len: int) -> float:
    """Corpus BLEU of greedy translations of the dev set, against all its references."""
    model.eval()
    hyps = best_translations(model, tokenizer, list(dev.source), max_len=max_len)
    model.train()
    return sacrebleu.corpus_bleu(hyps, reference_streams(dev)).score


def train(args, objective=None) -> dict:
    """Train and save a model; `objective` replaces label cross-entropy (knowledge distillation)."""
    objective = objective or CrossEntropy(args.label_smoothing)
    seed_everything(args.seed)
    models.set_threads(args.threads)
    device = models.device()
    lm = args.task == "lm"
    if args.init:
        model, tokenizer = models.load(args.init, "--init", causal=lm)
    else:
        tokenizer = models.load_tokenizer(args.tokenizer)
        model = (models.build_lm if lm else models.build_model)(json.loads(args.arch), tokenizer).to(device)
        if args.init_from_teacher:
            copied = models.copy_matching_weights(model, args.init_from_teacher)
            log.info("copied %d of %d tensors from %s", len(copied), len(model.state_dict()), args.init_from_teacher)
    if not lm:
        models.keep_pad_row_zero(model)
    pad = tokenizer.pad_token_id
    start = model.config.bos_token_id if lm else None

    table = read_tables(args.train)
    if args.label_column not in table.columns:
        raise InputError(f"{args.train[0]}: no column {args.label_column!r} (has {', '.join(table.columns)})")
    table = table.dropna(subset=[args.label_column])
    pairs = encode(tokenizer, list(table.source), list(table[args.label_column]), args.max_len, args.direction, args.task)
    dev = read_table(args.dev)
    dev_pairs = encode(tokenizer, list(dev.source), list(dev.target), args.max_len, args.direction, args.task)
    dev_batches = token_batches(dev_pairs, args.batch_tokens, np.random.default_rng(0))
    if args.epochs:  # self-training fine-tunes for a number of passes over the new labels
        per_epoch = len(token_batches(pairs, args.batch_tokens, np.random.default_rng(0)))
        args.max_steps = max(1, math.ceil(args.epochs * per_epoch))
        log.info("%g epoch(s) of %d batches: %d steps", args.epochs, per_epoch, args.max_steps)
    log.info("%d training pairs, %d dev pairs, %d parameters, device %s", len(pairs), len(dev_pairs), models.count_parameters(model), device)
    objective.prepare(model, tokenizer, table, pairs, device)

    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / args.warmup, math.sqrt(args.warmup / (step + 1)))
    )
    rng = np.random.default_rng(args.seed)
    fingerprint = {k: v for k, v in vars(args).items() if k not in ("threads", "out", "checkpoint_dir")}
    history, best = [], {"criterion": float("inf"), "step": 0, "state": None}
    step, stale, skip = 0, 0, 0
    checkpoint = resume_dir(args) / "last.pt"
    if checkpoint.exists():
        saved = torch.load(checkpoint, weights_only=False)
        if saved["fingerprint"] == fingerprint:
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            schedule.load_state_dict(saved["schedule"])
            torch.set_rng_state(saved["torch_rng"])
            rng.bit_generator.state = saved["epoch_rng"]
            history, best, step, stale, skip = saved["history"], saved["best"], saved["step"], saved["stale"], saved["position"]
            log.info("resumed from %s at step %d", checkpoint, step)
        else:
            log.warning("ignoring %s: written with other arguments", checkpoint)

    started = time.time()
    window_loss, window_tokens, window_start, window_steps = 0.0, 0, time.time(), 0
    model.train()
    progress = tqdm(total=args.max_steps, initial=step, desc="train", mininterval=30, unit="step")
    while step < args.max_steps and stale < args.patience:
        epoch_rng = copy.deepcopy(rng.bit_generator.state)  # replaying it rebuilds this epoch's batches
        batches = token_batches(pairs, args.batch_tokens, rng)
        for position in range(skip, len(batches)):
            batch, labels = collate(pairs, batches[position], pad, device, start)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                loss, tokens = objective(model, batch, labels, batches[position])
            optimizer.zero_grad(set_to_none=True)
            (loss / tokens).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip_norm)
            optimizer.step()
            schedule.step()
            step += 1
            window_steps += 1
            progress.update()
            window_loss, window_tokens = window_loss + loss.item(), window_tokens + tokens
            if step % args.eval_every == 0 or step == args.max_steps:
                elapsed = time.time() - window_start
                history.append({
                    "step": step, "train_loss": window_loss / window_tokens,
                    "dev_loss": dev_loss(model, dev_pairs, dev_batches, pad, device, start),
                    "lr": schedule.get_last_lr()[0], "target_tokens_per_s": window_tokens / elapsed,
                    "seconds_per_step": elapsed / window_steps, **objective.window_metrics(),
                })
                if args.select_by == "bleu":
                    history[-1]["dev_bleu"] = dev_bleu(model, tokenizer, dev, args.max_len)
                log.info("step %d %s", step, " ".join(f"{k} {v:.4g}" for k, v in history[-1].items() if k != "step"))
                # lower is better: dev loss, or minus dev BLEU
                criterion = -history[-1]["dev_bleu"] if args.select_by == "bleu" else history[-1]["dev_loss"]
                if criterion < best["criterion"]:
                    best = {"criterion": criterion, "step": step, "state": copy.deepcopy(model.state_dict())}
                    stale = 0
                else:
                    stale += 1
                save_checkpoint(checkpoint, {
                    "fingerprint": fingerprint, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(), "torch_rng": torch.get_rng_state(), "epoch_rng": epoch_rng,
                    "position": position + 1, "history": history, "best": best, "step": step, "stale": stale,
                })
                window_loss, window_tokens, window_start, window_steps = 0.0, 0, time.time(), 0
            if step >= args.max_steps or stale >= args.patience:
                break
        skip = 0
    progress.close()
    model.load_state_dict(best["state"])
    objective.finish(model)
    summary = {
        "arguments": vars(args), "history": history, "best_step": best["step"], "select_by": args.select_by,
        "best": next(h for h in history if h["step"] == best["step"]), "steps": step, "parameters": models.count_parameters(model),
        "train_pairs": len(pairs), "seconds": time.time() - started, **objective.summary(),
    }
    with atomic_path(args.out) as tmp:
        models.save(model, tokenizer, tmp)
        (tmp / "training.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        objective.write(tmp)
    shutil.rmtree(checkpoint.parent, ignore_errors=True)
    return summary


def parser(description: str = __doc__) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", nargs="+", required=True, help="training table(s), Parquet")
    p.add_argument("--label-column", default="target", help="column holding the training targets")
    p.add_argument("--direction", choices=["l2r", "r2l", "backward"], default="l2r",
                   help="r2l: learn the label tokens reversed; backward: translate labels back into sources")
    p.add_argument("--task", choices=["seq2seq", "lm"], default="seq2seq", help="lm: a causal LM on the labels alone")
    p.add_argument("--dev", required=True, help="dev table for checkpoint selection")
    p.add_argument("--tokenizer", help="tokenizer directory (for a model built from --arch)")
    p.add_argument("--arch", help="architecture as JSON: d_model, encoder_layers, decoder_layers (an LM: layers), heads, ffn_dim")
    p.add_argument("--init", help="start from this model (directory or Hugging Face id) instead of --arch")
    p.add_argument("--init-from-teacher", help="copy the tensors of this model that match --arch in name and shape")
    p.add_argument("--max-steps", type=int, default=1000)
    p.add_argument("--epochs", type=float, help="passes over the training data; replaces --max-steps")
    p.add_argument("--batch-tokens", type=int, default=4096)
    p.add_argument("--lr", type=float, default=7e-4)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--clip-norm", type=float, default=1.0)
    p.add_argument("--max-len", type=int, default=128, help="tokens per side; longer sentences are truncated")
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--patience", type=int, default=10, help="evaluations without dev improvement before stopping")
    p.add_argument("--select-by", choices=["loss", "bleu"], default="loss",
                   help="keep the checkpoint with the lowest dev loss or the highest greedy dev BLEU")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--checkpoint-dir", help="periodic checkpoints for resuming (default: <out>.resume)")
    return p


def check_args(p: argparse.ArgumentParser, args) -> argparse.Namespace:
    if not args.init and not (args.tokenizer and args.arch):
        p.error("give --init, or both --tokenizer and --arch")
    if args.select_by == "bleu" and (args.direction != "l2r" or args.task != "seq2seq"):
        p.error("--select-by bleu needs a left-to-right translation model (--direction l2r --task seq2seq)")
    if args.task == "lm" and args.direction != "l2r":
        p.error("--task lm models the labels left to right: drop --direction")
    return args


def parse_args(argv=None):
    p = parser()
    return check_args(p, p.parse_args(argv))


def main(argv=None) -> int:
    return run_main(train, parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
