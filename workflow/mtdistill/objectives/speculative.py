"""Speculative KD (Xu et al. 2024) and supervised KD: token-averaged forward KL(teacher || student),
on the sequences of speculative generation (`speculator`; no gradient through generation), or on
the label sequences without sampling (supervised KD). Under torchrun every rank drafts with the
unwrapped student (no DDP forward without a backward) from a generator seeded per rank."""

from __future__ import annotations

import argparse

from .base import register
from .cross_entropy import CrossEntropy

# generation stops at MAX_LEN_A * source tokens + MAX_LEN_B tokens (EOS included), as decoding's default
MAX_LEN_A, MAX_LEN_B = 1.5, 10


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
    from ..core.io import InputError, read_json  # pandas: loaded only when training

    measured = read_json(path)
    if not isinstance(measured, dict) or "chosen_k" not in measured:
        raise InputError(f"{path}: no chosen_k (not written by mtdistill.skd_acceptance)")
    if measured["chosen_k"] is None:
        raise InputError(f"{path}: chosen_k is null: no K had an acceptance the rule accepts "
                         f"({measured.get('choice', 'see the file')}); give --k an integer")
    return int(measured["chosen_k"])


@register
class SpeculativeKD(CrossEntropy):
    name = "skd"
    keys = {"k": 25, "gamma": 5, "student_temperature": 0.5, "student_top_p": 0.5,
            "teacher_temperature": 0.2, "teacher_top_p": 0.5}
    # the SKD paper fine-tunes at 1e-5 (Xu et al. 2024, released code)
    train = {"lr": 1e-5}
    needs_teacher = True
    needs_teacher_vocabulary = True  # supervised_kd too: the same KL
    arguments = {
        "k": {"type": k_value, "help": f"skd: a draft is kept if among the teacher's top k (-1: all; {keys['k']}); "
                                       "auto: the chosen_k of --acceptance"},
        "acceptance": {"help": "skd with --k auto: the JSON written by mtdistill.skd_acceptance"},
        "gamma": {"type": int, "help": f"skd: tokens the student drafts per teacher pass ({keys['gamma']})"},
        "student_temperature": {"type": float, "help": f"skd ({keys['student_temperature']})"},
        "student_top_p": {"type": float, "help": f"skd ({keys['student_top_p']})"},
        "teacher_temperature": {"type": float, "help": f"skd ({keys['teacher_temperature']})"},
        "teacher_top_p": {"type": float, "help": f"skd ({keys['teacher_top_p']})"},
        "max_len_a": {"type": float, "help": f"skd: generation stops at a * source tokens + b ({MAX_LEN_A})"},
        "max_len_b": {"type": int, "help": f"skd ({MAX_LEN_B})"},
    }
    supervised = False
    checkpointed = ("window", "acceptance")

    def __init__(self, teacher: str, k: int, gamma: int, student_sampling=(0.5, 0.5), teacher_sampling=(0.2, 0.5),
                 max_len: int = 128, seed: int = 1, max_len_a: float = MAX_LEN_A, max_len_b: int = MAX_LEN_B):
        import torch

        super().__init__()
        self.teacher_path, self.k, self.gamma = teacher, k, gamma
        self.student_sampling, self.teacher_sampling, self.max_len, self.seed = student_sampling, teacher_sampling, max_len, seed
        self.max_len_a, self.max_len_b = max_len_a, max_len_b
        self.generator = torch.Generator()
        self.window = {"kept": 0, "generated": 0, "kl": 0.0, "tokens": 0}
        self.acceptance: list[float] = []  # per step: the fraction of generated tokens the student drafted

    @classmethod
    def from_args(cls, args):
        return cls(args.teacher, args.k, args.gamma, (args.student_temperature, args.student_top_p),
                   (args.teacher_temperature, args.teacher_top_p), max_len=args.max_len, seed=args.seed,
                   max_len_a=args.max_len_a, max_len_b=args.max_len_b)

    @classmethod
    def check_args(cls, p, args) -> None:
        super().check_args(p, args)
        if cls.supervised:  # no generation: no K or length limit
            return
        args.max_len_a = MAX_LEN_A if args.max_len_a is None else args.max_len_a
        args.max_len_b = MAX_LEN_B if args.max_len_b is None else args.max_len_b
        if args.k == "auto":
            if not args.acceptance:
                p.error("--k auto needs --acceptance FILE (written by mtdistill.skd_acceptance)")
            from ..core.io import InputError

            try:
                args.k = chosen_k(args.acceptance)
            except InputError as error:
                p.error(f"--k auto: {error}")
        elif args.acceptance:
            p.error("--acceptance goes with --k auto")
        if args.k < -1:
            p.error("--k is -1 (the vocabulary), 0 (teacher-generated) or a positive number of top tokens")

    def prepare(self, model, tokenizer, table, pairs, device) -> None:
        import torch

        from .speculator import speculator
        from .teacher import load_teacher

        self.teacher = load_teacher(self.teacher_path, tokenizer, device)
        self.tokenizer = tokenizer
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        self.generator.manual_seed(self.seed + rank)  # under torchrun each rank samples its own sequences
        self.speculator = speculator(model, self.teacher, tokenizer, self.k, self.gamma, self.student_sampling,
                                     self.teacher_sampling, self.max_len, self.generator, self.max_len_a, self.max_len_b)

    def sequence_batch(self, model, batch, labels):
        """Labels of the speculative sequences, collated like training labels."""
        from ..core.tokens import pad_batch, shift_right

        was_training = model.training
        model.eval()  # drafting samples from the student as it decodes: no dropout
        sequences, kept, generated = self.speculator.generate(batch["input_ids"], batch["attention_mask"])
        model.train(was_training)
        self.window["kept"] += kept
        self.window["generated"] += generated
        self.acceptance.append(kept / max(generated, 1))
        device = labels.device
        labels = pad_batch(sequences, -100, "cpu")
        shifted = shift_right(labels, self.speculator.start, self.speculator.pad)
        return {**batch, "decoder_input_ids": shifted.to(device)}, labels.to(device)

    def __call__(self, model, batch, labels, indices):
        import torch

        from .teacher import forward_kl

        if not self.supervised:
            batch, labels = self.sequence_batch(model, batch, labels)
        mask = (labels != -100).float()
        with torch.no_grad():
            teacher_logits = self.teacher(**batch).logits
        kl = forward_kl(teacher_logits, model(**batch).logits, mask)
        tokens = int(mask.sum())
        self.window["kl"] += kl.item()
        self.window["tokens"] += tokens
        return kl, tokens

    def window_metrics(self) -> dict:
        metrics = {"kl_per_token": self.window["kl"] / max(self.window["tokens"], 1)}
        if not self.supervised:
            metrics["acceptance_rate"] = self.window["kept"] / max(self.window["generated"], 1)
        self.window = {"kept": 0, "generated": 0, "kl": 0.0, "tokens": 0}
        return metrics

    def state_dict(self) -> dict:
        return {**super().state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.generator.set_state(state["generator"])  # in place: the speculator holds this generator

    def summary(self) -> dict:
        """The K and gamma trained with (K as given: -1 is the vocabulary) and the acceptance per step."""
        return {"k": self.k, "gamma": self.gamma, "max_len_a": self.max_len_a, "max_len_b": self.max_len_b,
                "acceptance_per_step": self.acceptance}

    def write(self, outdir) -> None:
        """acceptance.png: the report's acceptance figure of this one model."""
        if not self.acceptance:
            return
        from ..figures.training import skd_acceptance

        label = f"K={self.speculator.k}, gamma={self.gamma}"
        skd_acceptance([("students", label, self.summary())], outdir / "acceptance.png")


@register
class SupervisedKD(SpeculativeKD):
    """The SKD loss on the label sequences: no K, gamma or sampling."""

    name = "supervised_kd"
    keys = {}
    arguments = {}
    supervised = True

    def __init__(self, teacher: str, max_len: int = 128, seed: int = 1):
        super().__init__(teacher, 0, 0, max_len=max_len, seed=seed)

    @classmethod
    def from_args(cls, args):
        return cls(args.teacher, max_len=args.max_len, seed=args.seed)

    def summary(self) -> dict:
        return {}

    def write(self, outdir) -> None:
        pass
