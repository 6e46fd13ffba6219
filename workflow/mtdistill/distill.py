"""Train a student with a distillation objective instead of plain cross-entropy on its labels.

--objective word_kd        (1 - alpha) CE + alpha tau^2 KL(teacher || student) on the labels (Kim & Rush 2016);
                           --topk FILE uses the teacher's precomputed top-k log-probs (`teacher_topk`)
            skd            speculative KD (Xu et al. 2024): --k, --gamma, student and teacher sampling;
                           --k -1 (the vocabulary) is on-policy KD, --k 0 teacher-generated sequences
            supervised_kd  the SKD loss on the label sequences, no sampling
            prune          magnitude-prune --prune of the linear weights, retrain with cross-entropy
Every other option is `train`'s; start from a cross-entropy student with --init.
"""

from __future__ import annotations

import sys

from .files import run_main
from .kd import Pruned, SpeculativeKD, WordKD
from .train import check_args, parser, train


def objective(args):
    if args.objective == "word_kd":
        return WordKD(args.teacher, args.alpha, args.tau, args.label_smoothing, args.topk)
    if args.objective in ("skd", "supervised_kd"):
        return SpeculativeKD(args.teacher, args.k, args.gamma, (args.student_temperature, args.student_top_p),
                             (args.teacher_temperature, args.teacher_top_p), supervised=args.objective == "supervised_kd",
                             max_len=args.max_len, seed=args.seed)
    return Pruned(args.prune, args.label_smoothing)


def parse_args(argv=None):
    p = parser(__doc__)
    p.add_argument("--objective", required=True, choices=["word_kd", "skd", "supervised_kd", "prune"])
    p.add_argument("--teacher", help="frozen teacher (word_kd without --topk, skd, supervised_kd)")
    p.add_argument("--alpha", type=float, default=0.5, help="word_kd: weight of the KL term")
    p.add_argument("--tau", type=float, default=1.0, help="word_kd: softmax temperature of both distributions")
    p.add_argument("--topk", help="word_kd: the teacher's precomputed top-k log-probs of these labels")
    p.add_argument("--k", type=int, default=25, help="skd: a draft is kept if among the teacher's top k (-1: all)")
    p.add_argument("--gamma", type=int, default=5, help="skd: tokens the student drafts per teacher pass")
    p.add_argument("--student-temperature", type=float, default=0.5)
    p.add_argument("--student-top-p", type=float, default=0.5)
    p.add_argument("--teacher-temperature", type=float, default=0.2)
    p.add_argument("--teacher-top-p", type=float, default=0.5)
    p.add_argument("--prune", type=float, default=0.5, help="prune: fraction of linear weights set to zero")
    args = check_args(p, p.parse_args(argv))
    given = sys.argv[1:] if argv is None else argv
    if args.objective in ("skd", "supervised_kd") and "--lr" not in given:
        args.lr = 1e-5  # the SKD paper's code
    needs_teacher = args.objective in ("skd", "supervised_kd") or (args.objective == "word_kd" and not args.topk)
    if needs_teacher and not args.teacher:
        p.error(f"--objective {args.objective} needs --teacher")
    if not 0 < args.prune < 1:
        p.error("--prune is a fraction between 0 and 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_main(lambda a: train(a, objective(a)), args)


if __name__ == "__main__":
    raise SystemExit(main())
