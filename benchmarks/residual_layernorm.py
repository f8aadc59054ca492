"""The end of every Mosaic BERT sublayer, `LayerNorm(residual + dropout(projection))`, alone on one GPU.

The session-8 profile of the training step (benchmarks/results/session8_throughput_encoder_profile_profile.md)
puts 6.6 ms of its 57.7 ms GPU time in the kernels Inductor makes of this (forward and backward, 25 calls),
at about a third of the memory's rate. What costs: the dropout's random numbers, the float32 residual
stream (autocast runs LayerNorm in float32, so its output, the next residual, is float32), or neither?

    python benchmarks/residual_layernorm.py    # 32,768 tokens (256 x 128), hidden 768, dropout 0.1

Each variant is compiled with torch.compile (static shapes, as in the compiled encoder) and timed forward +
backward (the gradients of the projection, the residual and the LayerNorm's weight and bias; median of
CUDA-event timings, benchmarks/geglu.py's `time_fwd_bwd`). "least bytes" counts each tensor read or written
once: forward the projection (bf16) and the residual in, the output out; backward the output's gradient and
the saved output in, the projection's and the residual's gradients out. Writes
benchmarks/results/residual_layernorm.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
sys.path.insert(0, str(REPO_ROOT))

from geglu import time_fwd_bwd  # noqa: E402

P = 0.1
EPS = 1e-12


def variants(weight: torch.Tensor, bias: torch.Tensor) -> dict:
    """name: (function of (projection, residual), residual dtype)."""
    def inductor(p):
        def block(projection, residual):
            return F.layer_norm(residual + F.dropout(projection, p), (weight.shape[0],), weight, bias, EPS)
        return torch.compile(block, dynamic=False)

    def inductor_bf16(p):
        # The residual stream in bf16: LayerNorm on bf16 input, bf16 weights, bf16 output.
        def block(projection, residual):
            return F.layer_norm(residual + F.dropout(projection, p), (weight.shape[0],),
                                weight.to(residual.dtype), bias.to(residual.dtype), EPS)
        return torch.compile(block, dynamic=False)

    return {
        "Inductor, fp32 residual, dropout 0.1 (the model now)": (inductor(P), torch.float32),
        "Inductor, fp32 residual, no dropout": (inductor(0.0), torch.float32),
        "Inductor, bf16 residual, dropout 0.1": (inductor_bf16(P), torch.bfloat16),
        "Inductor, bf16 residual, no dropout": (inductor_bf16(0.0), torch.bfloat16),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=256 * 128)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results" / "residual_layernorm"))
    args = parser.parse_args()
    torch.manual_seed(0)
    n, h = args.tokens, args.hidden
    weight = torch.ones(h, device="cuda", requires_grad=True)
    bias = torch.zeros(h, device="cuda", requires_grad=True)
    projection = torch.randn(n, h, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    rows = []
    for name, (function, residual_dtype) in variants(weight, bias).items():
        torch._dynamo.reset()
        residual = torch.randn(n, h, device="cuda", dtype=residual_dtype, requires_grad=True)
        width = residual.element_size()
        least_bytes = n * h * ((2 + width + width) + (width + width + 2 + width))
        try:
            ms = time_fwd_bwd(lambda x, f=function, r=residual: f(x, r), projection, [residual, weight, bias])
            rows.append(dict(variant=name, ms=ms, least_bytes=least_bytes, gb_per_s=least_bytes / ms / 1e6))
        except Exception as error:  # one failing variant must not hide the others
            rows.append(dict(variant=name, error=f"{type(error).__name__}: {error}"[:300]))
        print(json.dumps(rows[-1]), flush=True)
    lines = [f"{torch.cuda.get_device_name()}, torch {torch.__version__}; {n} tokens, hidden {h}, projection bf16, "
             f"dropout {P}; `python benchmarks/residual_layernorm.py`", "",
             "| variant | fwd + bwd ms | least MB | GB/s (least bytes) |", "| --- | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['variant']} | error: {r['error'][:100]} | | |" if "error" in r else
                     f"| {r['variant']} | {r['ms']:.3f} | {r['least_bytes'] / 1e6:.0f} | {r['gb_per_s']:.0f} |")
    Path(args.out + ".json").write_text(json.dumps(dict(gpu=torch.cuda.get_device_name(), rows=rows), indent=1))
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
