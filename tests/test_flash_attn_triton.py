"""The Triton FlashAttention kernels against their float64 plain-PyTorch twin, under TRITON_INTERPRET=1.

Every buffer the kernels write is filled with NaN first (through flash_attn_triton._alloc), so an
element no program writes fails the comparison. Shapes are small: the interpreter runs each program
in Python. Under the interpreter, batches with max_seqlen <= 32 take the short kernels (sequences of
up to 16 tokens in one launch with 16-row tiles, longer ones in another with 32-row tiles) and longer
batches the block-table path (16-row query x 32-row key blocks, separate dQ and dK/dV kernels).
"""
import importlib.util

import pytest
import torch

from src import flash_attn_triton as fa

N_HEADS = 2
# Steep and mild ALiBi slopes: the steep one makes far keys nearly vanish.
SLOPES = torch.tensor([0.5, 0.03])
# (atol-free) relative-error bounds: the interpreter's fp32 dot is exact fp32; fp16 rounds P and dS.
TOLERANCE = {torch.float32: 1e-5, torch.float16: 5e-3}


def _poisoned_alloc(shape, dtype, device):
    buffer = torch.empty(shape, dtype=dtype, device=device)
    return buffer.fill_(float("nan") if dtype.is_floating_point else -1234567)


@pytest.fixture(autouse=True)
def poisoned_outputs(monkeypatch):
    monkeypatch.setattr(fa, "_alloc", _poisoned_alloc)


def _cu_seqlens(lengths):
    return torch.tensor([0] + torch.tensor(lengths).cumsum(0).tolist(), dtype=torch.int32)


def _relative_error(x, ref):
    return ((x.double() - ref).norm() / ref.norm()).item()


def _run(lengths, head_dim, dtype, alibi, seed, softmax_scale=None):
    """(out, dqkv) of the kernel and of the float64 reference, on fresh random inputs."""
    gen = torch.Generator().manual_seed(seed)
    total = sum(lengths)
    qkv = torch.randn(total, 3, N_HEADS, head_dim, generator=gen).to(dtype)
    dout = torch.randn(total, N_HEADS, head_dim, generator=gen).to(dtype)
    cu_seqlens = _cu_seqlens(lengths)
    slopes = SLOPES if alibi else None

    x = qkv.clone().requires_grad_()
    out = fa.flash_attn_varlen_alibi(x, cu_seqlens, max(lengths), slopes, softmax_scale)
    out.backward(dout)
    x64 = qkv.double().requires_grad_()
    ref = fa.flash_attn_varlen_alibi_reference(x64, cu_seqlens, max(lengths), slopes, softmax_scale)
    ref.backward(dout.double())

    assert out.shape == (total, N_HEADS, head_dim) and out.dtype == dtype
    return (out, x.grad), (ref, x64.grad)


def _errors(*args, **kwargs):
    """Relative errors of out, dq, dk, dv against the float64 reference."""
    (out, grad), (ref, ref_grad) = _run(*args, **kwargs)
    errors = {"out": _relative_error(out, ref)}
    for i, name in enumerate(("dq", "dk", "dv")):
        errors[name] = _relative_error(grad[:, i], ref_grad[:, i])
    return errors


def _random_lengths(seed, max_len, n):
    """n lengths in [1, max_len], always including 1 and max_len."""
    gen = torch.Generator().manual_seed(seed)
    middle = torch.randint(1, max_len + 1, (n - 2,), generator=gen).tolist()
    return [1] + middle + [max_len]


@pytest.mark.parametrize("alibi", [True, False], ids=["alibi", "plain"])
@pytest.mark.parametrize("head_dim", [32, 64, 128])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_matches_float64_reference(dtype, head_dim, alibi):
    seed = head_dim + 2 * alibi + (dtype == torch.float16)
    # Long batch: several query and key blocks per sequence, partial last blocks, block tables.
    long_lengths = _random_lengths(seed, max_len=45, n=4)
    # Short batch: the short kernels, both tile sizes.
    short_lengths = _random_lengths(seed + 100, max_len=27, n=3)
    for lengths in (long_lengths, short_lengths):
        errors = _errors(lengths, head_dim, dtype, alibi, seed)
        assert max(errors.values()) < TOLERANCE[dtype], (lengths, errors)


def test_softmax_scale_is_applied():
    errors = _errors([9, 40, 1], 32, torch.float32, alibi=True, seed=7, softmax_scale=0.7)
    assert max(errors.values()) < TOLERANCE[torch.float32], errors


def test_single_token_sequences():
    # A token alone attends only to itself: out == v, dv == dout, dq == dk == 0.
    (out, grad), (ref, ref_grad) = _run([1, 1, 1], 64, torch.float32, alibi=True, seed=8)
    assert _relative_error(out, ref) < TOLERANCE[torch.float32]
    assert _relative_error(grad[:, 2], ref_grad[:, 2]) < TOLERANCE[torch.float32]
    assert ref_grad[:, :2].abs().max().item() == 0.0
    # dQ and dK are differences of equal fp32 products (dP - delta): zero up to their rounding, which
    # scales with the values (the largest of dV = dout's).
    assert grad[:, :2].abs().max().item() < 1e-6 * grad[:, 2].abs().max().item()


def test_block_table_lists_every_block_longest_first():
    lengths = [5, 40, 1, 33, 16]
    schedule = fa._Schedule(_cu_seqlens(lengths), max(lengths), sum(lengths))
    table = schedule.table(16).tolist()
    # ceil(L / 16) blocks per sequence, sequences by decreasing length, then (-1, 0) pads.
    expected = [[1, 0], [1, 16], [1, 32], [3, 0], [3, 16], [3, 32], [4, 0], [0, 0], [2, 0]]
    assert table[:len(expected)] == expected
    assert len(table) == -(-sum(lengths) // 16) + len(lengths)
    assert table[len(expected):] == [[-1, 0]] * (len(table) - len(expected))


def test_reference_matches_sdpa_with_alibi_bias():
    gen = torch.Generator().manual_seed(3)
    lengths = [7, 12]
    qkv = torch.randn(sum(lengths), 3, N_HEADS, 32, generator=gen, dtype=torch.float64)
    ref = fa.flash_attn_varlen_alibi_reference(qkv, _cu_seqlens(lengths), 12, SLOPES.double())
    start = 0
    for length in lengths:
        q, k, v = qkv[start:start + length].permute(1, 2, 0, 3)  # (H, L, D) each
        pos = torch.arange(length, dtype=torch.float64)
        bias = -SLOPES.double()[:, None, None] * (pos[:, None] - pos[None, :]).abs()
        expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        torch.testing.assert_close(ref[start:start + length], expected.transpose(0, 1))
        start += length


@pytest.mark.parametrize("shape, message", [
    ((10, 3, 2, 48), "head_dim must be one of"),
    ((10, 2, 2, 32), "qkv must be"),
])
def test_rejects_bad_shapes(shape, message):
    with pytest.raises(ValueError, match=message):
        fa.flash_attn_varlen_alibi(torch.zeros(shape), _cu_seqlens([10]), 10)


def test_rejects_int64_cu_seqlens():
    with pytest.raises(ValueError, match="cu_seqlens must be a 1-D int32"):
        fa.flash_attn_varlen_alibi(torch.zeros(10, 3, 2, 32), torch.tensor([0, 10]), 10)


def test_an_exported_copy_of_the_module_imports_beside_it_and_computes_the_same():
    """An exported model's remote code is a second copy of this file, which transformers imports under
    another name, possibly in a process that already imported this one (or another model's copy). An
    operator name is one registration per process: the copy registers its own operators rather than
    taking over this module's (which would bind both to whichever file was imported last)."""
    spec = importlib.util.spec_from_file_location("transformers_modules.some_model.flash_attn_triton", fa.__file__)
    copy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(copy)
    assert copy._NAMESPACE != fa._NAMESPACE == "mosaic_bert"
    gen = torch.Generator().manual_seed(11)
    lengths = [9, 3]
    qkv = torch.randn(sum(lengths), 3, N_HEADS, 32, generator=gen)
    results = []
    for module in (fa, copy):
        x = qkv.clone().requires_grad_()
        out = module.flash_attn_varlen_alibi(x, _cu_seqlens(lengths), max(lengths), SLOPES)
        out.sum().backward()
        results.append((out, x.grad))
    torch.testing.assert_close(results[1], results[0], rtol=0, atol=0)


def test_kernel_configs_survive_the_operators_flat_argument():
    """The operators take the block sizes as a flat list of ints; every measured config comes back whole."""
    for head_dim in fa.HEAD_DIMS:
        for max_seqlen in (128, 512, 4096):
            for device in (torch.device("cuda"), torch.device("cpu")):  # cpu: the interpreter's config
                config = fa.select_config(head_dim, max_seqlen, device)
                assert fa._config_from_ints(fa._config_to_ints(config)) == config


# Inductor's analysis of which tensors a kernel writes, for every kernel with and without a block table.
# It lowers the kernels to Triton IR (no GPU needed, but not under the interpreter): a child process.
_WRITES_SCRIPT = """
import json, sys
from unittest import mock
import torch, triton
from triton.backends.compiler import GPUTarget
from torch._higher_order_ops.triton_kernel_wrap import identify_accessed_tensors
from src import flash_attn_triton as fa

class Hopper:  # stands in for the driver: only the target's name matters to the lowering
    def get_current_target(self):
        return GPUTarget("cuda", 90, 32)

def tensor(*shape, dtype=torch.bfloat16):
    return torch.empty(*shape, dtype=dtype)

arguments = dict(
    QKV=tensor(8, 3, 12, 64), O=tensor(8, 12, 64), DO=tensor(8, 12, 64), DQKV=tensor(8, 3, 12, 64),
    LSE=tensor(8, 12, dtype=torch.float32), DELTA=tensor(8, 12, dtype=torch.float32),
    CU_SEQLENS=tensor(3, dtype=torch.int32), TABLE=tensor(4, 2, dtype=torch.int32),
    SLOPES=tensor(12, dtype=torch.float32), qk_scale=0.1, sm_scale=0.1, NUM_HEADS=12, HEAD_DIM=64,
    HAS_ALIBI=True, HEADS_PER_PROGRAM=4, BLOCK=128, MIN_LENGTH=0, QUERY_BLOCK=32, BLOCK_M=64, BLOCK_N=64)
writes = {}
with mock.patch.object(triton.runtime.driver, "_active", Hopper(), create=True):
    for name in sys.argv[1:]:
        kernel = getattr(fa, name)
        for use_table in (True, False):
            kwargs = {arg: dict(arguments, USE_TABLE=use_table)[arg] for arg in kernel.arg_names}
            accesses = identify_accessed_tensors(kernel, kwargs, {})
            writes[f"{name} {use_table}"] = sorted(dep.name for dep in accesses.read_writes.writes)
print(json.dumps(writes))
"""
_OUTPUTS = {"_short_fwd_kernel": ["LSE", "O"], "_short_bwd_kernel": ["DQKV"], "_fwd_kernel": ["LSE", "O"],
            "_bwd_dq_kernel": ["DELTA", "DQKV"], "_bwd_dkdv_kernel": ["DQKV"]}


@pytest.fixture(scope="module")
def inductor_writes():
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-c", _WRITES_SCRIPT, *_OUTPUTS], env=env, capture_output=True,
                            text=True, cwd=Path(__file__).resolve().parents[1], timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("use_table", [True, False], ids=["table", "no_table"])
@pytest.mark.parametrize("kernel", list(_OUTPUTS))
def test_inductor_sees_each_kernel_write_only_its_outputs(inductor_writes, kernel, use_table):
    """Inside the compiled encoder, Inductor treats every tensor its analysis says a kernel writes as
    mutated; cu_seqlens among them made it copy that input and refuse CUDA graphs (session 10)."""
    assert inductor_writes[f"{kernel} {use_table}"] == _OUTPUTS[kernel]
