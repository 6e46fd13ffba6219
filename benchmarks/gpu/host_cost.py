"""Host-side seconds per training step and per decoding step of bench-gpu.yaml's architectures.

Each model is built at a tiny width (the layer counts of config/bench-gpu.yaml, width 16) and timed on
one CPU thread with a batch of two short sentences, so the time is that of dispatching the operations
(Python, the PyTorch dispatcher, autocast's casts, AdamW, gradient clipping, `generate`'s beam
bookkeeping), not arithmetic. A GPU run pays this on its host for every step, however fast the GPU;
config/bench-gpu.yaml's sizing takes max(GPU time, this) per step. Prints one JSON line per model.

  python benchmarks/gpu/host_cost.py [--tokenizer gpu-kit/prepared/results/tokenizer]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "workflow"))

from mtdistill import models  # noqa: E402
from mtdistill.training.batches import summed_cross_entropy  # noqa: E402

# bench-gpu.yaml's layer counts and heads; width 16 (ffn 16) keeps the arithmetic negligible
ARCHS = {"teacher, r2l, backward (6+6)": (6, 6, 8), "student (6+2)": (6, 2, 4)}


def timed(step, repeats: int) -> float:
    step()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - start) / repeats


def measure(name: str, layers: tuple, tokenizer) -> dict:
    encoder, decoder, heads = layers
    arch = {"d_model": 16, "encoder_layers": encoder, "decoder_layers": decoder, "heads": heads, "ffn_dim": 16,
            "dropout": 0.1}
    model = models.build_model(arch, tokenizer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    src = torch.randint(2, 500, (2, 8))
    tgt = torch.randint(2, 500, (2, 8))

    def train_step():  # as mtdistill.training.loop.train_step: bf16 autocast, fp32 loss, clipping, AdamW
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(input_ids=src, attention_mask=torch.ones_like(src), decoder_input_ids=tgt).logits
        loss = summed_cross_entropy(logits, tgt, 0.1)
        loss.backward()
        loss.item()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    model.train()
    train = timed(train_step, 20)
    model.eval()

    def decoding(beam: int, length: int):
        def run():
            with torch.no_grad():
                model.generate(input_ids=src, attention_mask=torch.ones_like(src), num_beams=beam,
                               num_return_sequences=beam, max_new_tokens=length, min_new_tokens=length,
                               early_stopping=True, do_sample=False)
        return run

    # per decoding step: the difference between 40 and 20 new tokens, over 20 steps
    per_step = {beam: (timed(decoding(beam, 40), 3) - timed(decoding(beam, 20), 3)) / 20 for beam in (1, 8)}
    return {"model": name, "train_step_s": round(train, 4), "greedy_step_s": round(per_step[1], 5),
            "beam8_step_s": round(per_step[8], 5), "torch": torch.__version__}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokenizer", type=Path, default=REPO / "gpu-kit" / "prepared" / "results" / "tokenizer",
                   help="a tokenizer directory of the workflow's (train_tokenizer's output)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    tokenizer = models.load_tokenizer(args.tokenizer)
    for name, layers in ARCHS.items():
        print(json.dumps(measure(name, layers, tokenizer)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
