"""Hidden dropout whose mask costs one Philox call per eight values, for Inductor to fuse around.

In the compiled encoder the dropout before each attention-output LayerNorm is Inductor's. On an H200 that
LayerNorm's forward kernel took 0.214 ms per call against 0.074 for the MLP's LayerNorm, which has no
dropout (session 12's profile); the cost is the random numbers: Triton's `tl.rand` computes a whole Philox
block (four 32-bit words, 10 rounds) for every value and keeps one word. With this module's mask the same
LayerNorm takes 0.102 ms and the mask kernel 0.020 ms (session 13's profile): the recipe's step +1.1%, the
model without GLU (whose MLP dropout changes too) +2.9%, time to accuracy alike (docs/performance.md).

`hidden_dropout(x, p)` draws the keep mask with a small Triton kernel instead (the GEGLU kernels' scheme,
src/fused_geglu.py: each 16-bit half of a Philox word decides one value, so one call decides eight) and
returns `where(keep, x * scale, 0)` in plain PyTorch, which Inductor fuses into the residual add and the
LayerNorm; autograd keeps the 1-byte mask for the backward as it does for torch's dropout. The seed is
drawn on the device by torch's generator, as the GEGLU kernels' is (seeded runs repeat their masks, the
host never waits, and a captured CUDA graph draws a new mask at each replay: checked on an H200 for the
GEGLU; for this kernel only indirectly, by the recipe's runs with cuda_graphs learning alike). The rate
dropped is the nearest multiple of 1/65536 to p and the kept values are scaled by its exact inverse, so
the expected value is kept.
"""
import hashlib

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from src.fused_geglu import _dropout_threshold_and_scale, _slot_keeps, runs_on

BLOCK = 1024  # values per slot; a program decides 8 slots from one Philox call per lane

# One registration per process and module copy (see src/fused_geglu.py).
_NAMESPACE = "mosaic_bert" if __name__ == "src.fused_dropout" else (
    "mosaic_bert_" + hashlib.sha1(__name__.encode()).hexdigest()[:12])


@triton.jit
def _keep_mask_kernel(SEED, KEEP, n_elements, threshold, BLOCK: tl.constexpr):
    seed = tl.load(SEED)
    lanes = tl.arange(0, BLOCK)
    program = tl.program_id(0)
    zeros = lanes * 0
    r0, r1, r2, r3 = tl.philox(seed, lanes, program + zeros, zeros, zeros)
    first = program.to(tl.int64) * 8 * BLOCK
    for slot in tl.static_range(8):
        offsets = first + slot * BLOCK + lanes
        tl.store(KEEP + offsets, _slot_keeps(r0, r1, r2, r3, threshold, slot), mask=offsets < n_elements)


@torch.library.custom_op(f"{_NAMESPACE}::dropout_keep_mask", mutates_args=())
def _keep_mask(like: torch.Tensor, threshold: int) -> torch.Tensor:
    """A bool tensor shaped as `like`: true where a value's 16 random bits are at least `threshold`."""
    keep = torch.empty(like.shape, dtype=torch.bool, device=like.device)
    n_elements = keep.numel()
    if n_elements:
        seed = torch.randint(0, 2**31 - 1, (1,), dtype=torch.int64, device=like.device)
        grid = (triton.cdiv(n_elements, 8 * BLOCK),)
        _keep_mask_kernel[grid](seed, keep, n_elements, threshold, BLOCK=BLOCK)
    return keep


@_keep_mask.register_fake
def _(like: torch.Tensor, threshold: int) -> torch.Tensor:
    return torch.empty(like.shape, dtype=torch.bool, device=like.device)


def hidden_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Dropout at rate p (the nearest multiple of 1/65536) when training; torch's dropout where the kernel
    cannot run (a CPU tensor outside Triton's interpreter)."""
    if not training or p == 0.0:
        return x
    if not runs_on(x):
        return F.dropout(x, p, training=True)
    threshold, scale = _dropout_threshold_and_scale(p)
    if threshold >= 65536:
        return torch.zeros_like(x)
    return torch.where(_keep_mask(x, threshold), x * scale, 0.0)
