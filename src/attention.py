"""Bidirectional multi-head attention with ALiBi on unpadded sequences, behind one function.

Layout (docs/ARCHITECTURE.md): `qkv` is `(total_tokens, 3, n_heads, head_dim)`, `cu_seqlens` int32
`(batch + 1,)`, `max_seqlen` a Python int. The ALiBi bias is `-slope_h * |i - j|` (Press et al., 2021),
symmetric because BERT attends both ways.

Backends, all computing the same function:
- `torch`: the reference. Pads to `(batch, max_seqlen)` and spells out softmax(q k^T * scale + bias) v,
  softmax in float32. Correct on any device and dtype, and the slowest.
- `sdpa`: the same padded problem through `torch.nn.functional.scaled_dot_product_attention`, with the
  ALiBi and padding folded into one float bias. Fast and available everywhere PyTorch is.
- `triton`: `src/flash_attn_triton.flash_attn_varlen_alibi`, FlashAttention on the unpadded tokens with
  the bias computed in the kernel: no padding, no bias tensor. It has no attention dropout.
- `auto`: `triton` on CUDA when `dropout_p == 0`, the kernel imports and takes this head_dim (32, 64,
  128), otherwise `sdpa`; the choice and its reason are logged once.
"""
import functools
import logging
import math

import torch
import torch.nn.functional as F

from src.bert_padding import attention_mask_from_cu_seqlens, nonzero_of_known_count, pad_input

log = logging.getLogger(__name__)

ATTENTION_BACKENDS = ("auto", "triton", "sdpa", "torch")


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """ALiBi's per-head slopes (Press et al., 2021), float32 `(n_heads,)`.

    For a power of two `n`, the geometric sequence 2^(-8/n), 2^(-16/n), ..., 2^(-8). Otherwise the slopes
    of the closest smaller power of two `p`, then the odd-numbered ones (1st, 3rd, ...) of the `2p`
    sequence, which fall between them, until there are `n`.
    """
    closest = 2 ** math.floor(math.log2(n_heads))
    slopes = [2 ** (-8 * i / closest) for i in range(1, closest + 1)]
    slopes += [2 ** (-8 * i / (2 * closest)) for i in range(1, 2 * (n_heads - closest), 2)]
    return torch.tensor(slopes, dtype=torch.float32)


def attention(
    qkv: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_seqlen: int,
    alibi_slopes: torch.Tensor | None,
    dropout_p: float,
    backend: str,
) -> torch.Tensor:
    """Self-attention of each sequence with itself; returns `(total_tokens, n_heads, head_dim)`.

    `alibi_slopes` is `(n_heads,)` float32, or None for no positional bias. `dropout_p` is the attention
    dropout to apply now (pass 0.0 in eval mode). `backend` is one of `ATTENTION_BACKENDS`.
    """
    backend = resolve_backend(backend, qkv.device, qkv.shape[-1], dropout_p)
    softmax_scale = 1.0 / math.sqrt(qkv.shape[-1])
    if backend == "triton":
        if dropout_p > 0:
            raise ValueError(
                f"attention backend 'triton' has no attention dropout (got dropout_p={dropout_p}): set "
                "attention_probs_dropout_prob to 0.0, or use attention_backend 'sdpa' or 'auto'."
            )
        return _triton_attention(qkv, cu_seqlens, max_seqlen, alibi_slopes, softmax_scale)
    return _padded_attention(
        qkv, cu_seqlens, max_seqlen, alibi_slopes, dropout_p, softmax_scale, use_sdpa=backend == "sdpa"
    )


def resolve_backend(backend: str, device: torch.device, head_dim: int, dropout_p: float) -> str:
    """The backend `attention` runs for `backend` on this device, head_dim and dropout: `auto` resolved.

    Called inside `attention`; a caller about to compile a region that contains attention calls it
    first and passes the answer, so the compiled code holds no choice (nor its logging) to trace.
    """
    if backend not in ATTENTION_BACKENDS:
        raise ValueError(f"Unknown attention backend {backend!r}; choose one of {ATTENTION_BACKENDS}.")
    if backend != "auto":
        return backend
    is_cuda = device.type == "cuda"
    kernel, import_error = load_triton_kernel() if is_cuda else (None, None)
    level = logging.INFO
    if not is_cuda:
        choice, reason = "sdpa", f"inputs are on {device.type}, the Triton kernel needs CUDA"
    elif dropout_p > 0:
        choice, reason = "sdpa", f"attention dropout is {dropout_p} and the Triton kernel has none"
    elif kernel is None:
        # On a GPU this costs speed, so it is said louder.
        choice, reason, level = "sdpa", f"the Triton kernel does not import ({import_error})", logging.WARNING
    elif head_dim not in kernel.HEAD_DIMS:
        choice = "sdpa"
        reason = f"the Triton kernel takes head_dim in {kernel.HEAD_DIMS}, not {head_dim}"
    else:
        choice, reason = "triton", "on CUDA with no attention dropout"
    _log_once(level, f"attention backend 'auto' uses '{choice}': {reason}.")
    return choice


@functools.cache
def _log_once(level: int, message: str) -> None:
    log.log(level, message)


@functools.cache
def load_triton_kernel():
    """`(src.flash_attn_triton, None)`, or `(None, the ImportError)`; imported once, failure included
    (auto asks on every call).

    Only ImportError counts as "not available": a kernel module that is broken otherwise raises.
    """
    try:
        import src.flash_attn_triton as kernel
    except ImportError as error:
        return None, error
    return kernel, None


def _triton_kernel():
    kernel, error = load_triton_kernel()
    if kernel is None:
        raise ImportError(
            f"attention backend 'triton' needs src/flash_attn_triton.py and Triton, and importing it failed: "
            f"{error}. Use attention_backend 'sdpa' (or 'auto', which falls back to it)."
        ) from error
    return kernel


# The kernels are `torch.library.triton_op`s: inside a compiled region they become part of the graph.
def _triton_attention(qkv, cu_seqlens, max_seqlen, alibi_slopes, softmax_scale):
    return _triton_kernel().flash_attn_varlen_alibi(qkv, cu_seqlens, max_seqlen, alibi_slopes, softmax_scale)


def _padded_attention(
    qkv: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_seqlen: int,
    slopes: torch.Tensor | None,
    dropout_p: float,
    softmax_scale: float,
    use_sdpa: bool,
) -> torch.Tensor:
    """The `torch` and `sdpa` backends: pad, attend over (batch, heads, L, L), drop the padding again."""
    batch = cu_seqlens.numel() - 1
    mask = attention_mask_from_cu_seqlens(cu_seqlens, max_seqlen)
    # The mask has one nonzero per real token: knowing the count spares a wait for the GPU (and lets
    # torch.compile trace this without a data-dependent size).
    indices = nonzero_of_known_count(mask.flatten(), qkv.shape[0])
    q, k, v = pad_input(qkv, indices, batch, max_seqlen).permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, L, D)
    if use_sdpa:
        bias = _alibi_padding_bias(slopes, mask, q.dtype)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias, dropout_p=dropout_p, scale=softmax_scale
        )
    else:
        bias = _alibi_padding_bias(slopes, mask, torch.float32)
        scores = torch.matmul(q, k.transpose(-1, -2)).float() * softmax_scale + bias
        probs = F.dropout(torch.softmax(scores, dim=-1), p=dropout_p).to(v.dtype)
        out = torch.matmul(probs, v)
    return out.transpose(1, 2).flatten(0, 1).index_select(0, indices)  # (total_tokens, H, D)


def _alibi_padding_bias(slopes: torch.Tensor | None, mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Bias (batch, heads or 1, L, L) in `dtype`: -slope * |i - j|, and a large negative value at padded keys.

    Padded keys get the most negative finite value of `dtype` rather than -inf, so that a sequence with
    no tokens gives a uniform (finite) softmax instead of NaNs.
    """
    if slopes is None:
        alibi = torch.zeros(1, 1, 1, device=mask.device)
    else:
        positions = torch.arange(mask.shape[1], device=mask.device)
        distance = (positions[None, :] - positions[:, None]).abs()
        alibi = -slopes.to(mask.device, torch.float32)[:, None, None] * distance
    padded_keys = ~mask[:, None, None, :]
    return alibi.unsqueeze(0).to(dtype).masked_fill(padded_keys, torch.finfo(dtype).min)
