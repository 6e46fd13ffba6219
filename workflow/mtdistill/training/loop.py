"""The training loop: build or load the model, read the data, take optimizer steps, evaluate on dev
every --eval-every steps (keeping the best checkpoint and a resume checkpoint), and save the model.

An objective (`mtdistill.objectives`) computes each batch's loss; rank 0 alone evaluates, logs,
checkpoints and saves, and the others follow its decision to stop.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import sacrebleu
import torch
from tqdm import tqdm

from .. import families, models
from ..core.cli import seed_everything
from ..core.io import InputError, atomic_path, read_table, read_tables
from ..core.metrics import reference_streams
from ..backends.hf import HFTranslator
from . import checkpoint, distributed, record
from .batches import autocast, collate, dev_loss, encode, encode_family, resolve_precision, token_batches

log = logging.getLogger("mtdistill")


@dataclass
class Data:
    table: pd.DataFrame
    pairs: list
    dev: pd.DataFrame
    dev_pairs: list
    dev_batches: list
    pad: int
    start: int | None  # the decoder start token (the model config's; an LM's BOS)
    profile: families.Profile  # a pretrained teacher's family (fine-tuned in self-training); Marian's otherwise


@dataclass
class Run:
    """One process's training: its place among the ranks and what it trains."""
    args: object
    device: torch.device
    rank: int
    world: int
    precision: str
    model: torch.nn.Module  # trains; DDP-wrapped under torchrun
    raw: torch.nn.Module  # the unwrapped model: evaluated, checkpointed and saved
    tokenizer: object
    objective: object
    data: Data
    optimizer: torch.optim.Optimizer = None
    schedule: object = None
    fingerprint: dict = None
    state: checkpoint.State = field(default_factory=checkpoint.State)

    @property
    def group(self) -> int:
        """Batches per optimizer step."""
        return self.world * self.args.accumulate

    def criterion(self, entry: dict) -> float:
        """Lower is better: dev loss, or minus dev BLEU."""
        return -entry["dev_bleu"] if self.args.select_by == "bleu" else entry["dev_loss"]


@dataclass
class Window:
    """Training since the last evaluation."""
    loss: float = 0.0
    tokens: int = 0
    steps: int = 0
    start: float = field(default_factory=time.time)


def init_profile(args) -> families.Profile:
    """The family of the --init model (a pretrained teacher fine-tuned by self-training); Marian's otherwise."""
    profile = families.Profile.load(args.init) if args.init else families.Profile()
    if profile.family != "marian" and (args.direction != "l2r" or args.task != "seq2seq"):
        raise InputError(f"--init {args.init}: a {profile.family} model trains left to right on its own task only")
    return profile


def build_model(args, device):
    """The model to train and its tokenizer: loaded (--init) or built from --arch."""
    lm = args.task == "lm"
    if args.init:
        causal = lm or not families.FAMILIES[init_profile(args).family].seq2seq
        model, tokenizer = models.load(args.init, "--init", causal=causal)
    else:
        tokenizer = models.load_tokenizer(args.tokenizer)
        model = (models.build_lm if lm else models.build_model)(json.loads(args.arch), tokenizer).to(device)
        if args.init_from_teacher:
            copied = models.copy_matching_weights(model, args.init_from_teacher, args.init_layers)
            log.info("copied %d of %d tensors (%s layers) from %s", len(copied), len(model.state_dict()),
                     args.init_layers, args.init_from_teacher)
    if not lm and init_profile(args).family == "marian":
        models.keep_pad_row_zero(model)
    return model, tokenizer


def training_data(args, tokenizer, model) -> Data:
    table = read_tables(args.train)
    if args.label_column not in table.columns:
        raise InputError(f"{args.train[0]}: no column {args.label_column!r} (has {', '.join(table.columns)})")
    table = table.dropna(subset=[args.label_column])
    if args.mix:  # original bitext beside pseudo-labels (self-training): its references are the labels
        bitext = read_tables(args.mix)
        table = pd.concat([table, bitext.rename(columns={"target": args.label_column})[["source", args.label_column]]],
                          ignore_index=True)
    profile = init_profile(args)
    codec = families.codec(tokenizer, profile)
    dev = read_table(args.dev)
    if profile.family == "marian":
        pairs = encode(tokenizer, list(table.source), list(table[args.label_column]), args.max_len, args.direction, args.task)
        dev_pairs = encode(tokenizer, list(dev.source), list(dev.target), args.max_len, args.direction, args.task)
    else:
        pairs = encode_family(codec, list(table.source), list(table[args.label_column]), args.max_len)
        dev_pairs = encode_family(codec, list(dev.source), list(dev.target), args.max_len)
    dev_batches = token_batches(dev_pairs, args.batch_tokens, np.random.default_rng(0))
    start = model.config.bos_token_id if args.task == "lm" else getattr(model.config, "decoder_start_token_id", None)
    return Data(table, pairs, dev, dev_pairs, dev_batches, codec.pad_id, start, profile)


def plan_steps(args, pairs, group: int, world: int) -> None:
    """Refuse data too small for one step; --epochs sets --max-steps."""
    per_epoch = len(token_batches(pairs, args.batch_tokens, np.random.default_rng(0))) // group
    if not per_epoch:
        raise InputError(f"{args.train[0]}: fewer batches of {args.batch_tokens} tokens than the {group} one step takes "
                         f"({world} rank(s) x --accumulate {args.accumulate}): lower --batch-tokens")
    if args.epochs:  # self-training fine-tunes for a number of passes over the new labels
        args.max_steps = max(1, math.ceil(args.epochs * per_epoch))
        log.info("%g epoch(s) of %d steps: %d steps", args.epochs, per_epoch, args.max_steps)


def add_optimizer(run: Run) -> None:
    args = run.args
    run.optimizer = torch.optim.AdamW([p for p in run.raw.parameters() if p.requires_grad], lr=args.lr, betas=(0.9, 0.98), weight_decay=0.0)
    run.schedule = torch.optim.lr_scheduler.LambdaLR(
        run.optimizer, lambda step: min((step + 1) / args.warmup, math.sqrt(args.warmup / (step + 1)))
    )


@torch.no_grad()
def dev_bleu(model, tokenizer, dev, max_len: int, profile: families.Profile | None = None) -> float:
    """Corpus BLEU of greedy translations of the dev set, against all its references."""
    model.eval()
    hyps = HFTranslator(model, tokenizer, profile=profile).best_translations(list(dev.source), max_len=max_len)
    model.train()
    return sacrebleu.corpus_bleu(hyps, reference_streams(dev)).score


def current_dev_loss(run: Run) -> float:
    data = run.data
    return dev_loss(run.raw, data.dev_pairs, data.dev_batches, data.pad, run.device, data.start, run.precision,
                    data.profile.family == "causal")


def with_bleu(run: Run, entry: dict) -> dict:
    if run.args.select_by == "bleu":
        entry["dev_bleu"] = dev_bleu(run.raw, run.tokenizer, run.data.dev, run.args.max_len, run.data.profile)
    return entry


def best_now(run: Run, criterion: float) -> dict:
    return {"criterion": criterion, "step": run.state.step, "state": copy.deepcopy(run.raw.state_dict())}


def evaluate_start(run: Run) -> None:
    """--eval-at-start: the starting model is the one to beat (and kept if nothing beats it)."""
    entry = with_bleu(run, {"step": 0, "dev_loss": current_dev_loss(run)})
    run.state.history.append(entry)
    run.state.best = best_now(run, run.criterion(entry))
    log.info("starting model: %s", " ".join(f"{k} {v:.4g}" for k, v in entry.items() if k != "step"))


def evaluate_window(run: Run, window: Window, epoch_rng: dict, position: int) -> None:
    """Rank 0 evaluates, keeps the best model and checkpoints; every rank stops with rank 0."""
    # the window's metrics first: they reset it, and the state saved is the one after that reset
    ranks = distributed.all_gather({"metrics": run.objective.window_metrics(),
                                    "state": distributed.rank_state(run.objective, run.device)})
    state = run.state
    if run.rank == 0:
        elapsed = time.time() - window.start
        entry = with_bleu(run, {
            "step": state.step, "train_loss": window.loss / window.tokens, "dev_loss": current_dev_loss(run),
            "lr": run.schedule.get_last_lr()[0], "target_tokens_per_s": window.tokens / elapsed,
            "seconds_per_step": elapsed / window.steps,
            **{k: float(np.mean([r["metrics"][k] for r in ranks])) for k in ranks[0]["metrics"]},
        })
        state.history.append(entry)
        log.info("step %d %s", state.step, " ".join(f"{k} {v:.4g}" for k, v in entry.items() if k != "step"))
        criterion = run.criterion(entry)
        if criterion < state.best["criterion"]:
            state.best, state.stale = best_now(run, criterion), 0
        else:
            state.stale += 1
        checkpoint.save(run, ranks, epoch_rng, position + run.group)
    run.state.stale = distributed.from_rank0(run.state.stale)


def train_step(run: Run, mine: list[list[int]]) -> tuple[float, int]:
    """One optimizer step over this rank's batches; the summed loss and target tokens of all ranks."""
    model, data = run.model, run.data
    run.optimizer.zero_grad(set_to_none=True)
    loss_sum, tokens = 0.0, 0
    for i, indices in enumerate(mine):
        batch, labels = collate(data.pairs, indices, data.pad, run.device, data.start, data.profile.family == "causal")
        # DDP averages the gradients over ranks once, in the backward pass of the last batch
        with model.no_sync() if run.world > 1 and i < len(mine) - 1 else contextlib.nullcontext():
            with autocast(run.device, run.precision):
                loss, n = run.objective(model, batch, labels, indices)
            loss.backward()
        loss_sum, tokens = loss_sum + loss.item(), tokens + n
    # the step's target tokens are known only now (SKD generates them): normalise afterwards
    loss_sum, tokens = distributed.all_sum([loss_sum, tokens], run.device)
    for p in run.raw.parameters():
        if p.grad is not None:
            p.grad.mul_(run.world / max(tokens, 1))  # DDP's average over ranks -> their sum per token
    torch.nn.utils.clip_grad_norm_(run.raw.parameters(), run.args.clip_norm)
    run.optimizer.step()
    run.schedule.step()
    return loss_sum, tokens


def run_epochs(run: Run, rng: np.random.Generator) -> None:
    """Steps until --max-steps or --patience evaluations without improvement."""
    args, state = run.args, run.state
    window = Window()
    run.model.train()
    progress = tqdm(total=args.max_steps, initial=state.step, desc="train", mininterval=30, unit="step",
                    disable=run.rank > 0)
    while state.step < args.max_steps and state.stale < args.patience:
        epoch_rng = copy.deepcopy(rng.bit_generator.state)  # replaying it rebuilds this epoch's batches
        batches = token_batches(run.data.pairs, args.batch_tokens, rng)
        # a last group too small for a step waits for the next epoch's shuffle
        for position in range(state.skip, len(batches) - run.group + 1, run.group):
            loss, tokens = train_step(run, batches[position + run.rank:position + run.group:run.world])
            state.step += 1
            window.steps += 1
            progress.update()
            window.loss, window.tokens = window.loss + loss, window.tokens + tokens
            if state.step % args.eval_every == 0 or state.step == args.max_steps:
                evaluate_window(run, window, epoch_rng, position)
                window = Window()
            if state.step >= args.max_steps or state.stale >= args.patience:
                break
        state.skip = 0
    progress.close()


def save_model(run: Run, started: float) -> dict:
    """The best checkpoint, the tokenizer, training.json and the objective's files, written at once."""
    state = run.state
    run.raw.load_state_dict(state.best["state"])
    run.objective.finish(run.raw)
    summary = record.summary(run.args, state.history, state.best["step"], state.step, models.count_parameters(run.raw),
                             len(run.data.pairs), time.time() - started, run.precision, run.world,
                             run.objective.summary())
    with atomic_path(run.args.out) as tmp:
        models.save(run.raw, run.tokenizer, tmp)
        if run.data.profile.family != "marian":  # a fine-tuned teacher is fed as before
            run.data.profile.save(tmp)
        record.write(summary, tmp)
        run.objective.write(tmp)
    shutil.rmtree(checkpoint.path(run.args).parent, ignore_errors=True)
    return summary


def prepare(args, objective) -> Run:
    """Everything before the first step: ranks, seeds, model, data, objective, optimizer."""
    device = models.device()
    rank, world = distributed.init(device)
    if rank:
        log.setLevel(logging.WARNING)  # rank 0 reports
    # ranks draw their own dropout masks; DDP starts every rank from rank 0's weights
    seed_everything(args.seed + rank)
    models.set_threads(args.threads)
    precision = resolve_precision(args.precision, device)
    model, tokenizer = build_model(args, device)
    data = training_data(args, tokenizer, model)
    plan_steps(args, data.pairs, world * args.accumulate, world)
    log.info("%d training pairs, %d dev pairs, %d parameters, device %s, %s, %d rank(s)",
             len(data.pairs), len(data.dev_pairs), models.count_parameters(model), device, precision, world)
    objective.prepare(model, tokenizer, data.table, data.pairs, device)
    run = Run(args, device, rank, world, precision, distributed.wrap(model, device, world), model, tokenizer,
              objective, data)
    add_optimizer(run)
    run.fingerprint = {k: v for k, v in vars(args).items() if k not in ("threads", "out", "checkpoint_dir")}
    run.fingerprint.update(precision=precision, world_size=world)
    return run


def train(args, objective) -> dict:
    """Train and save a model with `objective` (a `mtdistill.objectives` instance); rank 0's training.json."""
    run = prepare(args, objective)
    rng = np.random.default_rng(args.seed)
    checkpoint.load(run, rng)
    if args.eval_at_start and not run.state.history and run.rank == 0:
        evaluate_start(run)
    started = time.time()
    run_epochs(run, rng)
    summary = save_model(run, started) if run.rank == 0 else {}
    # DDP's reducer holds the process group: freed after the group is destroyed, its destructor can
    # deadlock on the GIL with a gloo thread (a test run hung there once), so it goes first
    run.model = None
    gc.collect()
    distributed.finish(run.world)
    return summary
