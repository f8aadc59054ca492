"""Is GEGLU worth fusing into the up-projection's GEMM? One timing on one GPU settles it.

The recipe's feed-forward block computes `gated = x @ W.T` (cuBLAS, `tokens x 2I`), then reads all of
`gated` again in src/fused_geglu.py's kernel to write `gelu(gate) * up` (2.8 ms of the 58.9 ms step at
BERT-base sizes, session 10). A Triton GEMM that keeps the gate and up tiles of the same columns in two
accumulators can write that product from registers (its epilogue), as well as `gated` (the backward needs
it): the second read disappears, but the GEMM is Triton's instead of cuBLAS's. This script times, forward
only, at the recipe's sizes (32,768 tokens, 768 -> 2 x 3072, bf16):
  - cuBLAS `x @ W.T`, then the tiled8 GEGLU kernel (the recipe now), with dropout 0.1 and without;
  - the Triton GEMM alone (how far its GEMM is from cuBLAS's);
  - the Triton GEMM with the GEGLU epilogue, without dropout and with dropout drawn one Philox call per
    value (`tl.rand`; the recipe's kernels draw one per eight, so this brackets the epilogue's cost).
If the fused rows do not beat the recipe's by a clear margin, this direction is closed.

    python benchmarks/geglu_gemm_epilogue.py     # writes benchmarks/results/geglu_gemm_epilogue.{json,md}

Under TRITON_INTERPRET=1 (the CPU test) `gemm_geglu` runs on tiny shapes and is compared with PyTorch.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
import triton
import triton.language as tl

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

from geglu import median_cuda_ms  # noqa: E402
from src.fused_geglu import _geglu, geglu_dropout  # noqa: E402

P = 0.1
CONFIGS = [triton.Config({"BM": bm, "BN": bn, "BK": bk, "GROUP_M": 8}, num_warps=warps, num_stages=stages)
           for bm, bn, bk, warps, stages in [(128, 128, 64, 8, 3), (128, 128, 64, 8, 4), (128, 64, 64, 4, 4),
                                             (64, 128, 64, 4, 4), (256, 64, 64, 8, 3), (128, 128, 32, 8, 4)]]
if os.environ.get("TRITON_INTERPRET") == "1":
    CONFIGS = [triton.Config({"BM": 16, "BN": 16, "BK": 16, "GROUP_M": 2}, num_warps=1, num_stages=1)]


@triton.autotune(configs=CONFIGS, key=["M", "K", "INTERMEDIATE", "EPILOGUE", "DROPOUT"])
@triton.jit
def _gemm_geglu_kernel(X, W, GATED, OUT, M, K, seed, p, INTERMEDIATE: tl.constexpr, EPILOGUE: tl.constexpr,
                       DROPOUT: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                       GROUP_M: tl.constexpr):
    """gated[:, j] and gated[:, I + j] for this program's BN columns j (W's rows j and I + j), then (with
    EPILOGUE) out[:, j] = dropout(gelu(gate) * up). Programs are grouped along M so that neighbours share
    W's tiles in L2."""
    pid = tl.program_id(0)
    n_m, n_n = tl.cdiv(M, BM), tl.cdiv(INTERMEDIATE, BN)
    group = pid // (GROUP_M * n_n)
    first_m = group * GROUP_M
    size_m = tl.minimum(n_m - first_m, GROUP_M)
    pid_m = first_m + (pid % (GROUP_M * n_n)) % size_m
    pid_n = (pid % (GROUP_M * n_n)) // size_m
    rows = pid_m * BM + tl.arange(0, BM)
    cols = pid_n * BN + tl.arange(0, BN)
    ks = tl.arange(0, BK)
    x_ptrs = X + rows[:, None].to(tl.int64) * K + ks[None, :]
    gate_ptrs = W + cols[None, :].to(tl.int64) * K + ks[:, None]  # W's rows as the columns of a K x BN tile
    up_ptrs = gate_ptrs + INTERMEDIATE * K
    gate = tl.zeros((BM, BN), dtype=tl.float32)
    up = tl.zeros((BM, BN), dtype=tl.float32)
    for k in range(0, K, BK):
        x = tl.load(x_ptrs, mask=(rows[:, None] < M) & (ks[None, :] + k < K), other=0.0)
        w_mask = (cols[None, :] < INTERMEDIATE) & (ks[:, None] + k < K)
        gate = tl.dot(x, tl.load(gate_ptrs, mask=w_mask, other=0.0), gate)
        up = tl.dot(x, tl.load(up_ptrs, mask=w_mask, other=0.0), up)
        x_ptrs += BK
        gate_ptrs += BK
        up_ptrs += BK
    inside = (rows[:, None] < M) & (cols[None, :] < INTERMEDIATE)
    gated_ptrs = GATED + rows[:, None].to(tl.int64) * 2 * INTERMEDIATE + cols[None, :]
    tl.store(gated_ptrs, gate.to(GATED.dtype.element_ty), mask=inside)
    tl.store(gated_ptrs + INTERMEDIATE, up.to(GATED.dtype.element_ty), mask=inside)
    if EPILOGUE:
        out = _geglu(gate.to(GATED.dtype.element_ty).to(tl.float32), up.to(GATED.dtype.element_ty).to(tl.float32))
        offsets = rows[:, None].to(tl.int64) * INTERMEDIATE + cols[None, :]
        if DROPOUT:
            out = tl.where(tl.rand(seed, offsets) > p, out / (1.0 - p), 0.0)
        tl.store(OUT + offsets, out.to(OUT.dtype.element_ty), mask=inside)


def gemm_geglu(x: torch.Tensor, weight: torch.Tensor, p: float = 0.0, epilogue: bool = True, seed: int = 0):
    """`(gated, out)`: gated = x @ weight.T and, with `epilogue`, out = dropout(gelu(gate) * up) computed
    from gated as rounded to its dtype (as the unfused kernel reads it); out is None without."""
    m, k = x.shape
    intermediate = weight.shape[0] // 2
    gated = x.new_empty(m, 2 * intermediate)
    out = x.new_empty(m, intermediate) if epilogue else gated  # unused without the epilogue
    grid = lambda meta: (triton.cdiv(m, meta["BM"]) * triton.cdiv(intermediate, meta["BN"]),)  # noqa: E731
    _gemm_geglu_kernel[grid](x, weight, gated, out, m, k, seed, p, INTERMEDIATE=intermediate, EPILOGUE=epilogue,
                             DROPOUT=p > 0)
    return gated, (out if epilogue else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=256 * 128)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--intermediate", type=int, default=3072)
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results" / "geglu_gemm_epilogue"))
    args = parser.parse_args()
    torch.manual_seed(0)
    n, h, i = args.tokens, args.hidden, args.intermediate
    x = torch.randn(n, h, device="cuda", dtype=torch.bfloat16)
    weight = torch.randn(2 * i, h, device="cuda", dtype=torch.bfloat16) * h ** -0.5
    reference = x @ weight.T
    gated, out = gemm_geglu(x, weight)
    errors = dict(gated=(gated.float() - reference.float()).abs().max().item(),
                  out=(out.float() - geglu_dropout(reference, 0.0).float()).abs().max().item())
    gemm_tflop = 2 * n * h * 2 * i / 1e12
    variants = {
        "cuBLAS GEMM, then tiled8 GEGLU + dropout (the recipe)": lambda: geglu_dropout(x @ weight.T, P),
        "cuBLAS GEMM, then tiled8 GEGLU, no dropout": lambda: geglu_dropout(x @ weight.T, 0.0),
        "cuBLAS GEMM alone": lambda: x @ weight.T,
        "Triton GEMM alone": lambda: gemm_geglu(x, weight, epilogue=False),
        "Triton GEMM + GEGLU epilogue, no dropout": lambda: gemm_geglu(x, weight),
        "Triton GEMM + GEGLU epilogue, dropout (one Philox call per value)": lambda: gemm_geglu(x, weight, P),
    }
    rows = []
    for name, function in variants.items():
        try:
            ms = median_cuda_ms(function, steps=50, warmup=10)
            rows.append(dict(variant=name, ms=ms, gemm_tflops=gemm_tflop / (ms / 1000)))
        except Exception as error:  # one failing variant must not hide the others
            rows.append(dict(variant=name, error=f"{type(error).__name__}: {error}"[:300]))
        print(json.dumps(rows[-1]), flush=True)
    lines = [f"{torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}; {n} tokens, "
             f"{h} -> 2 x {i}, bf16, forward only; `python benchmarks/geglu_gemm_epilogue.py`. Largest difference "
             f"from cuBLAS + the GEGLU kernel: gated {errors['gated']:.3g}, out {errors['out']:.3g}.", "",
             "| variant | ms | GEMM TFLOP/s at that time |", "| --- | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['variant']} | error: {r['error'][:100]} | |" if "error" in r else
                     f"| {r['variant']} | {r['ms']:.3f} | {r['gemm_tflops']:.0f} |")
    Path(args.out + ".json").write_text(json.dumps(dict(gpu=torch.cuda.get_device_name(), errors=errors,
                                                        rows=rows), indent=1))
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
