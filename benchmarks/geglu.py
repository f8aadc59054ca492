"""Mosaic BERT's GEGLU feed-forward on one GPU: the GLU's element-wise part alone and the whole block,
eager PyTorch vs torch.compile (static and dynamic token count) vs the Triton kernels (src/fused_geglu.py:
the tiled8 one the model uses, with its rows per program autotuned, and the tiled and flat ones it
replaced).

    python benchmarks/geglu.py            # BERT-base sizes: 32,768 tokens (256 x 128), 768 -> 2 x 3072 -> 768

Forward + backward time per call (median of CUDA-event timings) and, for the element-wise part, the
bytes it must move at the least (read [gate | up] and write the output forward; read [gate | up] and the
output gradient and write the [gate | up] gradient backward) divided by that time. Writes
benchmarks/results/geglu.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from src.fused_geglu import geglu_dropout  # noqa: E402

P = 0.1


def glu_eager(gated):
    gate, up = gated.chunk(2, dim=-1)
    return F.dropout(F.gelu(gate) * up, P)


def glu_triton(gated):
    return geglu_dropout(gated, P)


def glu_triton_flat(gated):
    return geglu_dropout(gated, P, kernel="flat")


def glu_triton_tiled(gated):
    return geglu_dropout(gated, P, kernel="tiled")


def glu_triton_no_dropout(gated):
    return geglu_dropout(gated, 0.0)


class Block(nn.Module):
    """The feed-forward block of a Mosaic BERT layer: gated_layers, GLU + dropout, wo, residual, LayerNorm."""

    def __init__(self, hidden: int, intermediate: int, glu):
        super().__init__()
        self.gated_layers = nn.Linear(hidden, 2 * intermediate, bias=False)
        self.wo = nn.Linear(intermediate, hidden)
        self.layernorm = nn.LayerNorm(hidden, eps=1e-12)
        self.glu = glu

    def forward(self, x):
        return self.layernorm(x + self.wo(self.glu(self.gated_layers(x))))


def time_fwd_bwd(function, x: torch.Tensor, parameters=(), steps: int = 30, warmup: int = 5) -> float:
    """Median milliseconds of function(x) forward + backward (the gradients of x and of `parameters`).

    The gradient is returned (`torch.autograd.grad`), not accumulated into `x.grad`: accumulating would add
    a read-modify-write of x's gradient to every call, which the model (where x is a layer's output) never
    does. (Until session 4 it did: 12 bytes per output element on top of the kernels' 16, in every row.)
    """
    grad = torch.randn_like(function(x))
    inputs = [x, *parameters]
    return median_cuda_ms(lambda: torch.autograd.grad(function(x), inputs, grad), steps, warmup)


def median_cuda_ms(call, steps: int = 30, warmup: int = 5) -> float:
    """Median milliseconds of `call()` on the GPU (CUDA events around each call, after `warmup` calls)."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(steps):
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        call()
        end.record()
        end.synchronize()
        times.append(begin.elapsed_time(end))
    return statistics.median(times)


def compiled(function, dynamic: bool):
    torch._dynamo.reset()
    return torch.compile(function, dynamic=dynamic)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=256 * 128)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--intermediate", type=int, default=3072)
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results" / "geglu"))
    args = parser.parse_args()
    torch.manual_seed(0)
    n, h, i = args.tokens, args.hidden, args.intermediate
    gated = torch.randn(n, 2 * i, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    x = torch.randn(n, h, device="cuda", requires_grad=True)
    least_bytes = 2 * n * i * (2 + 1 + 2 + 1 + 2)  # bf16: fwd read 2i write i; bwd read 2i + i, write 2i
    rows = []
    glu_variants = {"eager PyTorch": lambda: glu_eager, "torch.compile, static": lambda: compiled(glu_eager, False),
                    "torch.compile, dynamic": lambda: compiled(glu_eager, True),
                    "Triton kernel (tiled8)": lambda: glu_triton,
                    "Triton kernel (tiled8) in torch.compile, dynamic": lambda: compiled(glu_triton, True),
                    "Triton kernel (tiled8) without dropout (no random numbers)": lambda: glu_triton_no_dropout,
                    "Triton kernel, tiled (sessions 5-9)": lambda: glu_triton_tiled,
                    "Triton kernel, flat (before session 5)": lambda: glu_triton_flat}
    for name, make in glu_variants.items():
        try:
            ms = time_fwd_bwd(make(), gated)
            rows.append(dict(part="GLU + dropout", variant=name, ms=ms, gb_per_s=least_bytes / ms / 1e6))
        except Exception as error:  # one failing variant must not hide the others
            rows.append(dict(part="GLU + dropout", variant=name, error=f"{type(error).__name__}: {error}"[:300]))
        print(json.dumps(rows[-1]), flush=True)
    block_variants = {"eager PyTorch": (glu_eager, None), "torch.compile, static": (glu_eager, False),
                      "torch.compile, dynamic": (glu_eager, True), "Triton kernel (tiled8), eager": (glu_triton, None),
                      "Triton kernel (tiled8), torch.compile dynamic": (glu_triton, True),
                      "Triton kernel tiled, torch.compile dynamic": (glu_triton_tiled, True),
                      "Triton kernel flat, torch.compile dynamic": (glu_triton_flat, True)}
    for name, (glu, dynamic) in block_variants.items():
        try:
            block = Block(h, i, glu).cuda()
            function = block if dynamic is None else compiled(block, dynamic)

            def step(inputs, function=function):
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    return function(inputs)

            rows.append(dict(part="feed-forward block", variant=name,
                             ms=time_fwd_bwd(step, x, list(block.parameters()))))
        except Exception as error:
            rows.append(dict(part="feed-forward block", variant=name, error=f"{type(error).__name__}: {error}"[:300]))
        print(json.dumps(rows[-1]), flush=True)
    lines = [f"{torch.cuda.get_device_name()}, torch {torch.__version__}; {n} tokens, hidden {h}, intermediate {i}, "
             f"bf16, dropout {P}; `python benchmarks/geglu.py`", "",
             "| part | variant | fwd + bwd ms | GB/s (least bytes) |", "| --- | --- | ---: | ---: |"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['part']} | {r['variant']} | error: {r['error'][:100]} | |")
        else:
            lines.append(f"| {r['part']} | {r['variant']} | {r['ms']:.3f} | "
                         f"{r['gb_per_s']:.0f} |" if "gb_per_s" in r else
                         f"| {r['part']} | {r['variant']} | {r['ms']:.3f} | |")
    Path(args.out + ".json").write_text(json.dumps(dict(gpu=torch.cuda.get_device_name(), rows=rows), indent=1))
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
