"""Train a model with cross-entropy on labels: a Marian-style translation model (teacher, student,
right-to-left teacher, backward model) or a GPT-2-style target language model.

--direction l2r      source -> label column (teachers and students)
            r2l      source -> label tokens reversed (right-to-left teacher, Setiawan 2024)
            backward label column -> source (the noisy-channel model p(source | target))
--task lm            a causal LM on the label column alone (rows without it are skipped)
The training tables need `source` and the --label-column; the dev table `source` and `target`.
The best dev checkpoint is kept and saved with `save_pretrained`, together with the tokenizer and
`training.json` (arguments, learning curve, best step, parameter count, precision, world size).

--precision auto     bf16 autocast on a GPU that supports it (Ampere and newer), else fp32 (the CPU)
            bf16|fp32  forward passes (training, dev loss, a KD teacher's) in that precision; weights stay fp32
--accumulate N       N batches per optimizer step, the loss normalised by all their target tokens
Resuming: every dev evaluation writes <out>.resume/last.pt (--checkpoint-dir); a rerun with the same
arguments continues from it (model, optimizer, data position, random states, the objective's state)
and ends with the model an uninterrupted run would have written.

Data-parallel training: run under torchrun, e.g.
    torchrun --standalone --nproc_per_node 4 -m mtdistill.train ...   (or -m mtdistill.distill)
Each of the W processes takes one GPU (LOCAL_RANK; NCCL) or runs on the CPU (gloo). All ranks shuffle
the same batches; an optimizer step takes W x --accumulate consecutive ones, rank r those at r, r + W,
..., and the gradient is normalised by the target tokens of all of them: W ranks give the update of
one process with --accumulate W (up to float rounding). Rank 0 alone evaluates, logs, checkpoints and
saves; the objective's window metrics are averaged over ranks, its summary (SKD acceptance) is rank 0's.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import json
import logging
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.nn.functional as F
import sacrebleu
from tqdm import tqdm

from . import models
from .backends.hf import HFTranslator
from .core.metrics import reference_streams
from .core.tokens import reverse_tokens
from .core.io import InputError, atomic_path, read_tables, read_table
from .core.cli import run_main, seed_everything

log = logging.getLogger("mtdistill")


def encode(tokenizer, sources: list[str], targets: list[str], max_len: int, direction: str = "l2r",
           task: str = "seq2seq") -> list[tuple[list[int], list[int]]]:
    """(source ids, label ids) pairs; an LM has no source, an R2L model reversed labels."""
    if direction == "backward":
        sources, targets = targets, sources
    labels = tokenizer(text_target=targets, truncation=True, max_length=max_len)["input_ids"]
    if direction == "r2l":
        labels = [reverse_tokens(ids, tokenizer) for ids in labels]
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
    `prepare` sees the unwrapped model and the training table before the first step (and before a
    checkpoint is loaded); `window_metrics` returns averages since its last call, logged with every
    dev evaluation. `state_dict` holds what changes while training (the `checkpointed` attributes),
    saved in resume checkpoints and given back to `load_state_dict` after `prepare`."""

    checkpointed: tuple[str, ...] = ()

    def __init__(self, label_smoothing: float = 0.0):
        self.label_smoothing = label_smoothing

    def prepare(self, model, tokenizer, table, pairs, device) -> None:
        pass

    def state_dict(self) -> dict:
        return {name: copy.deepcopy(getattr(self, name)) for name in self.checkpointed}

    def load_state_dict(self, state: dict) -> None:
        for name in self.checkpointed:
            setattr(self, name, copy.deepcopy(state[name]))

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


def resolve_precision(precision: str, device: torch.device) -> str:
    """auto: bf16 where the GPU computes in it (Ampere and newer), else fp32."""
    bf16_gpu = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if precision == "auto":
        return "bf16" if bf16_gpu else "fp32"
    if precision == "bf16" and device.type == "cuda" and not bf16_gpu:
        raise InputError(f"--precision bf16: {torch.cuda.get_device_name(device)} does not support bfloat16 (use fp32)")
    return precision


def autocast(device: torch.device, precision: str):
    """Forward passes in bf16 where `precision` says so; the losses are computed in fp32 anyway."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


@torch.no_grad()
def dev_loss(model, pairs, batches, pad, device, start=None, precision: str = "fp32") -> float:
    model.eval()
    total, tokens = 0.0, 0
    for indices in batches:
        batch, labels = collate(pairs, indices, pad, device, start)
        with autocast(device, precision):
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


def init_distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world size); under torchrun (WORLD_SIZE > 1) joins the process group first."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)  # NCCL's object collectives use the current device
        # the other ranks wait while rank 0 evaluates (greedy dev BLEU can take minutes)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=datetime.timedelta(hours=1))
    return int(os.environ.get("RANK", 0)), world


def all_sum(values: list[float], device: torch.device) -> list[float]:
    """The values summed over all ranks."""
    if not dist.is_initialized():
        return values
    total = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return total.tolist()


def all_gather(value) -> list:
    """Every rank's value, in rank order."""
    if not dist.is_initialized():
        return [value]
    values = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def from_rank0(value):
    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def rank_state(objective, device: torch.device) -> dict:
    """What differs between ranks and must survive a restart: random states and the objective's."""
    return {"torch_rng": torch.get_rng_state(), "objective": objective.state_dict(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def load_rank_state(state: dict, objective, device: torch.device) -> None:
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] is not None:
        torch.cuda.set_rng_state(state["cuda_rng"], device)
    objective.load_state_dict(state["objective"])


@torch.no_grad()
def dev_bleu(model, tokenizer, dev, max_len: int) -> float:
    """Corpus BLEU of greedy translations of the dev set, against all its references."""
    model.eval()
    hyps = HFTranslator(model, tokenizer).best_translations(list(dev.source), max_len=max_len)
    model.train()
    return sacrebleu.corpus_bleu(hyps, reference_streams(dev)).score


def train(args, objective=None) -> dict:
    """Train and save a model; `objective` replaces label cross-entropy (knowledge distillation)."""
    objective = objective or CrossEntropy(args.label_smoothing)
    device = models.device()
    rank, world = init_distributed(device)
    if rank:
        log.setLevel(logging.WARNING)  # rank 0 reports
    # ranks draw their own dropout masks; DDP starts every rank from rank 0's weights
    seed_everything(args.seed + rank)
    models.set_threads(args.threads)
    precision = resolve_precision(args.precision, device)
    lm = args.task == "lm"
    if args.init:
        model, tokenizer = models.load(args.init, "--init", causal=lm)
    else:
        tokenizer = models.load_tokenizer(args.tokenizer)
        model = (models.build_lm if lm else models.build_model)(json.loads(args.arch), tokenizer).to(device)
        if args.init_from_teacher:
            copied = models.copy_matching_weights(model, args.init_from_teacher, args.init_layers)
            log.info("copied %d of %d tensors (%s layers) from %s", len(copied), len(model.state_dict()),
                     args.init_layers, args.init_from_teacher)
    if not lm:
        models.keep_pad_row_zero(model)
    pad = tokenizer.pad_token_id
    start = model.config.bos_token_id if lm else None

    table = read_tables(args.train)
    if args.label_column not in table.columns:
        raise InputError(f"{args.train[0]}: no column {args.label_column!r} (has {', '.join(table.columns)})")
    table = table.dropna(subset=[args.label_column])
    if args.mix:  # original bitext beside pseudo-labels (self-training): its references are the labels
        bitext = read_tables(args.mix)
        table = pd.concat([table, bitext.rename(columns={"target": args.label_column})[["source", args.label_column]]],
                          ignore_index=True)
    pairs = encode(tokenizer, list(table.source), list(table[args.label_column]), args.max_len, args.direction, args.task)
    dev = read_table(args.dev)
    dev_pairs = encode(tokenizer, list(dev.source), list(dev.target), args.max_len, args.direction, args.task)
    dev_batches = token_batches(dev_pairs, args.batch_tokens, np.random.default_rng(0))
    group = world * args.accumulate  # batches per optimizer step
    per_epoch = len(token_batches(pairs, args.batch_tokens, np.random.default_rng(0))) // group
    if not per_epoch:
        raise InputError(f"{args.train[0]}: fewer batches of {args.batch_tokens} tokens than the {group} one step takes "
                         f"({world} rank(s) x --accumulate {args.accumulate}): lower --batch-tokens")
    if args.epochs:  # self-training fine-tunes for a number of passes over the new labels
        args.max_steps = max(1, math.ceil(args.epochs * per_epoch))
        log.info("%g epoch(s) of %d steps: %d steps", args.epochs, per_epoch, args.max_steps)
    log.info("%d training pairs, %d dev pairs, %d parameters, device %s, %s, %d rank(s)",
             len(pairs), len(dev_pairs), models.count_parameters(model), device, precision, world)
    objective.prepare(model, tokenizer, table, pairs, device)
    raw = model  # evaluated, checkpointed and saved; `model` trains, wrapped under torchrun
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(raw, device_ids=[device.index] if device.type == "cuda" else None)

    optimizer = torch.optim.AdamW(raw.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / args.warmup, math.sqrt(args.warmup / (step + 1)))
    )
    rng = np.random.default_rng(args.seed)
    fingerprint = {k: v for k, v in vars(args).items() if k not in ("threads", "out", "checkpoint_dir")}
    fingerprint.update(precision=precision, world_size=world)
    history, best = [], {"criterion": float("inf"), "step": 0, "state": None}
    step, stale, skip = 0, 0, 0
    checkpoint = resume_dir(args) / "last.pt"
    if checkpoint.exists():
        # rank 0 saved from its GPU: onto the CPU, from where each rank copies into its own device
        saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
        if saved["fingerprint"] == fingerprint:
            raw.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            schedule.load_state_dict(saved["schedule"])
            load_rank_state(saved["ranks"][rank], objective, device)
            rng.bit_generator.state = saved["epoch_rng"]
            history, best, step, stale, skip = saved["history"], saved["best"], saved["step"], saved["stale"], saved["position"]
            log.info("resumed from %s at step %d", checkpoint, step)
        else:
            log.warning("ignoring %s: written with other arguments", checkpoint)

    def criterion_of(entry: dict) -> float:
        """Lower is better: dev loss, or minus dev BLEU."""
        return -entry["dev_bleu"] if args.select_by == "bleu" else entry["dev_loss"]

    if args.eval_at_start and not history and rank == 0:
        history.append({"step": 0, "dev_loss": dev_loss(raw, dev_pairs, dev_batches, pad, device, start, precision)})
        if args.select_by == "bleu":
            history[0]["dev_bleu"] = dev_bleu(raw, tokenizer, dev, args.max_len)
        best = {"criterion": criterion_of(history[0]), "step": 0, "state": copy.deepcopy(raw.state_dict())}
        log.info("starting model: %s", " ".join(f"{k} {v:.4g}" for k, v in history[0].items() if k != "step"))

    started = time.time()
    window_loss, window_tokens, window_start, window_steps = 0.0, 0, time.time(), 0
    model.train()
    progress = tqdm(total=args.max_steps, initial=step, desc="train", mininterval=30, unit="step", disable=rank > 0)
    while step < args.max_steps and stale < args.patience:
        epoch_rng = copy.deepcopy(rng.bit_generator.state)  # replaying it rebuilds this epoch's batches
        batches = token_batches(pairs, args.batch_tokens, rng)
        # a last group too small for a step waits for the next epoch's shuffle
        for position in range(skip, len(batches) - group + 1, group):
            mine = batches[position + rank:position + group:world]
            optimizer.zero_grad(set_to_none=True)
            loss_sum, tokens = 0.0, 0
            for i, indices in enumerate(mine):
                batch, labels = collate(pairs, indices, pad, device, start)
                # DDP averages the gradients over ranks once, in the backward pass of the last batch
                with model.no_sync() if world > 1 and i < len(mine) - 1 else contextlib.nullcontext():
                    with autocast(device, precision):
                        loss, n = objective(model, batch, labels, indices)
                    loss.backward()
                loss_sum, tokens = loss_sum + loss.item(), tokens + n
            # the step's target tokens are known only now (SKD generates them): normalise afterwards
            loss_sum, tokens = all_sum([loss_sum, tokens], device)
            for p in raw.parameters():
                if p.grad is not None:
                    p.grad.mul_(world / max(tokens, 1))  # DDP's average over ranks -> their sum per token
            torch.nn.utils.clip_grad_norm_(raw.parameters(), args.clip_norm)
            optimizer.step()
            schedule.step()
            step += 1
            window_steps += 1
            progress.update()
            window_loss, window_tokens = window_loss + loss_sum, window_tokens + tokens
            if step % args.eval_every == 0 or step == args.max_steps:
                # the window's metrics first: they reset it, and the state saved is the one after that reset
                ranks = all_gather({"metrics": objective.window_metrics(), "state": rank_state(objective, device)})
                if rank == 0:
                    elapsed = time.time() - window_start
                    history.append({
                        "step": step, "train_loss": window_loss / window_tokens,
                        "dev_loss": dev_loss(raw, dev_pairs, dev_batches, pad, device, start, precision),
                        "lr": schedule.get_last_lr()[0], "target_tokens_per_s": window_tokens / elapsed,
                        "seconds_per_step": elapsed / window_steps,
                        **{k: float(np.mean([r["metrics"][k] for r in ranks])) for k in ranks[0]["metrics"]},
                    })
                    if args.select_by == "bleu":
                        history[-1]["dev_bleu"] = dev_bleu(raw, tokenizer, dev, args.max_len)
                    log.info("step %d %s", step, " ".join(f"{k} {v:.4g}" for k, v in history[-1].items() if k != "step"))
                    criterion = criterion_of(history[-1])
                    if criterion < best["criterion"]:
                        best = {"criterion": criterion, "step": step, "state": copy.deepcopy(raw.state_dict())}
                        stale = 0
                    else:
                        stale += 1
                    save_checkpoint(checkpoint, {
                        "fingerprint": fingerprint, "model": raw.state_dict(), "optimizer": optimizer.state_dict(),
                        "schedule": schedule.state_dict(), "ranks": [r["state"] for r in ranks], "epoch_rng": epoch_rng,
                        "position": position + group, "history": history, "best": best, "step": step, "stale": stale,
                    })
                stale = from_rank0(stale)  # every rank stops with rank 0
                window_loss, window_tokens, window_start, window_steps = 0.0, 0, time.time(), 0
            if step >= args.max_steps or stale >= args.patience:
                break
        skip = 0
    progress.close()
    summary = {}
    if rank == 0:
        raw.load_state_dict(best["state"])
        objective.finish(raw)
        summary = {
            "arguments": vars(args), "history": history, "best_step": best["step"], "select_by": args.select_by,
            "best": next(h for h in history if h["step"] == best["step"]), "steps": step,
            # --eval-at-start and nothing better on dev: the starting model is what was saved
            "kept_start": bool(args.eval_at_start and best["step"] == 0),
            "parameters": models.count_parameters(raw), "train_pairs": len(pairs), "seconds": time.time() - started,
            "precision": precision, "world_size": world, **objective.summary(),
        }
        with atomic_path(args.out) as tmp:
            models.save(raw, tokenizer, tmp)
            (tmp / "training.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
            objective.write(tmp)
        shutil.rmtree(checkpoint.parent, ignore_errors=True)
    if world > 1:
        dist.barrier()  # the others wait for rank 0's save
        dist.destroy_process_group()
    return summary


def parser(description: str = __doc__) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", nargs="+", required=True, help="training table(s), Parquet")
    p.add_argument("--label-column", default="target", help="column holding the training targets")
    p.add_argument("--mix", nargs="+", help="more training tables whose `target` column is the label (original bitext)")
    p.add_argument("--direction", choices=["l2r", "r2l", "backward"], default="l2r",
                   help="r2l: learn the label tokens reversed; backward: translate labels back into sources")
    p.add_argument("--task", choices=["seq2seq", "lm"], default="seq2seq", help="lm: a causal LM on the labels alone")
    p.add_argument("--dev", required=True, help="dev table for checkpoint selection")
    p.add_argument("--tokenizer", help="tokenizer directory (for a model built from --arch)")
    p.add_argument("--arch", help="architecture as JSON: d_model, encoder_layers, decoder_layers (an LM: layers), heads, ffn_dim")
    p.add_argument("--init", help="start from this model (directory or Hugging Face id) instead of --arch")
    p.add_argument("--init-from-teacher", help="copy the tensors of this model that match --arch in name and shape")
    p.add_argument("--init-layers", choices=["bottom", "spaced"], default="bottom",
                   help="with --init-from-teacher: the teacher's bottom layers, or its maximally spaced ones")
    p.add_argument("--eval-at-start", action="store_true",
                   help="evaluate the starting model first: if training never beats it on dev, it is what is saved "
                        "(self-training keeps the previous round's model)")
    p.add_argument("--max-steps", type=int, default=1000)
    p.add_argument("--epochs", type=float, help="passes over the training data; replaces --max-steps")
    p.add_argument("--batch-tokens", type=int, default=4096)
    p.add_argument("--accumulate", type=int, default=1, help="batches per optimizer step (per rank under torchrun)")
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                   help="autocast of the forward passes; auto: bf16 on a GPU that supports it, else fp32")
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
    if args.accumulate < 1:
        p.error("--accumulate is a number of batches, at least 1")
    return args


def parse_args(argv=None):
    p = parser()
    return check_args(p, p.parse_args(argv))


def main(argv=None) -> int:
    return run_main(train, parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
