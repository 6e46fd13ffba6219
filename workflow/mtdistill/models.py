"""Vocabulary, model construction and loading, laid out so CTranslate2 converts models unchanged.

The layout: a Marian vocabulary with `</s>`=0, `<unk>`=1 and `<pad>` as the last id; `<pad>` is also
the decoder start token, so its embedding row is kept at zero during training; no forced EOS;
`<pad>` can never be generated.
"""

from __future__ import annotations

import json
import logging
import os
from contextlib import contextmanager
from pathlib import Path

import sentencepiece as spm
import torch
from transformers import (
    AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel, MarianConfig, MarianMTModel,
    MarianTokenizer,
)

from .core.io import InputError

log = logging.getLogger("mtdistill")


def device() -> torch.device:
    """The GPU the job was given, else the CPU.

    Slurm lists the job's GPUs in CUDA_VISIBLE_DEVICES, so they count from 0 here; under torchrun
    each process takes the one at its LOCAL_RANK."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))


def set_threads(threads: int) -> None:
    torch.set_num_threads(max(1, threads))


def train_tokenizer(texts: list[str], vocab_size: int, outdir: Path, seed: int = 1, threads: int = 1) -> MarianTokenizer:
    """One shared SentencePiece unigram model, saved as a MarianTokenizer directory."""
    outdir.mkdir(parents=True, exist_ok=True)
    spm.set_random_generator_seed(seed)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_prefix=str(outdir / "spm"), vocab_size=vocab_size,
        model_type="unigram", character_coverage=1.0, hard_vocab_limit=False, num_threads=threads,
        normalization_rule_name="identity", minloglevel=2,
        input_sentence_size=2_000_000, shuffle_input_sentence=False,
    )
    sp = spm.SentencePieceProcessor(model_file=str(outdir / "spm.model"))
    vocab = {"</s>": 0, "<unk>": 1}
    for i in range(sp.get_piece_size()):
        if not (sp.is_control(i) or sp.is_unknown(i)):
            vocab.setdefault(sp.id_to_piece(i), len(vocab))
    vocab["<pad>"] = len(vocab)  # CTranslate2's Marian loader drops the last id, which must be <pad>
    (outdir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    tokenizer = MarianTokenizer(
        source_spm=str(outdir / "spm.model"), target_spm=str(outdir / "spm.model"), vocab=str(outdir / "vocab.json")
    )
    for name in ("spm.model", "spm.vocab", "vocab.json"):
        os.remove(outdir / name)
    tokenizer.save_pretrained(outdir)
    return tokenizer


def build_model(arch: dict, tokenizer) -> MarianMTModel:
    """A Marian-style transformer from an `arch` config block, tied embeddings, pad row at zero."""
    pad, size = tokenizer.pad_token_id, len(tokenizer)
    if pad != size - 1:
        raise InputError(f"tokenizer: <pad> must be the last id ({size - 1}), found {pad}")
    config = MarianConfig(
        vocab_size=size, decoder_vocab_size=size, d_model=arch["d_model"],
        encoder_layers=arch["encoder_layers"], decoder_layers=arch["decoder_layers"],
        encoder_attention_heads=arch["heads"], decoder_attention_heads=arch["heads"],
        encoder_ffn_dim=arch["ffn_dim"], decoder_ffn_dim=arch["ffn_dim"],
        dropout=arch.get("dropout", 0.1), attention_dropout=0.0, activation_dropout=0.0,
        activation_function="swish", max_position_embeddings=arch.get("max_positions", 256),
        scale_embedding=True, pad_token_id=pad, eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=pad, forced_eos_token_id=None, share_encoder_decoder_embeddings=True,
        tie_word_embeddings=True,
    )
    model = MarianMTModel(config)
    with torch.no_grad():
        model.get_input_embeddings().weight[pad].zero_()
    configure_generation(model, tokenizer)
    freeze_sinusoids(model)
    return model


def build_lm(arch: dict, tokenizer) -> GPT2LMHeadModel:
    """A GPT-2-style causal LM over the shared vocabulary; `</s>` doubles as the start token."""
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=arch.get("max_positions", 256), n_embd=arch["d_model"],
        n_layer=arch["layers"], n_head=arch["heads"], n_inner=arch["ffn_dim"],
        resid_pdrop=arch.get("dropout", 0.1), embd_pdrop=arch.get("dropout", 0.1), attn_pdrop=0.0,
        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    return GPT2LMHeadModel(config)


def configure_generation(model, tokenizer) -> None:
    """Explicit generation settings: never emit <pad>, no forced EOS, lengths set per call."""
    gen = model.generation_config
    gen.bad_words_ids = [[tokenizer.pad_token_id]]
    gen.forced_eos_token_id = None
    gen.max_length = None


def freeze_sinusoids(model) -> None:
    """Fixed sinusoidal positions stay fixed. transformers 5 loads Marian's as trainable parameters that
    save_pretrained does not write, so training them would change the model that is saved behind its back."""
    for module in model.modules():
        weight = getattr(module, "weight", None)  # M2M100's are a buffer, `weights`, already fixed
        if type(module).__name__.endswith("SinusoidalPositionalEmbedding") and isinstance(weight, torch.nn.Parameter):
            weight.requires_grad_(False)


def keep_pad_row_zero(model) -> None:
    """CTranslate2 starts decoding from a zero vector; keep HF's <pad> start embedding equal to it."""
    pad = model.config.pad_token_id
    weight = model.get_input_embeddings().weight
    if getattr(model.config, "decoder_start_token_id", None) == pad:
        weight.register_hook(lambda grad: grad.index_fill(0, torch.tensor([pad], device=grad.device), 0.0))


@contextmanager
def hf_loading(what: str, path, kind: str | None = None):
    """Turns a failed Hugging Face load into one line naming the input, the path and the library's cause."""
    try:
        yield
    except (OSError, ValueError) as err:
        as_kind = f" as a Hugging Face {kind}" if kind else ""
        cause = f"{err.__class__.__name__}: {str(err).splitlines()[0]}"
        raise InputError(f"{what}: cannot load {path!r}{as_kind} ({cause})") from None


def load(path: str | Path, what: str = "model", causal: bool | None = None):
    """Model and tokenizer from a local directory or a Hugging Face id: a seq2seq model or a causal LM
    (`causal`; None: as its config says)."""
    if str(path).startswith(("/", "./", "../", "~")) and not Path(path).expanduser().is_dir():
        raise InputError(f"{what}: {path}: directory not found")
    if causal is None:
        with hf_loading(what, path):
            causal = not AutoConfig.from_pretrained(str(path)).is_encoder_decoder
    with hf_loading(what, path, "causal LM" if causal else "seq2seq model"):
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        model = (AutoModelForCausalLM if causal else AutoModelForSeq2SeqLM).from_pretrained(str(path))
    if not causal:
        configure_generation(model, tokenizer)  # pretrained models too: no forced EOS, never <pad>
    freeze_sinusoids(model)
    return model.to(device()).eval(), tokenizer


def load_tokenizer(path: str | Path):
    if not Path(path).is_dir():
        raise InputError(f"tokenizer: {path}: directory not found")
    return AutoTokenizer.from_pretrained(str(path))


def save(model, tokenizer, outdir: Path) -> None:
    model.save_pretrained(outdir)
    tokenizer.save_pretrained(outdir)


def count_parameters(model) -> int:
    """Unique parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())


def nonzero_parameters(model) -> int:
    """Non-zero parameters as the model computes with them (pruning masks applied), shared tensors once."""
    seen, total = set(), 0
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if id(param) not in seen:
                seen.add(id(param))
                value = getattr(module, name.removesuffix("_orig")) if name.endswith("_orig") else param
                total += int((value != 0).sum())
    return total


def spaced_layers(student_layers: int, teacher_layers: int) -> list[int]:
    """Teacher layers a shallower student copies, maximally spaced and keeping the top one (distil-whisper)."""
    if student_layers == 1:
        return [teacher_layers - 1]
    return [round(i * (teacher_layers - 1) / (student_layers - 1)) for i in range(student_layers)]


def copy_matching_weights(student, teacher_dir: str | Path, layers: str = "bottom") -> list[str]:
    """Initialise the student with every teacher tensor of the same name and shape.

    With an equal width, `bottom` copies the shared embeddings and the bottom encoder and decoder
    layers (a truncated teacher); `spaced` copies the embeddings and, for each stack, the teacher's
    maximally spaced layers (student layer i from teacher layer spaced_layers(...)[i]). Returns the
    student's names copied.
    """
    teacher_model = AutoModelForSeq2SeqLM.from_pretrained(str(teacher_dir))
    teacher = teacher_model.state_dict()
    source = {}  # student tensor name -> teacher tensor name
    if layers == "spaced":
        for stack in ("encoder", "decoder"):
            ours = getattr(student.config, f"{stack}_layers")
            theirs = getattr(teacher_model.config, f"{stack}_layers")
            for i, j in enumerate(spaced_layers(ours, theirs) if ours <= theirs else range(ours)):
                source[f".{stack}.layers.{i}."] = f".{stack}.layers.{j}."
    elif layers != "bottom":
        raise ValueError(f"unknown layer choice {layers!r} (bottom or spaced)")

    def teacher_name(name: str) -> str:
        for ours, theirs in source.items():
            if ours in name:
                return name.replace(ours, theirs)
        return name

    own = student.state_dict()
    copied = {name: teacher[teacher_name(name)] for name, tensor in own.items()
              if teacher_name(name) in teacher and teacher[teacher_name(name)].shape == tensor.shape}
    student.load_state_dict(copied, strict=False)
    return list(copied)
