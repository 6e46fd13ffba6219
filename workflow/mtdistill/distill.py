"""Train a student with a distillation objective instead of plain cross-entropy on its labels.

--objective word_kd        (1 - alpha) CE + alpha tau^2 KL(teacher || student) on the labels (Kim & Rush 2016);
                           --topk FILE uses the teacher's precomputed top-k log-probs (`teacher_topk`)
            skd            speculative KD (Xu et al. 2024): --k, --gamma, student and teacher sampling;
                           --k -1 (the vocabulary) is on-policy KD, --k 0 teacher-generated sequences,
                           --k auto --acceptance FILE the chosen_k of `skd_acceptance`
            supervised_kd  the SKD loss on the label sequences, no sampling
            prune          magnitude-prune --prune of the linear weights, retrain with cross-entropy
An option of another objective (objectives.OBJECTIVE_KEYS) is refused rather than ignored; skd and
supervised_kd train at the objective's lr (objectives.OBJECTIVE_TRAIN) unless --lr is given.
SKD generation stops at --max-len-a * source tokens + --max-len-b tokens (EOS included), as decoding.
Every other option is `train`'s; start from a cross-entropy student with --init.
"""

from __future__ import annotations

import argparse

from . import objectives
from .core.io import InputError, read_json
from .core.cli import run_main
from .kd import Pruned, SpeculativeKD, WordKD
from .train import check_args, parser, train

# the registry's keys that are distill options of the same name; `topk` is a file here, not the registry's k
OPTION_KEYS = {objective: [key for key in keys if key != "topk"] for objective, keys in objectives.OBJECTIVE_KEYS.items()}


def option(key: str) -> str:
    return f"--{key.replace('_', '-')}"


def objective(args):
    if args.objective == "word_kd":
        return WordKD(args.teacher, args.alpha, args.tau, args.label_smoothing, args.topk, max_len=args.max_len)
    if args.objective == "skd":
        return SpeculativeKD(args.teacher, args.k, args.gamma, (args.student_temperature, args.student_top_p),
                             (args.teacher_temperature, args.teacher_top_p), max_len=args.max_len, seed=args.seed,
                             max_len_a=args.max_len_a, max_len_b=args.max_len_b)
    if args.objective == "supervised_kd":  # the labels are the sequences: no K, gamma or sampling
        return SpeculativeKD(args.teacher, 0, 0, supervised=True, max_len=args.max_len, seed=args.seed)
    return Pruned(args.prune, args.label_smoothing)


def k_value(value: str) -> int | str:
    """--k: an integer, or `auto` (the chosen K of an acceptance measurement)."""
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is neither an integer nor auto") from None


def chosen_k(path: str) -> int:
    """The K `skd_acceptance` chose; an InputError naming the file if it chose none."""
    measured = read_json(path)
    if not isinstance(measured, dict) or "chosen_k" not in measured:
        raise InputError(f"{path}: no chosen_k (not written by mtdistill.skd_acceptance)")
    if measured["chosen_k"] is None:
        raise InputError(f"{path}: chosen_k is null: no K had an acceptance the rule accepts "
                         f"({measured.get('choice', 'see the file')}); give --k an integer")
    return int(measured["chosen_k"])


def parse_args(argv=None):
    p = parser(__doc__)
    skd = objectives.OBJECTIVE_KEYS["skd"]
    p.add_argument("--objective", required=True, choices=list(objectives.OBJECTIVE_KEYS))
    p.add_argument("--teacher", help="frozen teacher (word_kd without --topk, skd, supervised_kd)")
    # objective options default to None, so that one given to another objective is seen and refused;
    # the registry's defaults fill them in afterwards
    p.add_argument("--alpha", type=float, help="word_kd: weight of the KL term (0.5)")
    p.add_argument("--tau", type=float, help="word_kd: softmax temperature of both distributions (1.0)")
    p.add_argument("--topk", help="word_kd: the teacher's precomputed top-k log-probs of these labels")
    p.add_argument("--k", type=k_value, help=f"skd: a draft is kept if among the teacher's top k (-1: all; {skd['k']}); "
                                             "auto: the chosen_k of --acceptance")
    p.add_argument("--acceptance", help="skd with --k auto: the JSON written by mtdistill.skd_acceptance")
    p.add_argument("--gamma", type=int, help=f"skd: tokens the student drafts per teacher pass ({skd['gamma']})")
    p.add_argument("--student-temperature", type=float, help=f"skd ({skd['student_temperature']})")
    p.add_argument("--student-top-p", type=float, help=f"skd ({skd['student_top_p']})")
    p.add_argument("--teacher-temperature", type=float, help=f"skd ({skd['teacher_temperature']})")
    p.add_argument("--teacher-top-p", type=float, help=f"skd ({skd['teacher_top_p']})")
    p.add_argument("--prune", type=float, help="prune: fraction of linear weights set to zero (0.5)")
    p.add_argument("--max-len-a", type=float, default=1.5, help="skd: generation stops at a * source tokens + b")
    p.add_argument("--max-len-b", type=int, default=10)
    train_lr = p.get_default("lr")
    p.set_defaults(lr=None)  # None: not given, the objective's lr applies
    args = check_args(p, p.parse_args(argv))

    own = OPTION_KEYS[args.objective]
    foreign = [key for keys in OPTION_KEYS.values() for key in keys if key not in own]
    if args.topk is not None and args.objective != "word_kd":
        foreign.insert(0, "topk")
    for key in dict.fromkeys(foreign):
        if getattr(args, key) is not None:
            p.error(f"{option(key)}: objective {args.objective} does not use it "
                    f"(its options: {', '.join(map(option, own)) or 'none'})")
    for key in own:
        if getattr(args, key) is None:
            setattr(args, key, objectives.OBJECTIVE_KEYS[args.objective][key])
    if args.lr is None:
        args.lr = objectives.OBJECTIVE_TRAIN.get(args.objective, {}).get("lr", train_lr)

    if args.objective == "skd":
        if args.k == "auto":
            if not args.acceptance:
                p.error("--k auto needs --acceptance FILE (written by mtdistill.skd_acceptance)")
            try:
                args.k = chosen_k(args.acceptance)
            except InputError as error:
                p.error(f"--k auto: {error}")
        elif args.acceptance:
            p.error("--acceptance goes with --k auto")
        if args.k < -1:
            p.error("--k is -1 (the vocabulary), 0 (teacher-generated) or a positive number of top tokens")
    elif args.acceptance:
        p.error(f"--acceptance: objective {args.objective} does not use it (skd with --k auto does)")
    needs_teacher = args.objective in ("skd", "supervised_kd") or (args.objective == "word_kd" and not args.topk)
    if needs_teacher and not args.teacher:
        p.error(f"--objective {args.objective} needs --teacher")
    if args.objective == "prune" and not 0 < args.prune < 1:
        p.error("--prune is a fraction between 0 and 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_main(lambda a: train(a, objective(a)), args)


if __name__ == "__main__":
    raise SystemExit(main())
