"""GEGLU with dropout in one Triton kernel forward and one backward: `dropout(gelu(gate) * up)`.

Mosaic BERT's feed-forward block computes `gated_layers(x)`, a `(tokens, 2 * intermediate)` tensor holding
[gate | up], then `dropout(gelu(gate) * up)` before the output projection. Left to PyTorch this is half a
dozen passes over tensors of `tokens x 3072` (the split, GELU, the product, the dropout mask and its
scaling, and as many again backward); the GPU profile of the regionally compiled model still shows
Inductor's fused version of it as the largest non-matmul cost (docs/performance.md). Here it is one read
of [gate | up] and one write of the output forward, and one read of [gate | up] and the output gradient and
one write of the [gate | up] gradient backward.

The dropout mask is never stored: the forward draws a seed, both kernels regenerate the same mask from
(seed, element index) with Triton's Philox `tl.rand`. GELU is the exact (erf) one, as `ACT2FN["gelu"]`.
Arithmetic in float32 whatever the input dtype.

`geglu_dropout` is a `torch.library` custom op with its autograd formula registered, so it runs the same
in eager mode and inside `torch.compile` (where Inductor fuses the work around it and calls it as is).

Measured on an H200 (benchmarks/results/geglu.md, BERT-base sizes): 1.37 ms forward + backward, against
2.91 ms for Inductor's kernels with a dynamic token count and 2.16 ms eager; that is still only ~1,200
GB/s of the ~4,800 the memory can do (docs/NOTES.md has the next steps).
"""
import os

import torch
import triton
import triton.language as tl

BLOCK = 1024


@triton.jit
def _geglu_forward_kernel(GATED, OUT, n_elements, seed, p, INTERMEDIATE: tl.constexpr, DROPOUT: tl.constexpr,
                          BLOCK: tl.constexpr):
    index = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = index < n_elements
    row, col = index // INTERMEDIATE, index % INTERMEDIATE
    gate = tl.load(GATED + row * 2 * INTERMEDIATE + col, mask=mask, other=0.0).to(tl.float32)
    up = tl.load(GATED + row * 2 * INTERMEDIATE + INTERMEDIATE + col, mask=mask, other=0.0).to(tl.float32)
    out = 0.5 * gate * (1.0 + tl.math.erf(gate * 0.7071067811865476)) * up  # erf(x / sqrt(2)): exact GELU
    if DROPOUT:
        keep = tl.rand(seed, index) > p
        out = tl.where(keep, out / (1.0 - p), 0.0)
    tl.store(OUT + index, out.to(OUT.dtype.element_ty), mask=mask)


@triton.jit
def _geglu_backward_kernel(GRAD_OUT, GATED, GRAD_GATED, n_elements, seed, p, INTERMEDIATE: tl.constexpr,
                           DROPOUT: tl.constexpr, BLOCK: tl.constexpr):
    index = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = index < n_elements
    row, col = index // INTERMEDIATE, index % INTERMEDIATE
    gate_at = row * 2 * INTERMEDIATE + col
    gate = tl.load(GATED + gate_at, mask=mask, other=0.0).to(tl.float32)
    up = tl.load(GATED + gate_at + INTERMEDIATE, mask=mask, other=0.0).to(tl.float32)
    grad = tl.load(GRAD_OUT + index, mask=mask, other=0.0).to(tl.float32)
    if DROPOUT:
        keep = tl.rand(seed, index) > p
        grad = tl.where(keep, grad / (1.0 - p), 0.0)
    cdf = 0.5 * (1.0 + tl.math.erf(gate * 0.7071067811865476))
    pdf = tl.exp(-0.5 * gate * gate) * 0.3989422804014327  # 1/sqrt(2 pi)
    grad_gate = grad * up * (cdf + gate * pdf)
    grad_up = grad * gate * cdf
    tl.store(GRAD_GATED + gate_at, grad_gate.to(GRAD_GATED.dtype.element_ty), mask=mask)
    tl.store(GRAD_GATED + gate_at + INTERMEDIATE, grad_up.to(GRAD_GATED.dtype.element_ty), mask=mask)


def _launch_grid(n_elements: int) -> tuple[int]:
    return (triton.cdiv(n_elements, BLOCK),)


@torch.library.custom_op("mosaic_bert::geglu_dropout_forward", mutates_args=())
def _forward(gated: torch.Tensor, p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """`(out, seed)`: the seed (a CPU int64 scalar tensor) is what the backward regenerates the mask from."""
    gated = gated.contiguous()
    intermediate = gated.shape[-1] // 2
    out = gated.new_empty(*gated.shape[:-1], intermediate)
    # Drawn from torch's CPU generator: seeded runs repeat their masks; no GPU synchronization.
    seed = torch.randint(0, 2**31 - 1, (), dtype=torch.int64)
    n_elements = out.numel()
    if n_elements:
        _geglu_forward_kernel[_launch_grid(n_elements)](
            gated, out, n_elements, int(seed), p, INTERMEDIATE=intermediate, DROPOUT=p > 0, BLOCK=BLOCK)
    return out, seed


@_forward.register_fake
def _(gated: torch.Tensor, p: float) -> tuple[torch.Tensor, torch.Tensor]:
    return gated.new_empty(*gated.shape[:-1], gated.shape[-1] // 2), torch.empty((), dtype=torch.int64)


@torch.library.custom_op("mosaic_bert::geglu_dropout_backward", mutates_args=())
def _backward(grad_out: torch.Tensor, gated: torch.Tensor, seed: torch.Tensor, p: float) -> torch.Tensor:
    gated, grad_out = gated.contiguous(), grad_out.contiguous()
    grad_gated = torch.empty_like(gated)
    n_elements = grad_out.numel()
    if n_elements:
        _geglu_backward_kernel[_launch_grid(n_elements)](
            grad_out, gated, grad_gated, n_elements, int(seed), p, INTERMEDIATE=gated.shape[-1] // 2,
            DROPOUT=p > 0, BLOCK=BLOCK)
    return grad_gated


@_backward.register_fake
def _(grad_out: torch.Tensor, gated: torch.Tensor, seed: torch.Tensor, p: float) -> torch.Tensor:
    return torch.empty_like(gated)


def _setup_context(ctx, inputs, output) -> None:
    gated, p = inputs
    ctx.save_for_backward(gated, output[1])
    ctx.p = p


def _backward_formula(ctx, grad_out: torch.Tensor, grad_seed) -> tuple[torch.Tensor, None]:
    gated, seed = ctx.saved_tensors
    return _backward(grad_out, gated, seed, ctx.p), None


_forward.register_autograd(_backward_formula, setup_context=_setup_context)


def runs_on(tensor: torch.Tensor) -> bool:
    """Whether the kernels can take `tensor`: CUDA, or anything under Triton's interpreter (the CPU tests)."""
    return tensor.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"


def geglu_dropout(gated: torch.Tensor, p: float) -> torch.Tensor:
    """`dropout(gelu(gate) * up, p)` for `gated = [gate | up]` along the last dimension; pass p=0.0 when
    not training. CUDA tensors (or any device under TRITON_INTERPRET=1)."""
    if gated.shape[-1] % 2:
        raise ValueError(f"geglu_dropout: the last dimension ({gated.shape[-1]}) must be [gate | up], even.")
    return _forward(gated, float(p))[0]


def geglu_dropout_reference(gated: torch.Tensor, p: float, keep: torch.Tensor | None = None) -> torch.Tensor:
    """The same in plain PyTorch; `keep` is the dropout mask to apply (default: none)."""
    gate, up = gated.float().chunk(2, dim=-1)
    out = torch.nn.functional.gelu(gate) * up
    if keep is not None:
        out = torch.where(keep, out / (1 - p), 0.0)
    return out.to(gated.dtype)
