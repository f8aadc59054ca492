"""A fused LayerNorm: one Triton kernel for the forward pass, one for the backward, on CUDA.

`layer_norm_triton` has the signature of its plain-PyTorch twin `torch.nn.functional.layer_norm` and
computes the same values and gradients (statistics in float32, biased variance, `rsqrt(var + eps)`).
`FusedLayerNormModule` is an `nn.LayerNorm` whose forward uses the kernel on CUDA and the twin elsewhere,
and `apply_fused_layernorm(model)` swaps every `nn.LayerNorm` of a model for one, sharing the parameters.
`FusedLayerNorm` is the Composer algorithm (`algorithms: {fused_layernorm: {}}`) that does the swap at
Event.INIT; it exists only where Composer is installed, and nothing else here needs Composer.

Forward: one program per row computes mean and 1/std in float32, writes y and keeps (mean, rstd) for the
backward. Backward: each program walks a contiguous block of rows, writes dx row by row and accumulates
its rows' share of dweight / dbias in registers; the few per-program partial sums are added by torch.
"""
import logging
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
import triton
import triton.language as tl

log = logging.getLogger(__name__)

# Rows longer than this do not fit one program's registers; they go through torch instead.
MAX_FUSED_SIZE = 16384


@triton.jit
def _layer_norm_forward_kernel(
    X, Y, W, B, Mean, Rstd, N, eps,
    HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_N: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    x = tl.load(X + row * N + cols, mask=mask, other=0.0).to(tl.float32)
    mean = tl.sum(x, axis=0) / N
    centered = tl.where(mask, x - mean, 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(centered * centered, axis=0) / N + eps)
    y = centered * rstd
    if HAS_WEIGHT:
        y = y * tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        y = y + tl.load(B + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + row * N + cols, y.to(Y.dtype.element_ty), mask=mask)
    tl.store(Mean + row, mean)
    tl.store(Rstd + row, rstd)


@triton.jit
def _layer_norm_backward_kernel(
    X, DY, DX, W, Mean, Rstd, DW_partial, DB_partial, M, N, rows_per_program,
    HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_N: tl.constexpr,
):
    program = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    if HAS_WEIGHT:
        w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    dw = tl.zeros([BLOCK_N], dtype=tl.float32)
    db = tl.zeros([BLOCK_N], dtype=tl.float32)
    first_row = program.to(tl.int64) * rows_per_program
    for row in range(first_row, tl.minimum(first_row + rows_per_program, M)):
        offsets = row * N + cols
        x = tl.load(X + offsets, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(DY + offsets, mask=mask, other=0.0).to(tl.float32)
        rstd = tl.load(Rstd + row)
        x_hat = tl.where(mask, (x - tl.load(Mean + row)) * rstd, 0.0)
        if HAS_WEIGHT:
            dx_hat = dy * w
            dw += dy * x_hat
        else:
            dx_hat = dy
        if HAS_BIAS:
            db += dy
        # d/dx of (x - mean) * rstd, applied to dx_hat: remove its mean and its projection on x_hat.
        dx = (dx_hat - x_hat * (tl.sum(dx_hat * x_hat, axis=0) / N) - tl.sum(dx_hat, axis=0) / N) * rstd
        tl.store(DX + offsets, dx.to(DX.dtype.element_ty), mask=mask)
    tl.store(DW_partial + program * N + cols, dw, mask=mask)
    tl.store(DB_partial + program * N + cols, db, mask=mask)


def _backward_programs(n_rows: int, device: torch.device) -> int:
    """A few programs per SM on CUDA, so the partial dweight sums stay few; a handful elsewhere."""
    if device.type == "cuda":
        return min(n_rows, 4 * torch.cuda.get_device_properties(device).multi_processor_count)
    return min(n_rows, 4)


class _LayerNormFunction(torch.autograd.Function):
    # Under autocast, nn.LayerNorm runs in float32; casting the inputs the same way keeps the two equal.
    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)
    def forward(ctx, x, weight, bias, n, eps):
        x2d = x.contiguous().view(-1, n)
        y = torch.empty_like(x2d)
        mean = torch.empty(x2d.shape[0], dtype=torch.float32, device=x.device)
        rstd = torch.empty_like(mean)
        block_n = triton.next_power_of_2(n)
        _layer_norm_forward_kernel[(x2d.shape[0],)](
            x2d, y, weight if weight is not None else x2d, bias if bias is not None else x2d, mean, rstd,
            n, eps, HAS_WEIGHT=weight is not None, HAS_BIAS=bias is not None, BLOCK_N=block_n,
            num_warps=min(max(block_n // 256, 1), 8),
        )
        ctx.save_for_backward(x2d, weight, bias, mean, rstd)
        return y.view_as(x)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, dy):
        x2d, weight, bias, mean, rstd = ctx.saved_tensors
        m, n = x2d.shape
        dy2d = dy.contiguous().view(m, n)
        dx = torch.empty_like(x2d)
        programs = _backward_programs(m, x2d.device)
        dw_partial = torch.zeros(programs, n, dtype=torch.float32, device=x2d.device)
        db_partial = torch.zeros_like(dw_partial)
        block_n = triton.next_power_of_2(n)
        _layer_norm_backward_kernel[(programs,)](
            x2d, dy2d, dx, weight if weight is not None else x2d, mean, rstd, dw_partial, db_partial,
            m, n, triton.cdiv(m, programs), HAS_WEIGHT=weight is not None, HAS_BIAS=bias is not None,
            BLOCK_N=block_n, num_warps=min(max(block_n // 256, 1), 8),
        )
        dweight = dw_partial.sum(0).view_as(weight).to(weight.dtype) if weight is not None else None
        dbias = db_partial.sum(0).view_as(bias).to(bias.dtype) if bias is not None else None
        return dx.view_as(dy), dweight, dbias, None, None


def layer_norm_triton(
    input: torch.Tensor,
    normalized_shape: tuple[int, ...] | list[int] | torch.Size,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-5,
) -> torch.Tensor:
    """`torch.nn.functional.layer_norm`, computed by the Triton kernels (CUDA, or any device under
    TRITON_INTERPRET=1)."""
    normalized_shape = tuple(normalized_shape)
    if tuple(input.shape[-len(normalized_shape):]) != normalized_shape:
        raise ValueError(
            f"layer_norm_triton: input of shape {tuple(input.shape)} does not end in normalized_shape "
            f"{normalized_shape}."
        )
    n = math.prod(normalized_shape)
    if n > MAX_FUSED_SIZE:
        raise ValueError(
            f"layer_norm_triton normalizes at most {MAX_FUSED_SIZE} values per row, got {n}; use "
            "torch.nn.functional.layer_norm."
        )
    return _LayerNormFunction.apply(input, weight, bias, n, eps)


class FusedLayerNormModule(nn.LayerNorm):
    """An `nn.LayerNorm` (same parameters, same state dict) computed by the Triton kernels on CUDA."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        # Inside torch.compile, Inductor writes its own LayerNorm and fuses it with the residual add and
        # dropout around it; a hand-written kernel there would only stop that fusion.
        fits = math.prod(self.normalized_shape) <= MAX_FUSED_SIZE
        if input.is_cuda and fits and not torch.compiler.is_compiling():
            return layer_norm_triton(input, self.normalized_shape, self.weight, self.bias, self.eps)
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    @classmethod
    def from_layer_norm(cls, layer_norm: nn.LayerNorm) -> "FusedLayerNormModule":
        """The same normalization, holding the very same Parameter objects (optimizers keep working)."""
        fused = cls(
            layer_norm.normalized_shape, eps=layer_norm.eps, elementwise_affine=layer_norm.elementwise_affine,
            bias=layer_norm.bias is not None, device="meta",
        )
        fused.weight, fused.bias = layer_norm.weight, layer_norm.bias
        return fused.train(layer_norm.training)


def apply_fused_layernorm(model: nn.Module) -> int:
    """Replace every `nn.LayerNorm` inside `model` with a `FusedLayerNormModule`; returns how many."""
    replacements: dict[nn.LayerNorm, FusedLayerNormModule] = {}
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.LayerNorm) and not isinstance(child, FusedLayerNormModule):
                # A LayerNorm shared by two parents stays shared.
                if child not in replacements:
                    replacements[child] = FusedLayerNormModule.from_layer_norm(child)
                setattr(parent, name, replacements[child])
    return len(replacements)


# The Composer algorithm. Composer is imported only here, and only if installed, so that the kernel and
# the module above work without it (the GPU check runs on a machine with torch and Triton only).
try:
    from composer.core import Algorithm, Event
except ImportError:
    Algorithm = None

if Algorithm is not None:

    class FusedLayerNorm(Algorithm):
        """Composer algorithm `fused_layernorm`: at Event.INIT, `apply_fused_layernorm` on the model.

        Works on any model (HF BERT as well as Mosaic BERT). The new modules hold the old Parameter
        objects, so an optimizer built before INIT keeps updating the right tensors.
        """

        def match(self, event: Event, state) -> bool:
            return event == Event.INIT

        def apply(self, event: Event, state, logger) -> None:
            count = apply_fused_layernorm(state.model)
            log.info("fused_layernorm: replaced %d nn.LayerNorm modules with FusedLayerNormModule", count)
