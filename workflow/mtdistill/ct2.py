"""Convert a `transformers` model into a CTranslate2 directory (`backends.ctranslate2.convert`): a seq2seq
model of any teacher family (Marian, NLLB, M2M100, mBART-50, T5/MADLAD) or a decoder-only LM CTranslate2
supports (Llama, Gemma, Qwen, Mistral, GPT-2, ...).

The directory holds CTranslate2's model, the Hugging Face tokenizer files, the teacher's profile
(`mtdistill_teacher.json`, when the model directory has one) and `mtdistill_ct2.json` (where the model
came from, its family, whether it is a decoder-only generator); `--backend ctranslate2` of decode, score
and evaluate reads it.

    python -m mtdistill.ct2 --model results/models/teacher --out results/ct2/models/teacher
"""

from __future__ import annotations

import argparse

from .backends.ctranslate2 import convert
from .core.cli import run_main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="Hugging Face model directory (or cached id)")
    p.add_argument("--quantization", help="store the weights as int8, float16, ... (default: as trained, float32)")
    p.add_argument("--out", required=True, help="CTranslate2 model directory to write")
    return p.parse_args(argv)


def run(args) -> None:
    convert(args.model, args.out, args.quantization)


def main(argv=None) -> int:
    return run_main(run, parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
