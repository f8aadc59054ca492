"""GEGLU with dropout in one Triton kernel forward and one backward: `dropout(gelu(gate) * up)`.

Mosaic BERT's feed-forward block computes `gated_layers(x)`, a `(tokens, 2 * intermediate)` tensor holding
[gate | up], then `dropout(gelu(gate) * up)` before the output projection. Left to PyTorch this is half a
dozen passes over tensors of `tokens x 3072` (the split, GELU, the product, the dropout mask and its
scaling, and as many again backward); the GPU profile of the regionally compiled model still shows
Inductor's fused version of it as the largest non-matmul cost (docs/performance.md). Here it is one read
of [gate | up] and one write of the output forward, and one read of [gate | up] and the output gradient and
one write of the [gate | up] gradient backward.

The dropout mask is never stored: the forward draws a seed on the device (the host never waits, and a
CUDA graph capturing the call draws a new mask at each replay: checked on an H200 by
benchmarks/cuda_graphs_probe.py), both kernels regenerate the same mask from (seed, row, column) with
Triton's Philox. GELU is the exact (erf) one, as `ACT2FN["gelu"]`. Arithmetic in float32 whatever the input
dtype.

`geglu_dropout` is a `torch.library` custom op with its autograd formula registered, so it runs the same
in eager mode and inside `torch.compile` (where Inductor fuses the work around it and calls it as is).

Three kernel pairs, each a step on the one before (`kernel=`): "flat" (one element per lane), "tiled" (2-D
tiles, one Philox call per four values; sessions 5-9) and "tiled8" (the default: one Philox call per eight
values, 16 random bits each, no division). Measured on an H200 (BERT-base sizes, forward + backward,
benchmarks/results/session10_geglu.md): tiled8 0.98 ms, tiled 1.22, flat 1.19, Inductor's kernels with a
dynamic token count 2.74, eager PyTorch 1.87; in the training step tiled8 took 6.3 ms per step against the
tiled kernels' 7.8 and gave +1.1% / +2.1% samples/s in two calls (docs/performance.md, session 10).
"""
import hashlib
import os

import torch
import triton
import triton.language as tl

BLOCK = 1024


@triton.jit
def _geglu(gate, up):
    """gelu(gate) * up, with the exact (erf) GELU, in float32."""
    return 0.5 * gate * (1.0 + tl.math.erf(gate * 0.7071067811865476)) * up  # erf(x / sqrt(2))


@triton.jit
def _geglu_gradients(grad, gate, up):
    """The gradients of gelu(gate) * up with respect to gate and to up, given the output's gradient."""
    cdf = 0.5 * (1.0 + tl.math.erf(gate * 0.7071067811865476))
    pdf = tl.exp(-0.5 * gate * gate) * 0.3989422804014327  # 1/sqrt(2 pi)
    return grad * up * (cdf + gate * pdf), grad * gate * cdf


@triton.jit
def _geglu_forward_kernel(GATED, OUT, n_elements, SEED, p, INTERMEDIATE: tl.constexpr, DROPOUT: tl.constexpr,
                          BLOCK: tl.constexpr):
    seed = tl.load(SEED)
    index = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = index < n_elements
    row, col = index // INTERMEDIATE, index % INTERMEDIATE
    gate = tl.load(GATED + row * 2 * INTERMEDIATE + col, mask=mask, other=0.0).to(tl.float32)
    up = tl.load(GATED + row * 2 * INTERMEDIATE + INTERMEDIATE + col, mask=mask, other=0.0).to(tl.float32)
    out = _geglu(gate, up)
    if DROPOUT:
        keep = tl.rand(seed, index) > p
        out = tl.where(keep, out / (1.0 - p), 0.0)
    tl.store(OUT + index, out.to(OUT.dtype.element_ty), mask=mask)


@triton.jit
def _geglu_backward_kernel(GRAD_OUT, GATED, GRAD_GATED, n_elements, SEED, p, INTERMEDIATE: tl.constexpr,
                           DROPOUT: tl.constexpr, BLOCK: tl.constexpr):
    seed = tl.load(SEED)
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
    grad_gate, grad_up = _geglu_gradients(grad, gate, up)
    tl.store(GRAD_GATED + gate_at, grad_gate.to(GRAD_GATED.dtype.element_ty), mask=mask)
    tl.store(GRAD_GATED + gate_at + INTERMEDIATE, grad_up.to(GRAD_GATED.dtype.element_ty), mask=mask)


def _launch_grid(n_elements: int) -> tuple[int]:
    return (triton.cdiv(n_elements, BLOCK),)


# The tiled kernels (the default since session 5: 0.87 ms against the flat kernels' 1.08 ms forward +
# backward at BERT-base sizes on an H200, benchmarks/results/geglu.md): a 2-D grid of (ROWS rows, a tile of
# 4 x QUARTER columns), so no 64-bit division or remainder per element, and one 32-bit Philox call for
# four random numbers (one per quarter of the tile) instead of one call per element. The same (seed, row,
# column) gives the same random number forward and backward, whatever ROWS each direction picked.
# ROWS and the warp count are autotuned once per intermediate size (Triton times each configuration on
# the first call); under the CPU interpreter the first configuration is used.
TILED_CONFIGS = [triton.Config({"ROWS": rows}, num_warps=warps) for rows in (2, 1, 4, 8) for warps in (4, 8)]
if os.environ.get("TRITON_INTERPRET") == "1":
    TILED_CONFIGS = TILED_CONFIGS[:1]


@triton.jit
def _tile_position(n_rows, TILE_COLUMNS: tl.constexpr, SLOT: tl.constexpr, ROWS: tl.constexpr):
    """This program's rows (a column), the columns of its tile's first slot (a row) and which rows exist."""
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)[:, None]
    columns = tl.program_id(1) * TILE_COLUMNS + tl.arange(0, SLOT)[None, :]
    return rows, columns, rows < n_rows


@triton.jit
def _tile_randoms(seed, rows, columns, DROPOUT: tl.constexpr):
    """Four blocks of random uint32 for `columns`, `columns + QUARTER`, ... of `rows` (one Philox call)."""
    if DROPOUT:
        zeros = rows * 0 + columns * 0
        return tl.philox(seed, columns + zeros, rows + zeros, zeros, zeros)
    else:
        return columns, columns, columns, columns  # unused without dropout


@triton.jit
def _forward_quarter(gated_rows, out_rows, in_rows, columns, random, p, INTERMEDIATE: tl.constexpr,
                     DROPOUT: tl.constexpr):
    inside = in_rows & (columns < INTERMEDIATE)
    gate = tl.load(gated_rows + columns, mask=inside, other=0.0).to(tl.float32)
    up = tl.load(gated_rows + INTERMEDIATE + columns, mask=inside, other=0.0).to(tl.float32)
    out = _geglu(gate, up)
    if DROPOUT:
        out = tl.where(tl.uint_to_uniform_float(random) > p, out / (1.0 - p), 0.0)
    tl.store(out_rows + columns, out.to(out_rows.dtype.element_ty), mask=inside)


@triton.autotune(configs=TILED_CONFIGS, key=["INTERMEDIATE"])
@triton.jit
def _geglu_forward_tiled_kernel(GATED, OUT, n_rows, SEED, p, INTERMEDIATE: tl.constexpr, DROPOUT: tl.constexpr,
                                QUARTER: tl.constexpr, ROWS: tl.constexpr):
    seed = tl.load(SEED)
    rows, columns, in_rows = _tile_position(n_rows, 4 * QUARTER, QUARTER, ROWS)
    gated_rows = GATED + rows.to(tl.int64) * 2 * INTERMEDIATE
    out_rows = OUT + rows.to(tl.int64) * INTERMEDIATE
    r0, r1, r2, r3 = _tile_randoms(seed, rows, columns, DROPOUT)
    _forward_quarter(gated_rows, out_rows, in_rows, columns, r0, p, INTERMEDIATE, DROPOUT)
    _forward_quarter(gated_rows, out_rows, in_rows, columns + QUARTER, r1, p, INTERMEDIATE, DROPOUT)
    _forward_quarter(gated_rows, out_rows, in_rows, columns + 2 * QUARTER, r2, p, INTERMEDIATE, DROPOUT)
    _forward_quarter(gated_rows, out_rows, in_rows, columns + 3 * QUARTER, r3, p, INTERMEDIATE, DROPOUT)


@triton.jit
def _backward_quarter(grad_out_rows, gated_rows, grad_gated_rows, in_rows, columns, random, p,
                      INTERMEDIATE: tl.constexpr, DROPOUT: tl.constexpr):
    inside = in_rows & (columns < INTERMEDIATE)
    gate = tl.load(gated_rows + columns, mask=inside, other=0.0).to(tl.float32)
    up = tl.load(gated_rows + INTERMEDIATE + columns, mask=inside, other=0.0).to(tl.float32)
    grad = tl.load(grad_out_rows + columns, mask=inside, other=0.0).to(tl.float32)
    if DROPOUT:
        grad = tl.where(tl.uint_to_uniform_float(random) > p, grad / (1.0 - p), 0.0)
    grad_gate, grad_up = _geglu_gradients(grad, gate, up)
    tl.store(grad_gated_rows + columns, grad_gate.to(grad_gated_rows.dtype.element_ty), mask=inside)
    tl.store(grad_gated_rows + INTERMEDIATE + columns, grad_up.to(grad_gated_rows.dtype.element_ty), mask=inside)


@triton.autotune(configs=TILED_CONFIGS, key=["INTERMEDIATE"])
@triton.jit
def _geglu_backward_tiled_kernel(GRAD_OUT, GATED, GRAD_GATED, n_rows, SEED, p, INTERMEDIATE: tl.constexpr,
                                 DROPOUT: tl.constexpr, QUARTER: tl.constexpr, ROWS: tl.constexpr):
    seed = tl.load(SEED)
    rows, columns, in_rows = _tile_position(n_rows, 4 * QUARTER, QUARTER, ROWS)
    grad_out_rows = GRAD_OUT + rows.to(tl.int64) * INTERMEDIATE
    gated_rows = GATED + rows.to(tl.int64) * 2 * INTERMEDIATE
    grad_gated_rows = GRAD_GATED + rows.to(tl.int64) * 2 * INTERMEDIATE
    r0, r1, r2, r3 = _tile_randoms(seed, rows, columns, DROPOUT)
    _backward_quarter(grad_out_rows, gated_rows, grad_gated_rows, in_rows, columns, r0, p, INTERMEDIATE, DROPOUT)
    _backward_quarter(grad_out_rows, gated_rows, grad_gated_rows, in_rows, columns + QUARTER, r1, p, INTERMEDIATE,
                      DROPOUT)
    _backward_quarter(grad_out_rows, gated_rows, grad_gated_rows, in_rows, columns + 2 * QUARTER, r2, p,
                      INTERMEDIATE, DROPOUT)
    _backward_quarter(grad_out_rows, gated_rows, grad_gated_rows, in_rows, columns + 3 * QUARTER, r3, p,
                      INTERMEDIATE, DROPOUT)


# The tiled8 kernels (the default since session 10): the tiled kernels' layout with eight slots of
# SLOT columns instead of four quarters, and 16 bits of random number per value instead of 32, so one
# Philox call (ten rounds of 32-bit multiplies) serves eight values. On an H200 the tiled kernels were
# bound by arithmetic, not memory: Philox, the float conversion of the random number and a division per
# value. Here the dropout test is an integer comparison with `threshold = round(p * 65536)` and kept
# values are multiplied by `scale = 65536 / (65536 - threshold)`, both computed once on the host: the
# rate dropped is threshold / 65536 (0.1000061 for p = 0.1) and the expected value is kept exactly.
TILED8_CONFIGS = [triton.Config({"ROWS": rows}, num_warps=warps) for rows in (4, 8, 2, 16) for warps in (4, 8)]
if os.environ.get("TRITON_INTERPRET") == "1":
    TILED8_CONFIGS = TILED8_CONFIGS[:1]


@triton.jit
def _slot_keeps(r0, r1, r2, r3, threshold, INDEX: tl.constexpr):
    """Which values of the tile's slot number INDEX (0-7) dropout keeps: the low (slots 0-3) or high (4-7)
    16 bits of one of the four Philox words, at least `threshold`."""
    if INDEX % 4 == 0:
        word = r0
    elif INDEX % 4 == 1:
        word = r1
    elif INDEX % 4 == 2:
        word = r2
    else:
        word = r3
    if INDEX < 4:
        bits = word & 0xFFFF
    else:
        bits = word >> 16
    return bits.to(tl.int32) >= threshold


@triton.autotune(configs=TILED8_CONFIGS, key=["INTERMEDIATE"])
@triton.jit
def _geglu_forward_tiled8_kernel(GATED, OUT, n_rows, SEED, threshold, scale, INTERMEDIATE: tl.constexpr,
                                 DROPOUT: tl.constexpr, SLOT: tl.constexpr, ROWS: tl.constexpr):
    seed = tl.load(SEED)
    rows, columns, in_rows = _tile_position(n_rows, 8 * SLOT, SLOT, ROWS)
    gated_rows = GATED + rows.to(tl.int64) * 2 * INTERMEDIATE
    out_rows = OUT + rows.to(tl.int64) * INTERMEDIATE
    r0, r1, r2, r3 = _tile_randoms(seed, rows, columns, DROPOUT)
    for slot in tl.static_range(8):
        slot_columns = columns + slot * SLOT
        inside = in_rows & (slot_columns < INTERMEDIATE)
        gate = tl.load(gated_rows + slot_columns, mask=inside, other=0.0).to(tl.float32)
        up = tl.load(gated_rows + INTERMEDIATE + slot_columns, mask=inside, other=0.0).to(tl.float32)
        out = _geglu(gate, up)
        if DROPOUT:
            out = tl.where(_slot_keeps(r0, r1, r2, r3, threshold, slot), out * scale, 0.0)
        tl.store(out_rows + slot_columns, out.to(out_rows.dtype.element_ty), mask=inside)


@triton.autotune(configs=TILED8_CONFIGS, key=["INTERMEDIATE"])
@triton.jit
def _geglu_backward_tiled8_kernel(GRAD_OUT, GATED, GRAD_GATED, n_rows, SEED, threshold, scale,
                                  INTERMEDIATE: tl.constexpr, DROPOUT: tl.constexpr, SLOT: tl.constexpr,
                                  ROWS: tl.constexpr):
    seed = tl.load(SEED)
    rows, columns, in_rows = _tile_position(n_rows, 8 * SLOT, SLOT, ROWS)
    grad_out_rows = GRAD_OUT + rows.to(tl.int64) * INTERMEDIATE
    gated_rows = GATED + rows.to(tl.int64) * 2 * INTERMEDIATE
    grad_gated_rows = GRAD_GATED + rows.to(tl.int64) * 2 * INTERMEDIATE
    r0, r1, r2, r3 = _tile_randoms(seed, rows, columns, DROPOUT)
    for slot in tl.static_range(8):
        slot_columns = columns + slot * SLOT
        inside = in_rows & (slot_columns < INTERMEDIATE)
        gate = tl.load(gated_rows + slot_columns, mask=inside, other=0.0).to(tl.float32)
        up = tl.load(gated_rows + INTERMEDIATE + slot_columns, mask=inside, other=0.0).to(tl.float32)
        grad = tl.load(grad_out_rows + slot_columns, mask=inside, other=0.0).to(tl.float32)
        if DROPOUT:
            grad = tl.where(_slot_keeps(r0, r1, r2, r3, threshold, slot), grad * scale, 0.0)
        grad_gate, grad_up = _geglu_gradients(grad, gate, up)
        tl.store(grad_gated_rows + slot_columns, grad_gate.to(grad_gated_rows.dtype.element_ty), mask=inside)
        tl.store(grad_gated_rows + INTERMEDIATE + slot_columns, grad_up.to(grad_gated_rows.dtype.element_ty),
                 mask=inside)


def _slot(intermediate: int) -> int:
    """Columns per slot of the tiled8 kernels: 128 (a tile of 1,024), or less for a small intermediate size."""
    return min(128, triton.next_power_of_2(triton.cdiv(intermediate, 8)))


def _tiled8_grid(n_rows: int, intermediate: int):
    return lambda meta: (triton.cdiv(n_rows, meta["ROWS"]), triton.cdiv(intermediate, 8 * _slot(intermediate)))


def _dropout_threshold_and_scale(p: float) -> tuple[int, float]:
    """The tiled8 kernels' dropout: drop a value when its 16 random bits are below `threshold`, scale
    the others by `scale` (1 / the rate kept)."""
    threshold = min(65536, round(p * 65536))
    return threshold, (65536 / (65536 - threshold) if threshold < 65536 else 0.0)


def _quarter(intermediate: int) -> int:
    """Columns per quarter tile: 256 (a tile of 1,024), or less for a small intermediate size."""
    return min(256, triton.next_power_of_2(triton.cdiv(intermediate, 4)))


def _tiled_grid(n_rows: int, intermediate: int):
    return lambda meta: (triton.cdiv(n_rows, meta["ROWS"]), triton.cdiv(intermediate, 4 * _quarter(intermediate)))


# An operator name is one registration per process (registering it again replaces the first), and an
# exported model's remote code is a second copy of this file that may be imported beside this one: each
# copy registers its operators in a namespace of its own.
_NAMESPACE = "mosaic_bert" if __name__ == "src.fused_geglu" else (
    "mosaic_bert_" + hashlib.sha1(__name__.encode()).hexdigest()[:12])


KERNELS = ("tiled8", "tiled", "flat")  # the default first


@torch.library.custom_op(f"{_NAMESPACE}::geglu_dropout_forward", mutates_args=())
def _forward(gated: torch.Tensor, p: float, kernel: str) -> tuple[torch.Tensor, torch.Tensor]:
    """`(out, seed)`: the seed (one int64 on gated's device) is what the backward regenerates the mask from."""
    gated = gated.contiguous()
    intermediate = gated.shape[-1] // 2
    out = gated.new_empty(*gated.shape[:-1], intermediate)
    # Drawn on the device by torch's generator, read by the kernels from device memory: seeded runs repeat
    # their masks and the host never waits. (A host int would also be baked into a captured CUDA graph:
    # the same mask at every replay.)
    seed = torch.randint(0, 2**31 - 1, (1,), dtype=torch.int64, device=gated.device)
    n_elements = out.numel()
    if not n_elements:
        return out, seed
    n_rows = n_elements // intermediate
    if kernel == "tiled8":
        threshold, scale = _dropout_threshold_and_scale(p)
        _geglu_forward_tiled8_kernel[_tiled8_grid(n_rows, intermediate)](
            gated, out, n_rows, seed, threshold, scale, INTERMEDIATE=intermediate, DROPOUT=threshold > 0,
            SLOT=_slot(intermediate))
    elif kernel == "tiled":
        _geglu_forward_tiled_kernel[_tiled_grid(n_rows, intermediate)](
            gated, out, n_rows, seed, p, INTERMEDIATE=intermediate, DROPOUT=p > 0, QUARTER=_quarter(intermediate))
    else:
        _geglu_forward_kernel[_launch_grid(n_elements)](
            gated, out, n_elements, seed, p, INTERMEDIATE=intermediate, DROPOUT=p > 0, BLOCK=BLOCK)
    return out, seed


@_forward.register_fake
def _(gated: torch.Tensor, p: float, kernel: str) -> tuple[torch.Tensor, torch.Tensor]:
    return gated.new_empty(*gated.shape[:-1], gated.shape[-1] // 2), gated.new_empty((1,), dtype=torch.int64)


@torch.library.custom_op(f"{_NAMESPACE}::geglu_dropout_backward", mutates_args=())
def _backward(grad_out: torch.Tensor, gated: torch.Tensor, seed: torch.Tensor, p: float, kernel: str
              ) -> torch.Tensor:
    gated, grad_out = gated.contiguous(), grad_out.contiguous()
    grad_gated = torch.empty_like(gated)
    intermediate = gated.shape[-1] // 2
    n_elements = grad_out.numel()
    if not n_elements:
        return grad_gated
    n_rows = n_elements // intermediate
    if kernel == "tiled8":
        threshold, scale = _dropout_threshold_and_scale(p)
        _geglu_backward_tiled8_kernel[_tiled8_grid(n_rows, intermediate)](
            grad_out, gated, grad_gated, n_rows, seed, threshold, scale, INTERMEDIATE=intermediate,
            DROPOUT=threshold > 0, SLOT=_slot(intermediate))
    elif kernel == "tiled":
        _geglu_backward_tiled_kernel[_tiled_grid(n_rows, intermediate)](
            grad_out, gated, grad_gated, n_rows, seed, p, INTERMEDIATE=intermediate, DROPOUT=p > 0,
            QUARTER=_quarter(intermediate))
    else:
        _geglu_backward_kernel[_launch_grid(n_elements)](
            grad_out, gated, grad_gated, n_elements, seed, p, INTERMEDIATE=intermediate,
            DROPOUT=p > 0, BLOCK=BLOCK)
    return grad_gated


@_backward.register_fake
def _(grad_out: torch.Tensor, gated: torch.Tensor, seed: torch.Tensor, p: float, kernel: str) -> torch.Tensor:
    return torch.empty_like(gated)


def _setup_context(ctx, inputs, output) -> None:
    gated, p, kernel = inputs
    ctx.save_for_backward(gated, output[1])
    ctx.p, ctx.kernel = p, kernel


def _backward_formula(ctx, grad_out: torch.Tensor, grad_seed) -> tuple[torch.Tensor, None, None]:
    gated, seed = ctx.saved_tensors
    return _backward(grad_out, gated, seed, ctx.p, ctx.kernel), None, None


_forward.register_autograd(_backward_formula, setup_context=_setup_context)


def runs_on(tensor: torch.Tensor) -> bool:
    """Whether the kernels can take `tensor`: CUDA, or anything under Triton's interpreter (the CPU tests)."""
    return tensor.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"


def geglu_dropout(gated: torch.Tensor, p: float, kernel: str = KERNELS[0]) -> torch.Tensor:
    """`dropout(gelu(gate) * up, p)` for `gated = [gate | up]` along the last dimension; pass p=0.0 when
    not training. CUDA tensors (or any device under TRITON_INTERPRET=1). `kernel`: "tiled8" (the default),
    "tiled" (the default of sessions 5-9) or "flat" (one element per lane, before session 5); each draws
    its own masks."""
    if gated.shape[-1] % 2:
        raise ValueError(f"geglu_dropout: the last dimension ({gated.shape[-1]}) must be [gate | up], even.")
    if kernel not in KERNELS:
        raise ValueError(f"geglu_dropout: kernel {kernel!r} is not one of {', '.join(KERNELS)}.")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"geglu_dropout: the dropout probability must be in [0, 1], got {p}.")
    return _forward(gated, float(p), kernel)[0]


def dropout_rate(p: float, kernel: str = KERNELS[0]) -> float:
    """The rate `kernel` drops for a requested `p`: p itself, or the nearest multiple of 1/65536 (tiled8)."""
    return _dropout_threshold_and_scale(p)[0] / 65536 if kernel == "tiled8" else p


def geglu_dropout_reference(gated: torch.Tensor, p: float, keep: torch.Tensor | None = None) -> torch.Tensor:
    """The same in plain PyTorch; `keep` is the dropout mask to apply (default: none)."""
    gate, up = gated.float().chunk(2, dim=-1)
    out = torch.nn.functional.gelu(gate) * up
    if keep is not None:
        out = torch.where(keep, out / (1 - p), 0.0)
    return out.to(gated.dtype)
