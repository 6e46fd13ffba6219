"""Train a model on labels with an objective (cross-entropy unless --objective says otherwise): a
Marian-style translation model (teacher, student, right-to-left teacher, backward model) or a
GPT-2-style target language model.

--direction l2r      source -> label column (teachers and students)
            r2l      source -> label tokens reversed (right-to-left teacher, Setiawan 2024)
            backward label column -> source (the noisy-channel model p(source | target))
--task lm            a causal LM on the label column alone (rows without it are skipped)
The training tables need `source` and the --label-column; the dev table `source` and `target`.
The best dev checkpoint is kept and saved with `save_pretrained`, together with the tokenizer and
`training.json` (arguments, learning curve, best step, parameter count, precision, world size).

--objective cross_entropy  (label-smoothed) cross-entropy on the labels (the default)
            word_kd        (1 - alpha) CE + alpha tau^2 KL(teacher || student) on the labels (Kim & Rush 2016);
                           --topk FILE uses the teacher's precomputed top-k log-probs (`teacher_topk`)
            skd            speculative KD (Xu et al. 2024): --k, --gamma, student and teacher sampling;
                           --k -1 (the vocabulary) is on-policy KD, --k 0 teacher-generated sequences,
                           --k auto --acceptance FILE the chosen_k of `skd_acceptance`
            supervised_kd  the SKD loss on the label sequences, no sampling
            prune          magnitude-prune --prune of the linear weights, retrain with cross-entropy
            reaugkd        retrieval-augmented KD (Zhang et al. 2023, token level): word_kd's loss towards the
                           teacher's top-k in the knowledge base --kb SHARD_DIR... (`build_kb` on these labels)
                           plus --relational-weight times a relational KL over each token's --neighbours KB
                           neighbours (--relational-tau, at most --relational-rows tokens a batch); the
                           student's projection head is saved beside the model as retrieval_head.pt
An option of another objective is refused rather than ignored (--alpha and --tau are word_kd's and
reaugkd's); an objective's training settings (skd and supervised_kd: lr 1e-5) apply unless given.
SKD generation stops at --max-len-a * source tokens + --max-len-b tokens (EOS included), as
decoding. Distil from a cross-entropy student with --init.

--precision auto     bf16 autocast on a GPU that supports it (Ampere and newer), else fp32 (the CPU)
            bf16|fp32  forward passes (training, dev loss, a KD teacher's) in that precision; weights stay fp32
--accumulate N       N batches per optimizer step, the loss normalised by all their target tokens
Resuming: every dev evaluation writes <out>.resume/last.pt (--checkpoint-dir); a rerun with the same
arguments continues from it (model, optimizer, data position, random states, the objective's state)
and ends with the model an uninterrupted run would have written.

Data-parallel training: run under torchrun, e.g.
    torchrun --standalone --nproc_per_node 4 -m mtdistill.train ...
Each of the W processes takes one GPU (LOCAL_RANK; NCCL) or runs on the CPU (gloo). All ranks shuffle
the same batches; an optimizer step takes W x --accumulate consecutive ones, rank r those at r, r + W,
..., and the gradient is normalised by the target tokens of all of them: W ranks give the update of
one process with --accumulate W (up to float rounding). Rank 0 alone evaluates, logs, checkpoints and
saves; the objective's window metrics are averaged over ranks, its summary (SKD acceptance) is rank 0's.
"""

from __future__ import annotations

import argparse

from .core.cli import run_main
from .objectives import OBJECTIVES
from .training.loop import train

LR = 7e-4  # unless the objective brings its own


def option(key: str) -> str:
    return f"--{key.replace('_', '-')}"


def parser() -> argparse.ArgumentParser:
    """The step's options, every objective's included (`estimate` parses the rules' commands with it)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    p.add_argument("--lr", type=float, help=f"learning rate (the objective's, else {LR})")
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
    p.add_argument("--objective", choices=list(OBJECTIVES), default="cross_entropy")
    p.add_argument("--teacher", help="frozen teacher (word_kd without --topk, skd, supervised_kd)")
    added = {}  # dest -> (objective, argparse keywords): reaugkd shares word_kd's --alpha and --tau
    for name, objective in OBJECTIVES.items():
        for key, options in objective.arguments.items():
            if key in added:
                if options != added[key][1]:
                    raise ValueError(f"objectives {added[key][0]} and {name} define {option(key)} differently: "
                                     "an option two objectives share needs the same argparse keywords")
                continue
            added[key] = (name, options)
            p.add_argument(option(key), dest=key, **options)
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


def check_objective(p: argparse.ArgumentParser, args) -> argparse.Namespace:
    """Refuse the options of other objectives (then drop them), fill in the objective's defaults."""
    objective = OBJECTIVES[args.objective]
    own = list(objective.arguments)
    for name, other in OBJECTIVES.items():
        for key in other.arguments:
            if key in own:
                continue
            if getattr(args, key, None) is not None:
                p.error(f"{option(key)}: objective {args.objective} does not use it "
                        f"(its options: {', '.join(map(option, own)) or 'none'})")
            if hasattr(args, key):
                delattr(args, key)
    if args.lr is None:
        args.lr = objective.train.get("lr", LR)
    objective.check_args(p, args)
    return args


def parse_args(argv=None):
    p = parser()
    return check_objective(p, check_args(p, p.parse_args(argv)))


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_main(lambda a: train(a, OBJECTIVES[a.objective].from_args(a)), args)


if __name__ == "__main__":
    raise SystemExit(main())
