"""GPU correctness check of src/flash_attn_triton.py at full size: PASS/FAIL table, non-zero exit on FAIL.

For each case: fresh random qkv, dout and lengths; the kernel's output and dq, dk, dv against the
plain-PyTorch twin run in fp32 on the same (upcast) inputs; relative error ||x - ref|| / ||ref||.
For scale, the same error of PyTorch itself doing the attention in the input dtype (SDPA per sequence
with the ALiBi bias) is printed beside it. Every buffer the kernels write starts as NaN. A last case
runs three batches with different lengths in one max_seqlen bucket and checks that no kernel compiles
again after the first.

    python benchmarks/check_attention_gpu.py [--quick] [--out benchmarks/results/attention_gpu_check.txt]
--quick (or no GPU) runs small shapes, under TRITON_INTERPRET=1 on the CPU (fp32/fp16 only).
"""
import argparse
import math
import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

QUICK = "--quick" in sys.argv or not torch.cuda.is_available()
if QUICK:  # before triton is imported
    os.environ.setdefault("TRITON_INTERPRET", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from src import flash_attn_triton as fa  # noqa: E402

TOLERANCE = 1e-2  # bf16/fp16 inputs, fp32 accumulation: expect 1e-3 .. 1e-2


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """The ALiBi paper's geometric slopes (n_heads a power of two, else interleaved as in Mosaic BERT)."""
    def powers(n):
        start = 2 ** (-8 / n)
        return [start ** (i + 1) for i in range(n)]
    closest = 2 ** math.floor(math.log2(n_heads))
    slopes = powers(closest)
    if closest < n_heads:
        slopes += powers(2 * closest)[0::2][: n_heads - closest]
    return torch.tensor(slopes, dtype=torch.float32)


def random_lengths(kind: str, total: int, gen: torch.Generator) -> list:
    """Sequence lengths summing to about `total`, always including a 1."""
    if kind.startswith("fixed:"):
        return [int(x) for x in kind[len("fixed:"):].split(",")]
    name, max_len = kind.split(":")
    max_len = int(max_len)
    lengths = [1]
    while sum(lengths) < total:
        u = torch.rand((), generator=gen).item()
        if name == "uniform":  # [max/2, max]
            lengths.append(int(max_len // 2 + u * (max_len - max_len // 2)) + 1)
        else:  # log-uniform in [1, max]: many short documents
            lengths.append(max(1, min(max_len, int(round(math.exp(u * math.log(max_len)))))))
    lengths.append(max_len)
    return lengths


def poisoned_alloc(shape, dtype, device):
    buffer = torch.empty(shape, dtype=dtype, device=device)
    return buffer.fill_(float("nan") if dtype.is_floating_point else -1234567)


def rel_err(x, ref):
    x, ref = x.float(), ref.float()
    return ((x - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def torch_native(qkv, cu_seqlens, slopes, scale):
    """PyTorch attention in the input dtype (SDPA with a float ALiBi bias), one sequence at a time."""
    bounds = cu_seqlens.tolist()
    outs = []
    for start, end in zip(bounds[:-1], bounds[1:]):
        q, k, v = qkv[start:end].permute(1, 2, 0, 3)  # (H, L, D)
        bias = None
        if slopes is not None:
            pos = torch.arange(end - start, device=qkv.device, dtype=torch.float32)
            bias = (-slopes[:, None, None] * (pos[:, None] - pos[None, :]).abs()).to(qkv.dtype)
        outs.append(F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale).transpose(0, 1))
    return torch.cat(outs)


def check_case(kind, head_dim, dtype, alibi, n_heads, total, device, gen):
    lengths = random_lengths(kind, total, gen)
    cu_seqlens = torch.tensor([0] + torch.tensor(lengths).cumsum(0).tolist(), dtype=torch.int32,
                              device=device)
    n_tokens, max_seqlen = sum(lengths), max(lengths)
    qkv = torch.randn(n_tokens, 3, n_heads, head_dim, generator=gen).to(device=device, dtype=dtype)
    dout = torch.randn(n_tokens, n_heads, head_dim, generator=gen).to(device=device, dtype=dtype)
    slopes = alibi_slopes(n_heads).to(device) if alibi else None
    scale = head_dim ** -0.5

    x = qkv.clone().requires_grad_()
    out = fa.flash_attn_varlen_alibi(x, cu_seqlens, max_seqlen, slopes)
    out.backward(dout)
    x32 = qkv.float().clone().requires_grad_()
    ref = fa.flash_attn_varlen_alibi_reference(x32, cu_seqlens, max_seqlen, slopes)
    ref.backward(dout.float())
    xn = qkv.clone().requires_grad_()
    native = torch_native(xn, cu_seqlens, slopes, scale)
    native.backward(dout)

    row = {"case": kind, "head_dim": head_dim, "dtype": str(dtype).replace("torch.", ""),
           "alibi": alibi, "seqs": len(lengths), "tokens": n_tokens, "max_len": max_seqlen}
    finite = bool(torch.isfinite(out).all() and torch.isfinite(x.grad).all())
    errs = {"out": rel_err(out, ref)}
    native_errs = {"out": rel_err(native, ref)}
    for i, name in enumerate(("dq", "dk", "dv")):
        errs[name] = rel_err(x.grad[:, i], x32.grad[:, i])
        native_errs[name] = rel_err(xn.grad[:, i], x32.grad[:, i])
    row.update({f"err_{k}": v for k, v in errs.items()})
    row.update({f"torch_{k}": v for k, v in native_errs.items()})
    row["pass"] = finite and max(errs.values()) <= TOLERANCE
    return row


def compiled_kernels():
    """How many kernels Triton has compiled for our functions so far (None if it does not say)."""
    total = 0
    for kernel in (value for name, value in vars(fa).items() if name.endswith("_kernel")):
        caches = getattr(kernel, "device_caches", None)
        if caches is None:
            return None
        total += sum(len(c[0]) for c in caches.values())
    return total


def check_no_recompile(kind, head_dim, dtype, n_heads, total, device, gen):
    """Three batches with new lengths in one bucket: the kernel count must not grow after the first."""
    counts = []
    for _ in range(3):
        check_case(kind, head_dim, dtype, True, n_heads, total, device, gen)
        counts.append(compiled_kernels())
    return counts


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small shapes (CPU interpreter smoke run)")
    parser.add_argument("--seed", type=int, default=None, help="default: fresh inputs every run")
    parser.add_argument("--out", default=None, help="also write the table to this file")
    parser.add_argument("--only", default=None, help="run only the cases whose lengths spec contains this")
    args = parser.parse_args()

    fa._alloc = poisoned_alloc
    device = torch.device("cpu" if QUICK else "cuda")
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little")
    gen = torch.Generator().manual_seed(seed)
    if device.type == "cuda":
        n_heads, total = 12, 16384
        cases = []
        for head_dim in (32, 64, 128):
            for kind in ("mix:128", "uniform:512", "mix:2048", "fixed:8192,1,3000,129,64,1"):
                cases.append((kind, head_dim, torch.bfloat16, True))
        cases += [("mix:128", 64, torch.bfloat16, False), ("uniform:2048", 64, torch.bfloat16, False),
                  ("mix:128", 64, torch.float16, True), ("mix:2048", 64, torch.float16, True),
                  ("mix:512", 128, torch.float16, True), ("fixed:8192,7", 32, torch.float16, True)]
        recompile = ("uniform:512", 64, torch.bfloat16)
    else:
        n_heads, total = 2, 64
        cases = [("mix:24", 32, torch.float32, True), ("uniform:48", 64, torch.float32, True),
                 ("mix:40", 128, torch.float16, True), ("fixed:70,1", 32, torch.float16, False)]
        recompile = ("uniform:48", 32, torch.float32)

    if args.only:
        cases = [c for c in cases if args.only in c[0]]
    header = (f"{'case':<28}{'hd':>4}{'dtype':>9}{'alibi':>6}{'seqs':>6}{'tokens':>7}{'maxL':>6}"
              f"{'out':>9}{'dq':>9}{'dk':>9}{'dv':>9}   torch out/dq/dk/dv            result")
    lines = [f"seed {seed}; device {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}; "
             f"torch {torch.__version__}; triton {fa.triton.__version__}; tolerance {TOLERANCE}", header]
    print(lines[0], flush=True)
    print(header, flush=True)
    ok = True
    for kind, head_dim, dtype, alibi in cases:
        r = check_case(kind, head_dim, dtype, alibi, n_heads, total, device, gen)
        ok &= r["pass"]
        line = (f"{r['case']:<28}{r['head_dim']:>4}{r['dtype']:>9}{str(r['alibi']):>6}{r['seqs']:>6}"
                f"{r['tokens']:>7}{r['max_len']:>6}{r['err_out']:>9.2e}{r['err_dq']:>9.2e}{r['err_dk']:>9.2e}"
                f"{r['err_dv']:>9.2e}   {r['torch_out']:.1e}/{r['torch_dq']:.1e}/{r['torch_dk']:.1e}/"
                f"{r['torch_dv']:.1e}   {'PASS' if r['pass'] else 'FAIL'}")
        lines.append(line)
        print(line, flush=True)
    kind, head_dim, dtype = recompile
    counts = check_no_recompile(kind, head_dim, dtype, n_heads, total, device, gen)
    if device.type != "cuda" or counts[0] is None:
        verdict = "n/a (interpreter, or this Triton does not expose its kernel cache)"
    else:
        verdict = "PASS" if counts[0] == counts[-1] else "FAIL"
        ok &= verdict == "PASS"
    line = f"no recompilation across 3 batches of {kind} (compiled kernels after each: {counts}): {verdict}"
    lines.append(line)
    lines.append("ALL PASS" if ok else "SOME FAILED")
    print("\n".join(lines[-2:]), flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text("\n".join(lines) + "\n")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
