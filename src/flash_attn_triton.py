"""FlashAttention-2 in Triton for unpadded (variable-length) bidirectional attention with ALiBi.

Mosaic BERT keeps its tokens unpadded: `qkv` is `(total_tokens, 3, n_heads, head_dim)` and
`cu_seqlens` (int32, `(batch + 1,)`) marks where each sequence starts. Every sequence attends only to
itself, in both directions, with the ALiBi bias `-slope_h * |i - j|` added to the scores; the bias is
computed inside the kernels, so no `(batch, heads, L, L)` tensor ever exists.

Kernels:
  _short_fwd_kernel,      max_seqlen <= 128: one program per (sequence, group of heads), the whole
  _short_bwd_kernel       sequence one tile; the backward computes dQ, dK, dV in one pass
  _block_table_kernel     longer: lists the (sequence, first row) of every block of every sequence,
                          longest sequences first, so no program is spent on padding
  _fwd_kernel             output and log-sum-exp (base 2), one program per (query block, head)
  _bwd_dq_kernel          delta = rowsum(dO * O) and dQ, one program per (query block, head)
  _bwd_dkdv_kernel        dK, dV, one program per (key block, head); no atomics anywhere

Scores are kept in base 2: `softmax_scale * log2(e)` and `slope * log2(e)` are folded in, so the
kernels use exp2. Accumulation is fp32 whatever the input dtype (bf16 and fp16 on the GPU; fp32 and
fp16 under TRITON_INTERPRET=1).

`flash_attn_varlen_alibi_reference` is the plain-PyTorch twin (one sequence at a time).
docs/attention_kernel.md has the design notes, the measured tables and what limits each kernel.
"""
import hashlib
import math
from dataclasses import astuple, dataclass, fields
from typing import Optional

import torch
import triton
import triton.language as tl
from torch.library import triton_op, wrap_triton

LOG2E = 1.4426950408889634
HEAD_DIMS = (32, 64, 128)
# Batches whose sequences all fit in one tile of this many tokens take the short kernels; there,
# sequences of at most SHORT_SMALL_BLOCK tokens take a tile of that size.
SHORT_MAX_SEQLEN = 128
SHORT_SMALL_BLOCK = 32


@dataclass(frozen=True)
class KernelConfig:
    block_m: int  # query rows per block
    block_n: int  # key rows per block
    num_warps: int
    num_stages: int


@dataclass(frozen=True)
class ShortKernelConfig:
    heads_per_program: int
    num_warps: int
    num_stages: int
    query_block: int = 0  # backward only: queries per step of its loop over the tile (0: the whole tile)


@dataclass(frozen=True)
class AttentionConfig:
    forward: KernelConfig
    backward_dq: KernelConfig  # programs per query block; loops over key blocks
    backward_dkdv: KernelConfig  # programs per key block; loops over query blocks
    short_forward: ShortKernelConfig  # max_seqlen <= SHORT_MAX_SEQLEN: sequences > SHORT_SMALL_BLOCK
    short_backward: ShortKernelConfig
    small_forward: ShortKernelConfig  # sequences <= SHORT_SMALL_BLOCK
    small_backward: ShortKernelConfig


# Chosen on one H200 (Triton 3.6, bf16, 12 heads, 32k tokens) with benchmarks/attention.py --tune, one
# kernel varied at a time: head_dim 64 at max_seqlen 512 and 2048, head_dim 128 at 2048 (3 candidates
# each). head_dim 32 copies 64, unmeasured. The short kernels of head_dim 64 (the recipe's) from session
# 18's sweep, each kernel replayed from a CUDA graph (session18_attention_tune_128.md): forward 8 warps
# (0.087 against 0.094 ms per layer on full-length batches, 0.107 against 0.116 on lengths 64-128), backward
# 2 stages (0.246 against 0.265 full length, equal on 64-128); their outputs are bit-identical to the
# previous configs'. The other short configs are the spill-free ones of the sm_90 compiler report.
# docs/attention_kernel.md.
_S = ShortKernelConfig
_LONG = {  # (forward, backward_dq, backward_dkdv) for max_seqlen <= 1024, and beyond
    (32, 1024): (KernelConfig(64, 32, 4, 3), KernelConfig(64, 64, 4, 2), KernelConfig(32, 64, 4, 3)),
    (32, None): (KernelConfig(64, 64, 4, 3), KernelConfig(64, 64, 4, 2), KernelConfig(32, 64, 4, 3)),
    (64, 1024): (KernelConfig(64, 32, 4, 3), KernelConfig(64, 64, 4, 2), KernelConfig(32, 64, 4, 3)),
    (64, None): (KernelConfig(64, 64, 4, 3), KernelConfig(64, 64, 4, 2), KernelConfig(32, 64, 4, 3)),
    (128, 1024): (KernelConfig(128, 64, 8, 3), KernelConfig(64, 64, 4, 2), KernelConfig(64, 64, 4, 2)),
    (128, None): (KernelConfig(128, 64, 8, 3), KernelConfig(64, 64, 4, 2), KernelConfig(64, 64, 4, 2)),
}
_SHORT = {  # (short_forward, short_backward, small_forward, small_backward)
    32: (_S(1, 4, 1), _S(1, 4, 1), _S(2, 4, 2), _S(2, 4, 2)),
    64: (_S(1, 8, 1), _S(1, 8, 2), _S(2, 4, 2), _S(2, 4, 2)),
    128: (_S(1, 8, 1), _S(1, 8, 1), _S(2, 4, 2), _S(2, 4, 2)),
}
# Under the interpreter: small blocks, so that short test sequences span several blocks and the
# short kernels run for max_seqlen <= 32 (tiles of 16 and 32 rows; 1, 2 or 3 heads per program).
_K16 = KernelConfig(16, 32, 1, 1)
_INTERPRETER = AttentionConfig(_K16, _K16, _K16, _S(1, 1, 1), _S(3, 1, 1, 8), _S(2, 1, 1), _S(1, 1, 1))
_INTERPRETER_SHORT_MAX, _INTERPRETER_SHORT_SMALL = 32, 16


def _next_power_of_2(n: int, lo: int = 16) -> int:
    return max(lo, triton.next_power_of_2(n))


def _short_tiles(max_seqlen: int, device: torch.device):
    """(tile, small tile) of the short kernels, or None if max_seqlen is too long for them."""
    cuda = device.type == "cuda"
    if max_seqlen > (SHORT_MAX_SEQLEN if cuda else _INTERPRETER_SHORT_MAX):
        return None
    block = _next_power_of_2(max_seqlen)
    return block, min(block, SHORT_SMALL_BLOCK if cuda else _INTERPRETER_SHORT_SMALL)


def select_config(head_dim: int, max_seqlen: int, device: torch.device) -> AttentionConfig:
    """Block sizes, warps and stages for one call; depends on max_seqlen only through its bucket."""
    if device.type != "cuda":
        return _INTERPRETER
    return AttentionConfig(*_LONG[(head_dim, 1024 if max_seqlen <= 1024 else None)], *_SHORT[head_dim])


def _alloc(shape, dtype, device) -> torch.Tensor:
    """Every buffer the kernels write comes from here (the tests fill it with NaN instead)."""
    return torch.empty(shape, dtype=dtype, device=device)


# ----------------------------------------------------------------------------------------------
# Work list: which (sequence, block) each program handles.


@triton.jit(do_not_specialize=["n_seqs", "n_entries", "max_blocks"])
def _block_table_kernel(CU_SEQLENS, ORDER, TABLE, n_seqs, n_entries, max_blocks,
                        BLOCK: tl.constexpr, CHUNK: tl.constexpr):
    """TABLE[e] = (sequence, first row) of the e-th block; sequences in ORDER, then (-1, 0) pads."""
    base = tl.sum(tl.zeros([CHUNK], dtype=tl.int32), axis=0)
    for c in range(0, n_seqs, CHUNK):
        i = c + tl.arange(0, CHUNK)
        valid = i < n_seqs
        seq = tl.load(ORDER + i, mask=valid, other=0)
        start = tl.load(CU_SEQLENS + seq, mask=valid, other=0)
        length = tl.load(CU_SEQLENS + seq + 1, mask=valid, other=0) - start
        n_blocks = (length + BLOCK - 1) // BLOCK
        first = base + tl.cumsum(n_blocks, axis=0) - n_blocks
        for j in range(0, max_blocks):
            take = valid & (j < n_blocks)
            tl.store(TABLE + 2 * (first + j), seq, mask=take)
            tl.store(TABLE + 2 * (first + j) + 1, j * BLOCK + tl.zeros_like(seq), mask=take)
        base += tl.sum(n_blocks, axis=0)
    for e0 in range(base, n_entries, CHUNK):
        e = e0 + tl.arange(0, CHUNK)
        pad = tl.full([CHUNK], -1, dtype=tl.int32)
        tl.store(TABLE + 2 * e, pad, mask=e < n_entries)
        tl.store(TABLE + 2 * e + 1, pad * 0, mask=e < n_entries)


class _Schedule:
    """Block tables for one batch, built on the device (no host sync) and shared by fwd and bwd."""

    def __init__(self, cu_seqlens: torch.Tensor, max_seqlen: int, total_tokens: int):
        self.cu_seqlens = cu_seqlens
        self.max_seqlen = max_seqlen
        self.short_tiles = _short_tiles(max_seqlen, cu_seqlens.device)
        self.total_tokens = total_tokens
        self.n_seqs = cu_seqlens.numel() - 1
        self._order = None
        self._tables = {}

    def table(self, block: int) -> torch.Tensor:
        """(n_entries, 2) int32; n_entries >= sum_i ceil(L_i / block); longest sequences first."""
        if block not in self._tables:
            if self._order is None:
                lengths = self.cu_seqlens[1:] - self.cu_seqlens[:-1]
                self._order = torch.argsort(lengths, descending=True).to(torch.int32)
            n_entries = triton.cdiv(self.total_tokens, block) + self.n_seqs
            table = _alloc((n_entries, 2), torch.int32, self.cu_seqlens.device)
            wrap_triton(_block_table_kernel)[(1,)](
                self.cu_seqlens, self._order, table, self.n_seqs, n_entries, triton.cdiv(self.max_seqlen, block),
                BLOCK=block, CHUNK=1024)
            self._tables[block] = table
        return self._tables[block]

    def grid(self, block: int, n_heads: int):
        """(table or None, number of programs). No table when every sequence is one block."""
        if self.max_seqlen <= block:
            return None, self.n_seqs * n_heads
        table = self.table(block)
        return table, table.shape[0] * n_heads


# Inductor decides which tensors a user kernel writes from its Triton IR, before inlining: it follows
# each store's address back through the ops that computed it, stopping at loads, and through a helper
# call to every argument of that call. An address computed from a helper's result would therefore count
# the helper's arguments as written, and cu_seqlens (an input of the compiled encoder) as mutated, which
# makes Inductor copy it and refuse CUDA graphs. So the kernels load what their store addresses depend
# on (a sequence's first token, a block's first row) themselves; `_locate` gives only what no address
# depends on. tests/test_flash_attn_triton.py checks the analysis.
@triton.jit
def _locate(TABLE, CU_SEQLENS, entry, USE_TABLE: tl.constexpr):
    """(sequence, its length) of a work-list entry; pads (sequence -1) get sequence 0 and length 0."""
    seq = tl.load(TABLE + 2 * entry) if USE_TABLE else entry
    seq_ok = seq >= 0
    seq = tl.where(seq_ok, seq, 0)
    length = tl.where(seq_ok, tl.load(CU_SEQLENS + seq + 1) - tl.load(CU_SEQLENS + seq), 0)
    return seq, length


# Scale arguments are cast to float32 where they are used (`tl.cast`): Triton's own launcher passes a
# Python float as fp32, but Inductor, launching these kernels from a compiled graph, types it fp64, and
# fp64 scores made the forward 8x slower on an H200 (docs/performance.md, session 7).
@triton.jit
def _scores(q, k, qk_scale, slope2, rows, cols, HAS_ALIBI: tl.constexpr):
    """Base-2 scores of a (rows x cols) tile: q k^T * scale * log2(e) - slope * log2(e) * |i - j|."""
    s = tl.dot(q, tl.trans(k)) * tl.cast(qk_scale, tl.float32)
    if HAS_ALIBI:
        dist = tl.abs(rows.to(tl.float32)[:, None] - cols.to(tl.float32)[None, :])
        s = s - slope2 * dist
    return s


# ----------------------------------------------------------------------------------------------
# Short sequences (max_seqlen <= SHORT_MAX_SEQLEN): the whole sequence is one tile, so there is no
# online softmax and the backward needs no recomputation. One program per (sequence, group of heads)
# loops over its heads; with num_stages > 1 the loop is software-pipelined, so the next head's loads
# overlap this head's math (one tile alone is a chain of dependent latencies). Sequences of at most
# SHORT_SMALL_BLOCK tokens are a separate launch with a small tile, so that their many cheap programs
# get the occupancy of a small kernel.


@triton.jit
def _short_fwd_tile(QKV, O, LSE, SLOPES, start, length, h0, h1, qk_scale, NUM_HEADS: tl.constexpr,
                    HEAD_DIM: tl.constexpr, HAS_ALIBI: tl.constexpr, BLOCK: tl.constexpr):
    STRIDE_T: tl.constexpr = 3 * NUM_HEADS * HEAD_DIM
    STRIDE_O: tl.constexpr = NUM_HEADS * HEAD_DIM
    rows = tl.arange(0, BLOCK)
    offs_d = tl.arange(0, HEAD_DIM)
    ok = rows < length
    x_off = rows[:, None] * STRIDE_T + offs_d[None, :]
    o_off = rows[:, None] * STRIDE_O + offs_d[None, :]
    QKV += start * STRIDE_T
    O += start * STRIDE_O
    LSE += start * NUM_HEADS + rows * NUM_HEADS
    for head in range(h0, h1):
        q = tl.load(QKV + head * HEAD_DIM + x_off, mask=ok[:, None], other=0.0)
        k = tl.load(QKV + (NUM_HEADS + head) * HEAD_DIM + x_off, mask=ok[:, None], other=0.0)
        v = tl.load(QKV + (2 * NUM_HEADS + head) * HEAD_DIM + x_off, mask=ok[:, None], other=0.0)
        slope2 = 0.0
        if HAS_ALIBI:
            slope2 = tl.load(SLOPES + head) * 1.4426950408889634
        s = _scores(q, k, qk_scale, slope2, rows, rows, HAS_ALIBI)
        s = tl.where(ok[None, :], s, float("-inf"))
        m = tl.max(s, axis=1)
        p = tl.exp2(s - m[:, None])
        l = tl.sum(p, axis=1)
        o = tl.dot(p.to(v.dtype), v) / l[:, None]
        tl.store(O + head * HEAD_DIM + o_off, o.to(O.dtype.element_ty), mask=ok[:, None])
        tl.store(LSE + head, m + tl.log2(l), mask=ok)


@triton.jit
def _short_fwd_kernel(QKV, O, LSE, CU_SEQLENS, SLOPES, qk_scale, NUM_HEADS: tl.constexpr,
                      HEAD_DIM: tl.constexpr, HAS_ALIBI: tl.constexpr, HEADS_PER_PROGRAM: tl.constexpr,
                      BLOCK: tl.constexpr, MIN_LENGTH: tl.constexpr):
    """Sequences with MIN_LENGTH < length <= BLOCK; the others are another launch's."""
    GROUPS: tl.constexpr = (NUM_HEADS + HEADS_PER_PROGRAM - 1) // HEADS_PER_PROGRAM
    pid = tl.program_id(0)
    h0 = (pid % GROUPS) * HEADS_PER_PROGRAM
    h1 = tl.minimum(h0 + HEADS_PER_PROGRAM, NUM_HEADS)
    seq, length = _locate(CU_SEQLENS, CU_SEQLENS, pid // GROUPS, False)
    start = tl.load(CU_SEQLENS + seq).to(tl.int64)
    if length > MIN_LENGTH:
        _short_fwd_tile(QKV, O, LSE, SLOPES, start, length, h0, h1, qk_scale, NUM_HEADS, HEAD_DIM,
                        HAS_ALIBI, BLOCK)


@triton.jit
def _short_bwd_tile(QKV, O, DO, DQKV, LSE, SLOPES, start, length, h0, h1, qk_scale, sm_scale,
                    NUM_HEADS: tl.constexpr, HEAD_DIM: tl.constexpr, HAS_ALIBI: tl.constexpr,
                    BLOCK: tl.constexpr, QUERY_BLOCK: tl.constexpr):
    """dQ, dK, dV of one sequence. The keys are the whole tile; the queries come QUERY_BLOCK rows at a
    time (each block's dQ is complete, dK and dV add up over the blocks), so a smaller QUERY_BLOCK keeps
    smaller score tiles in registers."""
    STRIDE_T: tl.constexpr = 3 * NUM_HEADS * HEAD_DIM
    STRIDE_O: tl.constexpr = NUM_HEADS * HEAD_DIM
    keys = tl.arange(0, BLOCK)
    offs_d = tl.arange(0, HEAD_DIM)
    key_ok = keys < length
    key_off = keys[:, None] * STRIDE_T + offs_d[None, :]
    QKV += start * STRIDE_T
    DQKV += start * STRIDE_T
    O += start * STRIDE_O
    DO += start * STRIDE_O
    LSE += start * NUM_HEADS
    for head in range(h0, h1):
        k = tl.load(QKV + (NUM_HEADS + head) * HEAD_DIM + key_off, mask=key_ok[:, None], other=0.0)
        v = tl.load(QKV + (2 * NUM_HEADS + head) * HEAD_DIM + key_off, mask=key_ok[:, None], other=0.0)
        slope2 = 0.0
        if HAS_ALIBI:
            slope2 = tl.load(SLOPES + head) * 1.4426950408889634
        dk = tl.zeros((BLOCK, HEAD_DIM), dtype=tl.float32)
        dv = tl.zeros((BLOCK, HEAD_DIM), dtype=tl.float32)
        for first in tl.static_range(0, BLOCK, QUERY_BLOCK):
            queries = first + tl.arange(0, QUERY_BLOCK)
            ok = queries < length
            q_off = queries[:, None] * STRIDE_T + offs_d[None, :]
            o_off = queries[:, None] * STRIDE_O + offs_d[None, :]
            q = tl.load(QKV + head * HEAD_DIM + q_off, mask=ok[:, None], other=0.0)
            o = tl.load(O + head * HEAD_DIM + o_off, mask=ok[:, None], other=0.0)
            do = tl.load(DO + head * HEAD_DIM + o_off, mask=ok[:, None], other=0.0)
            lse = tl.load(LSE + queries * NUM_HEADS + head, mask=ok, other=float("inf"))
            delta = tl.sum(do.to(tl.float32) * o.to(tl.float32), axis=1)
            # Keys x queries: only dQ needs a transposed operand. Padding keys and queries get P = 0.
            st = _scores(k, q, qk_scale, slope2, keys, queries, HAS_ALIBI)
            pt = tl.where(key_ok[:, None], tl.exp2(st - lse[None, :]), 0.0)
            dv += tl.dot(pt.to(do.dtype), do)
            dpt = tl.dot(v, tl.trans(do))
            dst = (pt * (dpt - delta[None, :])).to(q.dtype)
            dk += tl.dot(dst, q)
            dq = tl.dot(tl.trans(dst), k) * tl.cast(sm_scale, tl.float32)
            tl.store(DQKV + head * HEAD_DIM + q_off, dq.to(DQKV.dtype.element_ty), mask=ok[:, None])
        dk *= tl.cast(sm_scale, tl.float32)
        tl.store(DQKV + (NUM_HEADS + head) * HEAD_DIM + key_off, dk.to(DQKV.dtype.element_ty),
                 mask=key_ok[:, None])
        tl.store(DQKV + (2 * NUM_HEADS + head) * HEAD_DIM + key_off, dv.to(DQKV.dtype.element_ty),
                 mask=key_ok[:, None])


@triton.jit
def _short_bwd_kernel(QKV, O, DO, DQKV, LSE, CU_SEQLENS, SLOPES, qk_scale, sm_scale,
                      NUM_HEADS: tl.constexpr, HEAD_DIM: tl.constexpr, HAS_ALIBI: tl.constexpr,
                      HEADS_PER_PROGRAM: tl.constexpr, BLOCK: tl.constexpr, MIN_LENGTH: tl.constexpr,
                      QUERY_BLOCK: tl.constexpr):
    """Sequences with MIN_LENGTH < length <= BLOCK; the others are another launch's."""
    GROUPS: tl.constexpr = (NUM_HEADS + HEADS_PER_PROGRAM - 1) // HEADS_PER_PROGRAM
    pid = tl.program_id(0)
    h0 = (pid % GROUPS) * HEADS_PER_PROGRAM
    h1 = tl.minimum(h0 + HEADS_PER_PROGRAM, NUM_HEADS)
    seq, length = _locate(CU_SEQLENS, CU_SEQLENS, pid // GROUPS, False)
    start = tl.load(CU_SEQLENS + seq).to(tl.int64)
    if length > MIN_LENGTH:
        _short_bwd_tile(QKV, O, DO, DQKV, LSE, SLOPES, start, length, h0, h1, qk_scale, sm_scale, NUM_HEADS,
                        HEAD_DIM, HAS_ALIBI, BLOCK, QUERY_BLOCK)


# ----------------------------------------------------------------------------------------------
# Forward.


@triton.jit
def _fwd_inner(acc, m_i, l_i, q, K, V, rows, n_lo, n_hi, length, qk_scale, slope2,
               STRIDE_T: tl.constexpr, HEAD_DIM: tl.constexpr, HAS_ALIBI: tl.constexpr,
               MASK_N: tl.constexpr, BLOCK_N: tl.constexpr):
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    for n0 in range(n_lo, n_hi, BLOCK_N):
        cols = n0 + offs_n
        kv_off = cols[:, None] * STRIDE_T + offs_d[None, :]
        if MASK_N:
            k = tl.load(K + kv_off, mask=(cols < length)[:, None], other=0.0)
            v = tl.load(V + kv_off, mask=(cols < length)[:, None], other=0.0)
        else:
            k = tl.load(K + kv_off)
            v = tl.load(V + kv_off)
        s = _scores(q, k, qk_scale, slope2, rows, cols, HAS_ALIBI)
        if MASK_N:
            s = tl.where((cols < length)[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        p = tl.exp2(s - m_new[:, None])
        alpha = tl.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None])
        m_i = m_new
    return acc, m_i, l_i


@triton.jit
def _fwd_kernel(QKV, O, LSE, CU_SEQLENS, TABLE, SLOPES, qk_scale,
                NUM_HEADS: tl.constexpr, HEAD_DIM: tl.constexpr, HAS_ALIBI: tl.constexpr,
                USE_TABLE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    STRIDE_T: tl.constexpr = 3 * NUM_HEADS * HEAD_DIM
    pid = tl.program_id(0)
    head = pid % NUM_HEADS
    seq, length = _locate(TABLE, CU_SEQLENS, pid // NUM_HEADS, USE_TABLE)
    start = tl.load(CU_SEQLENS + seq).to(tl.int64)
    m0 = tl.load(TABLE + 2 * (pid // NUM_HEADS) + 1) if USE_TABLE else 0
    if m0 < length:
        slope2 = 0.0
        if HAS_ALIBI:
            slope2 = tl.load(SLOPES + head) * 1.4426950408889634
        rows = m0 + tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, HEAD_DIM)
        row_ok = rows < length
        Q = QKV + start * STRIDE_T + head * HEAD_DIM
        K = Q + NUM_HEADS * HEAD_DIM
        V = K + NUM_HEADS * HEAD_DIM
        q = tl.load(Q + rows[:, None] * STRIDE_T + offs_d[None, :], mask=row_ok[:, None], other=0.0)
        acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
        m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
        l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
        n_full = (length // BLOCK_N) * BLOCK_N
        acc, m_i, l_i = _fwd_inner(acc, m_i, l_i, q, K, V, rows, 0, n_full, length, qk_scale, slope2,
                                   STRIDE_T, HEAD_DIM, HAS_ALIBI, False, BLOCK_N)
        acc, m_i, l_i = _fwd_inner(acc, m_i, l_i, q, K, V, rows, n_full, length, length, qk_scale,
                                   slope2, STRIDE_T, HEAD_DIM, HAS_ALIBI, True, BLOCK_N)
        acc = acc / l_i[:, None]
        O += start * (NUM_HEADS * HEAD_DIM) + head * HEAD_DIM
        tl.store(O + rows[:, None] * (NUM_HEADS * HEAD_DIM) + offs_d[None, :], acc.to(O.dtype.element_ty),
                 mask=row_ok[:, None])
        tl.store(LSE + start * NUM_HEADS + rows * NUM_HEADS + head, m_i + tl.log2(l_i), mask=row_ok)


# ----------------------------------------------------------------------------------------------
# Backward. With P = softmax(S), dP = dO V^T and delta = rowsum(dO * O):
#   dV = P^T dO,   dS = P * (dP - delta),   dQ = scale * dS K,   dK = scale * dS^T Q.


@triton.jit
def _bwd_dq_inner(dq, q, do, lse, delta, K, V, rows, n_lo, n_hi, length, qk_scale, slope2,
                  STRIDE_T: tl.constexpr, HEAD_DIM: tl.constexpr, HAS_ALIBI: tl.constexpr,
                  MASK_N: tl.constexpr, BLOCK_N: tl.constexpr):
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    for n0 in range(n_lo, n_hi, BLOCK_N):
        cols = n0 + offs_n
        kv_off = cols[:, None] * STRIDE_T + offs_d[None, :]
        if MASK_N:
            k = tl.load(K + kv_off, mask=(cols < length)[:, None], other=0.0)
            v = tl.load(V + kv_off, mask=(cols < length)[:, None], other=0.0)
        else:
            k = tl.load(K + kv_off)
            v = tl.load(V + kv_off)
        s = _scores(q, k, qk_scale, slope2, rows, cols, HAS_ALIBI)
        p = tl.exp2(s - lse[:, None])
        if MASK_N:
            p = tl.where((cols < length)[None, :], p, 0.0)
        dp = tl.dot(do, tl.trans(v))
        ds = p * (dp - delta[:, None])
        dq = tl.dot(ds.to(k.dtype), k, dq)
    return dq


@triton.jit
def _bwd_dq_kernel(QKV, O, DO, DQKV, LSE, DELTA, CU_SEQLENS, TABLE, SLOPES, qk_scale, sm_scale,
                   NUM_HEADS: tl.constexpr, HEAD_DIM: tl.constexpr, HAS_ALIBI: tl.constexpr,
                   USE_TABLE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """One program per (query block, head); also writes delta for _bwd_dkdv_kernel."""
    STRIDE_T: tl.constexpr = 3 * NUM_HEADS * HEAD_DIM
    STRIDE_O: tl.constexpr = NUM_HEADS * HEAD_DIM
    pid = tl.program_id(0)
    head = pid % NUM_HEADS
    seq, length = _locate(TABLE, CU_SEQLENS, pid // NUM_HEADS, USE_TABLE)
    start = tl.load(CU_SEQLENS + seq).to(tl.int64)
    m0 = tl.load(TABLE + 2 * (pid // NUM_HEADS) + 1) if USE_TABLE else 0
    if m0 < length:
        slope2 = 0.0
        if HAS_ALIBI:
            slope2 = tl.load(SLOPES + head) * 1.4426950408889634
        rows = m0 + tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, HEAD_DIM)
        row_ok = rows < length
        qkv_base = start * STRIDE_T + head * HEAD_DIM
        o_base = start * STRIDE_O + head * HEAD_DIM
        Q = QKV + qkv_base
        q_off = rows[:, None] * STRIDE_T + offs_d[None, :]
        o_off = rows[:, None] * STRIDE_O + offs_d[None, :]
        q = tl.load(Q + q_off, mask=row_ok[:, None], other=0.0)
        do = tl.load(DO + o_base + o_off, mask=row_ok[:, None], other=0.0)
        o = tl.load(O + o_base + o_off, mask=row_ok[:, None], other=0.0)
        delta = tl.sum(do.to(tl.float32) * o.to(tl.float32), axis=1)
        stat_off = start * NUM_HEADS + head + rows * NUM_HEADS
        tl.store(DELTA + stat_off, delta, mask=row_ok)
        lse = tl.load(LSE + stat_off, mask=row_ok, other=0.0)
        dq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
        n_full = (length // BLOCK_N) * BLOCK_N
        dq = _bwd_dq_inner(dq, q, do, lse, delta, Q + STRIDE_O, Q + 2 * STRIDE_O, rows, 0, n_full, length,
                           qk_scale, slope2, STRIDE_T, HEAD_DIM, HAS_ALIBI, False, BLOCK_N)
        dq = _bwd_dq_inner(dq, q, do, lse, delta, Q + STRIDE_O, Q + 2 * STRIDE_O, rows, n_full, length,
                           length, qk_scale, slope2, STRIDE_T, HEAD_DIM, HAS_ALIBI, True, BLOCK_N)
        dq = dq * tl.cast(sm_scale, tl.float32)
        tl.store(DQKV + qkv_base + q_off, dq.to(DQKV.dtype.element_ty), mask=row_ok[:, None])


@triton.jit
def _bwd_dkdv_inner(dk, dv, k, v, Q, DO, LSE, DELTA, cols, m_lo, m_hi, length, qk_scale, slope2,
                    NUM_HEADS: tl.constexpr, HEAD_DIM: tl.constexpr, HAS_ALIBI: tl.constexpr,
                    MASK_M: tl.constexpr, BLOCK_M: tl.constexpr):
    STRIDE_T: tl.constexpr = 3 * NUM_HEADS * HEAD_DIM
    STRIDE_O: tl.constexpr = NUM_HEADS * HEAD_DIM
    offs_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    for r0 in range(m_lo, m_hi, BLOCK_M):
        rows = r0 + offs_m
        q_off = rows[:, None] * STRIDE_T + offs_d[None, :]
        o_off = rows[:, None] * STRIDE_O + offs_d[None, :]
        if MASK_M:
            row_ok = rows < length
            q = tl.load(Q + q_off, mask=row_ok[:, None], other=0.0)
            do = tl.load(DO + o_off, mask=row_ok[:, None], other=0.0)
            lse = tl.load(LSE + rows * NUM_HEADS, mask=row_ok, other=float("inf"))
            delta = tl.load(DELTA + rows * NUM_HEADS, mask=row_ok, other=0.0)
        else:
            q = tl.load(Q + q_off)
            do = tl.load(DO + o_off)
            lse = tl.load(LSE + rows * NUM_HEADS)
            delta = tl.load(DELTA + rows * NUM_HEADS)
        # Transposed tile (keys x queries), so that dV and dK need no transpose of the big operands.
        st = _scores(k, q, qk_scale, slope2, cols, rows, HAS_ALIBI)
        pt = tl.exp2(st - lse[None, :])
        dv = tl.dot(pt.to(do.dtype), do, dv)
        dpt = tl.dot(v, tl.trans(do))
        dst = pt * (dpt - delta[None, :])
        dk = tl.dot(dst.to(q.dtype), q, dk)
    return dk, dv


@triton.jit
def _bwd_dkdv_kernel(QKV, DO, DQKV, LSE, DELTA, CU_SEQLENS, TABLE, SLOPES, qk_scale, sm_scale,
                     NUM_HEADS: tl.constexpr, HEAD_DIM: tl.constexpr, HAS_ALIBI: tl.constexpr,
                     USE_TABLE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """One program per (key block, head); loops over the sequence's query blocks."""
    STRIDE_T: tl.constexpr = 3 * NUM_HEADS * HEAD_DIM
    STRIDE_O: tl.constexpr = NUM_HEADS * HEAD_DIM
    pid = tl.program_id(0)
    head = pid % NUM_HEADS
    seq, length = _locate(TABLE, CU_SEQLENS, pid // NUM_HEADS, USE_TABLE)
    start = tl.load(CU_SEQLENS + seq).to(tl.int64)
    n0 = tl.load(TABLE + 2 * (pid // NUM_HEADS) + 1) if USE_TABLE else 0
    if n0 < length:
        slope2 = 0.0
        if HAS_ALIBI:
            slope2 = tl.load(SLOPES + head) * 1.4426950408889634
        cols = n0 + tl.arange(0, BLOCK_N)
        offs_d = tl.arange(0, HEAD_DIM)
        col_ok = cols < length
        qkv_base = start * STRIDE_T + head * HEAD_DIM
        Q = QKV + qkv_base
        DO += start * STRIDE_O + head * HEAD_DIM
        LSE += start * NUM_HEADS + head
        DELTA += start * NUM_HEADS + head
        kv_off = cols[:, None] * STRIDE_T + offs_d[None, :]
        k = tl.load(Q + STRIDE_O + kv_off, mask=col_ok[:, None], other=0.0)
        v = tl.load(Q + 2 * STRIDE_O + kv_off, mask=col_ok[:, None], other=0.0)
        dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
        dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
        m_full = (length // BLOCK_M) * BLOCK_M
        dk, dv = _bwd_dkdv_inner(dk, dv, k, v, Q, DO, LSE, DELTA, cols, 0, m_full, length, qk_scale, slope2,
                                 NUM_HEADS, HEAD_DIM, HAS_ALIBI, False, BLOCK_M)
        dk, dv = _bwd_dkdv_inner(dk, dv, k, v, Q, DO, LSE, DELTA, cols, m_full, length, length, qk_scale,
                                 slope2, NUM_HEADS, HEAD_DIM, HAS_ALIBI, True, BLOCK_M)
        DK = DQKV + qkv_base + STRIDE_O
        dk = dk * tl.cast(sm_scale, tl.float32)
        tl.store(DK + kv_off, dk.to(DQKV.dtype.element_ty), mask=col_ok[:, None])
        tl.store(DK + STRIDE_O + kv_off, dv.to(DQKV.dtype.element_ty), mask=col_ok[:, None])


# ----------------------------------------------------------------------------------------------
# Host side.


def _check_inputs(qkv, cu_seqlens, alibi_slopes):
    if qkv.dim() != 4 or qkv.shape[1] != 3:
        raise ValueError(f"qkv must be (total_tokens, 3, n_heads, head_dim), got {tuple(qkv.shape)}")
    if qkv.shape[3] not in HEAD_DIMS:
        raise ValueError(f"head_dim must be one of {HEAD_DIMS}, got {qkv.shape[3]}")
    if qkv.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise ValueError(f"qkv must be fp16, bf16 or fp32, got {qkv.dtype}")
    if cu_seqlens.dtype != torch.int32 or cu_seqlens.dim() != 1:
        raise ValueError(f"cu_seqlens must be a 1-D int32 tensor, got {cu_seqlens.dtype} "
                         f"of shape {tuple(cu_seqlens.shape)}")
    if alibi_slopes is not None and alibi_slopes.shape != (qkv.shape[2],):
        raise ValueError(f"alibi_slopes must be (n_heads,) = ({qkv.shape[2]},), "
                         f"got {tuple(alibi_slopes.shape)}")


def _short_launch(kernel, big: ShortKernelConfig, small: ShortKernelConfig, schedule, n_heads, *args,
                  query_blocks: bool = False, **kwargs):
    """Two launches when max_seqlen > the small tile: short sequences get small tiles and their own
    occupancy (a kernel's registers are those of its largest tile). `query_blocks`: the kernel takes
    the config's QUERY_BLOCK (the backward)."""
    block, small_block = schedule.short_tiles
    launches = [(big, block, 0)]
    if small_block < block:
        launches = [(small, small_block, 0), (big, block, small_block)]
    for k, tile, min_length in launches:
        groups = triton.cdiv(n_heads, k.heads_per_program)
        if query_blocks:
            kwargs["QUERY_BLOCK"] = min(k.query_block or tile, tile)
        wrap_triton(kernel)[(schedule.n_seqs * groups,)](
            *args, HEADS_PER_PROGRAM=k.heads_per_program, BLOCK=tile, MIN_LENGTH=min_length,
            num_warps=k.num_warps, num_stages=k.num_stages, **kwargs)


def _forward(qkv, slopes, softmax_scale, schedule, cfg):
    T, _, H, D = qkv.shape
    out = _alloc((T, H, D), qkv.dtype, qkv.device)
    lse = _alloc((T, H), torch.float32, qkv.device)
    common = dict(NUM_HEADS=H, HEAD_DIM=D, HAS_ALIBI=slopes is not None)
    slopes = slopes if slopes is not None else lse
    if schedule.short_tiles:
        _short_launch(_short_fwd_kernel, cfg.short_forward, cfg.small_forward, schedule, H, qkv, out, lse,
                      schedule.cu_seqlens, slopes, softmax_scale * LOG2E, **common)
        return out, lse
    k = cfg.forward
    table, n_programs = schedule.grid(k.block_m, H)
    wrap_triton(_fwd_kernel)[(n_programs,)](
        qkv, out, lse, schedule.cu_seqlens, table if table is not None else schedule.cu_seqlens, slopes,
        softmax_scale * LOG2E, USE_TABLE=table is not None, BLOCK_M=k.block_m, BLOCK_N=k.block_n,
        num_warps=k.num_warps, num_stages=k.num_stages, **common)
    return out, lse


def _backward(do, qkv, out, lse, slopes, softmax_scale, schedule, cfg):
    T, _, H, D = qkv.shape
    dqkv = _alloc(qkv.shape, qkv.dtype, qkv.device)
    common = dict(NUM_HEADS=H, HEAD_DIM=D, HAS_ALIBI=slopes is not None)
    slopes = slopes if slopes is not None else lse
    if schedule.short_tiles:
        _short_launch(_short_bwd_kernel, cfg.short_backward, cfg.small_backward, schedule, H, qkv, out, do,
                      dqkv, lse, schedule.cu_seqlens, slopes, softmax_scale * LOG2E, softmax_scale,
                      query_blocks=True, **common)
        return dqkv
    delta = _alloc((T, H), torch.float32, qkv.device)
    k = cfg.backward_dq
    table, n_programs = schedule.grid(k.block_m, H)
    wrap_triton(_bwd_dq_kernel)[(n_programs,)](
        qkv, out, do, dqkv, lse, delta, schedule.cu_seqlens,
        table if table is not None else schedule.cu_seqlens, slopes, softmax_scale * LOG2E,
        softmax_scale, USE_TABLE=table is not None, BLOCK_M=k.block_m, BLOCK_N=k.block_n,
        num_warps=k.num_warps, num_stages=k.num_stages, **common)
    k = cfg.backward_dkdv
    table, n_programs = schedule.grid(k.block_n, H)
    wrap_triton(_bwd_dkdv_kernel)[(n_programs,)](
        qkv, do, dqkv, lse, delta, schedule.cu_seqlens,
        table if table is not None else schedule.cu_seqlens, slopes, softmax_scale * LOG2E,
        softmax_scale, USE_TABLE=table is not None, BLOCK_M=k.block_m, BLOCK_N=k.block_n,
        num_warps=k.num_warps, num_stages=k.num_stages, **common)
    return dqkv


# ----------------------------------------------------------------------------------------------
# The kernels as torch operators. `triton_op` (rather than an autograd.Function or an opaque custom op)
# lets torch.compile see the launches: inside a compiled region Inductor calls the kernels from its own
# generated code, so the attention no longer splits the region and costs no Python dispatch per call.
# Outside compilation the operators run the Python below as it is.
# The block sizes travel as a flat list of ints, since an operator's arguments must be plain types.


# An operator name is one registration per process (registering it again replaces the first), and an
# exported model's remote code is a second copy of this file that may be imported beside this one (or
# beside another model's): each copy registers its operators in a namespace of its own.
_NAMESPACE = "mosaic_bert" if __name__ == "src.flash_attn_triton" else (
    "mosaic_bert_" + hashlib.sha1(__name__.encode()).hexdigest()[:12])


def _config_to_ints(config: AttentionConfig) -> list[int]:
    return [value for kernel in astuple(config) for value in kernel]  # astuple recurses into the kernels


def _config_from_ints(values: list[int]) -> AttentionConfig:
    kinds = [field.type for field in fields(AttentionConfig)]
    bounds = [0]
    for kind in kinds:
        bounds.append(bounds[-1] + len(fields(kind)))
    return AttentionConfig(*(kind(*values[a:b]) for kind, a, b in zip(kinds, bounds, bounds[1:])))


@triton_op(f"{_NAMESPACE}::flash_attn_varlen_alibi_forward", mutates_args=())
def _forward_op(qkv: torch.Tensor, cu_seqlens: torch.Tensor, slopes: Optional[torch.Tensor], max_seqlen: int,
                softmax_scale: float, config: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, lse) for contiguous inputs (slopes float32)."""
    schedule = _Schedule(cu_seqlens, max_seqlen, qkv.shape[0])
    return _forward(qkv, slopes, softmax_scale, schedule, _config_from_ints(config))


@triton_op(f"{_NAMESPACE}::flash_attn_varlen_alibi_backward", mutates_args=())
def _backward_op(dout: torch.Tensor, qkv: torch.Tensor, out: torch.Tensor, lse: torch.Tensor,
                 cu_seqlens: torch.Tensor, slopes: Optional[torch.Tensor], max_seqlen: int, softmax_scale: float,
                 config: list[int]) -> torch.Tensor:
    """dqkv. The block tables (long sequences only) are rebuilt: one tiny kernel, no state between ops."""
    schedule = _Schedule(cu_seqlens, max_seqlen, qkv.shape[0])
    return _backward(dout, qkv, out, lse, slopes, softmax_scale, schedule, _config_from_ints(config))


def _save_for_backward(ctx, inputs, output) -> None:
    qkv, cu_seqlens, slopes, max_seqlen, softmax_scale, config = inputs
    out, lse = output
    ctx.save_for_backward(qkv, out, lse, cu_seqlens, slopes)
    ctx.max_seqlen, ctx.softmax_scale, ctx.config = max_seqlen, softmax_scale, config


def _gradient(ctx, dout: torch.Tensor, dlse: torch.Tensor):
    qkv, out, lse, cu_seqlens, slopes = ctx.saved_tensors
    dqkv = _backward_op(dout.contiguous(), qkv, out, lse, cu_seqlens, slopes, ctx.max_seqlen, ctx.softmax_scale,
                        ctx.config)
    return dqkv, None, None, None, None, None


_forward_op.register_autograd(_gradient, setup_context=_save_for_backward)


def flash_attn_varlen_alibi(qkv: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int,
                            alibi_slopes: Optional[torch.Tensor] = None,
                            softmax_scale: Optional[float] = None,
                            config: Optional[AttentionConfig] = None) -> torch.Tensor:
    """Bidirectional attention within each sequence of an unpadded batch, with optional ALiBi.

    qkv: (total_tokens, 3, n_heads, head_dim), fp16/bf16 (fp32 too); head_dim in 32, 64, 128.
    cu_seqlens: int32 (batch + 1,), cu_seqlens[0] == 0, cu_seqlens[-1] == total_tokens.
    max_seqlen: a Python int >= every sequence's length (only its bucket selects the kernels).
    alibi_slopes: fp32 (n_heads,) or None; bias is -slope_h * |i - j|.
    softmax_scale: defaults to head_dim ** -0.5.
    config: block sizes and warps; defaults to select_config (a measured table).
    Returns (total_tokens, n_heads, head_dim) in qkv's dtype; differentiable with respect to qkv.
    Traceable by torch.compile (the kernels become part of the compiled graph).
    """
    _check_inputs(qkv, cu_seqlens, alibi_slopes)
    head_dim = qkv.shape[3]
    if softmax_scale is None:
        softmax_scale = 1.0 / math.sqrt(head_dim)
    if config is None:
        config = select_config(head_dim, max_seqlen, qkv.device)
    slopes = None if alibi_slopes is None else alibi_slopes.to(torch.float32).contiguous()
    out, _ = _forward_op(qkv.contiguous(), cu_seqlens.contiguous(), slopes, int(max_seqlen), float(softmax_scale),
                         _config_to_ints(config))
    return out


def flash_attn_varlen_alibi_reference(qkv: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int,
                                      alibi_slopes: Optional[torch.Tensor] = None,
                                      softmax_scale: Optional[float] = None) -> torch.Tensor:
    """Plain-PyTorch twin of flash_attn_varlen_alibi: one sequence at a time, at least fp32."""
    compute_dtype = torch.float64 if qkv.dtype == torch.float64 else torch.float32
    x = qkv.to(compute_dtype)
    head_dim = qkv.shape[3]
    scale = 1.0 / math.sqrt(head_dim) if softmax_scale is None else softmax_scale
    bounds = cu_seqlens.tolist()
    outs = []
    for start, end in zip(bounds[:-1], bounds[1:]):
        q, k, v = x[start:end].unbind(1)  # (L, H, D) each
        scores = torch.einsum("ihd,jhd->hij", q, k) * scale
        if alibi_slopes is not None:
            pos = torch.arange(end - start, device=qkv.device, dtype=compute_dtype)
            dist = (pos[:, None] - pos[None, :]).abs()
            scores = scores - alibi_slopes.to(compute_dtype)[:, None, None] * dist
        outs.append(torch.einsum("hij,jhd->ihd", scores.softmax(dim=-1), v))
    return torch.cat(outs).to(qkv.dtype)
