"""Tiny, randomly initialised COMET checkpoints built offline at test time (nothing binary committed),
and the way the tests reach the COMET environment.

COMET (unbabel-comet 2.2.7: transformers<5, numpy<2) has an environment of its own (envs/comet.txt,
`make install` builds .venv-comet), so the tests, which run in the main one, call it as the workflow
does: through its interpreter, $MTDISTILL_COMET_PYTHON (else .venv-comet/bin/python). This file is
both: imported in the main environment, it gives the sentence pairs, `comet_python`, `run_comet` and
`build_checkpoints`; run by the COMET interpreter, it builds the checkpoints:

    python tests/comet_fixture.py --root DIR --kinds qe ref [--texts FILE]

A 200-piece SentencePiece model trained on the texts becomes an XLM-R tokenizer; a 2-layer,
64-wide XLM-R config sits beside it, so COMET builds its encoder from that directory without weights
and without the hub.
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before huggingface_hub reads it at import
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]

# German-English sentence pairs the tiny checkpoints' vocabulary is trained on (and scored on)
GERMAN = [("Der Hund", "The dog"), ("Die Katze", "The cat"), ("Mein Bruder", "My brother"), ("Das Kind", "The child")]
VERBS = [("sieht", "sees"), ("kauft", "buys"), ("malt", "paints"), ("sucht", "looks for")]
OBJECTS = [("ein Haus", "a house"), ("den Garten", "the garden"), ("einen Baum", "a tree"), ("das Meer", "the sea")]
PAIRS = [(f"{s[0]} {v[0]} {o[0]}.", f"{s[1]} {v[1]} {o[1]}.") for s, v, o in itertools.product(GERMAN, VERBS, OBJECTS)]
TEXTS = [text for pair in PAIRS for text in pair]


# --- in the main environment: reaching the COMET one ---------------------------------------------
def comet_python() -> str:
    """The COMET environment's interpreter, as the workflow picks it; a failure, not a skip, without it."""
    import pytest

    python = os.environ.get("MTDISTILL_COMET_PYTHON") or str(REPO / ".venv-comet" / "bin" / "python")
    if not os.access(python, os.X_OK):
        pytest.fail(f"the COMET tests run in the COMET environment, and its interpreter {python} does not exist:"
                    " run `make install` (it builds .venv-comet from envs/comet.txt) or set MTDISTILL_COMET_PYTHON")
    return python


def run_comet(*args, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    """`<COMET python> args...` from the checkout; with `check`, a failure shows its stderr."""
    result = subprocess.run([comet_python(), *map(str, args)], cwd=REPO, capture_output=True, text=True,
                            timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO / "tests")})
    if check:
        assert result.returncode == 0, f"{args}: exit {result.returncode}\n{result.stderr[-4000:]}"
    return result


def build_checkpoints(root: Path, kinds=("qe", "ref"), texts: list[str] | None = None) -> dict[str, Path]:
    """kind -> <root>/<kind>/comet/checkpoints/model.ckpt (its encoder at <root>/<kind>/encoder), built
    in one COMET-environment process."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    options = []
    if texts is not None:
        (root / "texts.txt").write_text("".join(f"{text}\n" for text in texts), encoding="utf-8")
        options = ["--texts", root / "texts.txt"]
    run_comet(Path(__file__), "--root", root, "--kinds", *kinds, *options)
    return {kind: root / kind / "comet" / "checkpoints" / "model.ckpt" for kind in kinds}


# --- in the COMET environment: building the checkpoints -------------------------------------------
def build_encoder(texts: list[str], outdir: Path, seed: int = 1) -> Path:
    """XLM-R tokenizer + config directory (no weights: COMET inits them randomly)."""
    import sentencepiece as spm
    from transformers import XLMRobertaConfig, XLMRobertaTokenizerFast

    outdir.mkdir(parents=True, exist_ok=True)
    prefix = outdir.parent / f".{outdir.name}-spm"
    spm.set_random_generator_seed(seed)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_prefix=str(prefix), vocab_size=200, model_type="unigram",
        character_coverage=1.0, hard_vocab_limit=False, num_threads=1, minloglevel=2,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1,  # the layout XLM-R's tokenizer expects
    )
    tokenizer = XLMRobertaTokenizerFast(vocab_file=f"{prefix}.model")  # slow->fast conversion: sentencepiece<0.2.3
    tokenizer.save_pretrained(outdir)
    for suffix in (".model", ".vocab"):
        os.remove(f"{prefix}{suffix}")
    XLMRobertaConfig(
        vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=128, max_position_embeddings=130, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    ).save_pretrained(outdir)
    return outdir


def build_tiny_comet(root: Path, texts: list[str], kind: str, seed: int = 1) -> Path:
    """Build <root>/encoder and <root>/comet/{hparams.yaml,checkpoints/model.ckpt}; return the .ckpt path.

    kind "qe": CometKiwi-style UnifiedMetric over (mt, src); kind "ref": COMET-22-style RegressionMetric.
    """
    import pytorch_lightning as ptl
    import torch
    import yaml
    from comet.models import RegressionMetric, UnifiedMetric

    root = Path(root)
    encoder = build_encoder(texts, root / "encoder", seed)
    common = dict(pretrained_model=str(encoder), load_pretrained_weights=False, local_files_only=True,
                  hidden_sizes=[32], dropout=0.0, layer_transformation="softmax")
    with torch.random.fork_rng():  # seeded weights without disturbing the caller's RNG
        torch.manual_seed(seed)
        if kind == "qe":
            model = UnifiedMetric(**common, input_segments=["mt", "src"], word_layer=2, final_activation="sigmoid")
        elif kind == "ref":
            model = RegressionMetric(**common)
        else:
            raise ValueError(f"kind must be 'qe' or 'ref', not {kind!r}")

    # torch.load(weights_only=True) accepts only primitives: no Path or other objects in the hparams
    hparams = dict(model.hparams)
    checkpoint = root / "comet" / "checkpoints" / "model.ckpt"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    (root / "comet" / "hparams.yaml").write_text(yaml.safe_dump(hparams), encoding="utf-8")
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": hparams,
                "pytorch-lightning_version": ptl.__version__},  # Lightning raises KeyError without it
               checkpoint)
    return checkpoint


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Build tiny COMET checkpoints (run by the COMET interpreter).")
    p.add_argument("--root", required=True, type=Path, help="<root>/<kind>/{encoder,comet} per kind")
    p.add_argument("--kinds", nargs="+", choices=["qe", "ref"], default=["qe", "ref"])
    p.add_argument("--texts", type=Path, help="one text per line for the vocabulary (default: the German-English pairs)")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    texts = args.texts.read_text(encoding="utf-8").splitlines() if args.texts else TEXTS
    for kind in args.kinds:
        print(build_tiny_comet(args.root / kind, texts, kind, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
