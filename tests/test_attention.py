import logging
import math
from pathlib import Path

import pytest
import torch

from src.attention import alibi_slopes, attention

KERNEL_FILE = Path(__file__).resolve().parent.parent / "src" / "flash_attn_triton.py"

# Press et al.'s slopes, written out. n = 2^k: 2^(-8i/n), i = 1..n. Otherwise the closest power of two
# p's slopes, then every other slope (the 1st, 3rd, ...) of the 2p sequence.
EXPECTED_SLOPES = {
    8: [2**-1, 2**-2, 2**-3, 2**-4, 2**-5, 2**-6, 2**-7, 2**-8],
    16: [
        0.7071067811865476, 0.5, 0.3535533905932738, 0.25, 0.17677669529663687, 0.125, 0.08838834764831845,
        0.0625, 0.04419417382415922, 0.03125, 0.02209708691207961, 0.015625, 0.011048543456039806, 0.0078125,
        0.005524271728019903, 0.00390625,
    ],
    12: [
        0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625, 0.0078125, 0.00390625,
        0.7071067811865476, 0.3535533905932738, 0.17677669529663687, 0.08838834764831845,
    ],
    6: [0.25, 0.0625, 0.015625, 0.00390625, 0.5, 0.125],
}


@pytest.mark.parametrize("n_heads", sorted(EXPECTED_SLOPES))
def test_alibi_slopes_match_published_formula(n_heads):
    slopes = alibi_slopes(n_heads)
    assert slopes.dtype == torch.float32
    torch.testing.assert_close(slopes, torch.tensor(EXPECTED_SLOPES[n_heads]), rtol=1e-7, atol=0)


def naive_attention(qkv, seqlens, slopes):
    """One sequence at a time in float64: softmax(q k^T / sqrt(d) - slope * |i - j|) v."""
    outputs, start = [], 0
    for length in seqlens:
        q, k, v = qkv[start:start + length].double().unbind(1)  # (L, H, D)
        scores = torch.einsum("ihd,jhd->hij", q, k) / math.sqrt(q.shape[-1])
        if slopes is not None:
            positions = torch.arange(length, dtype=torch.float64)
            scores = scores - slopes.double()[:, None, None] * (positions[:, None] - positions[None, :]).abs()
        outputs.append(torch.einsum("hij,jhd->ihd", scores.softmax(dim=-1), v))
        start += length
    return torch.cat(outputs)


def _problem(n_heads=3, head_dim=32, seqlens=(5, 1, 17, 9)):
    torch.manual_seed(0)
    qkv = torch.randn(sum(seqlens), 3, n_heads, head_dim)
    cu_seqlens = torch.tensor([0, *torch.tensor(seqlens).cumsum(0).tolist()], dtype=torch.int32)
    return qkv, cu_seqlens, max(seqlens), list(seqlens)


def _backends():
    triton = pytest.param(
        "triton",
        marks=pytest.mark.skipif(not KERNEL_FILE.exists(), reason="src/flash_attn_triton.py is not there"),
    )
    return ["torch", "sdpa", triton]


@pytest.mark.parametrize("with_alibi", [True, False], ids=["alibi", "no_bias"])
@pytest.mark.parametrize("backend", _backends())
def test_backend_matches_naive_float64_attention(backend, with_alibi):
    qkv, cu_seqlens, max_seqlen, seqlens = _problem()
    slopes = alibi_slopes(3) if with_alibi else None
    qkv.requires_grad_(True)
    out = attention(qkv, cu_seqlens, max_seqlen, slopes, 0.0, backend)

    reference_qkv = qkv.detach().double().requires_grad_(True)
    reference = naive_attention(reference_qkv, seqlens, slopes)
    assert out.shape == (sum(seqlens), 3, 32) and out.dtype == torch.float32
    torch.testing.assert_close(out.double(), reference, rtol=0, atol=2e-6)

    upstream = torch.randn_like(reference)
    out.backward(upstream.float())
    reference.backward(upstream)
    torch.testing.assert_close(qkv.grad.double(), reference_qkv.grad, rtol=0, atol=1e-5)


def test_auto_uses_sdpa_on_cpu_and_says_why(caplog):
    import src.attention

    src.attention._log_once.cache_clear()  # said once per process: an earlier test may have said it already
    qkv, cu_seqlens, max_seqlen, seqlens = _problem()
    with caplog.at_level(logging.INFO, logger="src.attention"):
        out = attention(qkv, cu_seqlens, max_seqlen, alibi_slopes(3), 0.0, "auto")
    torch.testing.assert_close(out, attention(qkv, cu_seqlens, max_seqlen, alibi_slopes(3), 0.0, "sdpa"))
    expected = "attention backend 'auto' uses 'sdpa': inputs are on cpu, the Triton kernel needs CUDA."
    assert expected in caplog.text


def test_attention_dropout_is_applied_by_padded_backends():
    qkv, cu_seqlens, max_seqlen, _ = _problem()
    for backend in ("torch", "sdpa"):
        without = attention(qkv, cu_seqlens, max_seqlen, alibi_slopes(3), 0.0, backend)
        with_dropout = attention(qkv, cu_seqlens, max_seqlen, alibi_slopes(3), 0.5, backend)
        assert not torch.allclose(without, with_dropout)


def test_triton_backend_refuses_dropout():
    qkv, cu_seqlens, max_seqlen, _ = _problem()
    with pytest.raises(ValueError, match="'triton' has no attention dropout"):
        attention(qkv, cu_seqlens, max_seqlen, alibi_slopes(3), 0.1, "triton")


def test_unknown_backend_names_the_valid_ones():
    qkv, cu_seqlens, max_seqlen, _ = _problem()
    with pytest.raises(ValueError, match=r"Unknown attention backend 'flash'; choose one of \('auto', "):
        attention(qkv, cu_seqlens, max_seqlen, None, 0.0, "flash")
