"""Attention for unpadded BERT batches with ALiBi, on one GPU: our Triton kernel against PyTorch's options.

Methods (bf16, 12 heads of 64, ~32k tokens per batch):
  triton           src/flash_attn_triton.py on the packed (tokens, 3, heads, dim) layout
  sdpa_bias        torch SDPA, padded (batch, heads, L, dim), float bias = ALiBi + key padding
                   (whichever backend PyTorch picks)
  flex_packed      FlexAttention (compiled) on the packed tokens: ALiBi score_mod + document mask
  flex_padded      FlexAttention (compiled), padded: ALiBi score_mod + key-padding mask
  sdpa_flash_nobias  SDPA flash backend, padded, no bias and no mask: computes something easier
                   (attends to padding, no ALiBi); a speed reference only
The first four compute the same function (checked below: output differences against triton).
Baselines are timed on their own layout, with padding/unpadding and bias/mask construction left out,
which favours them. Time is triton.testing.do_bench's median; TFLOP/s counts real tokens only:
4 * sum(L_i^2) * heads * head_dim for the forward, 2.5 times that for forward + backward.

    python benchmarks/attention.py              # table; benchmarks/results/attention.{json,md,png}
    python benchmarks/attention.py --tune       # sweep kernel configs (for the table in the kernel)
    python benchmarks/attention.py --quick      # tiny shapes on the CPU (interpreter), plumbing only
"""
import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.nn.functional as F

QUICK = "--quick" in sys.argv or not torch.cuda.is_available()
if QUICK:  # before triton is imported
    os.environ.setdefault("TRITON_INTERPRET", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import triton  # noqa: E402
from check_attention_gpu import alibi_slopes  # noqa: E402
from src import flash_attn_triton as fa  # noqa: E402
from src.flash_attn_triton import KernelConfig as K  # noqa: E402
from src.flash_attn_triton import ShortKernelConfig as S  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SAME_FUNCTION = ("sdpa_bias", "flex_packed", "flex_padded")
METHODS = ("triton",) + SAME_FUNCTION + ("sdpa_flash_nobias",)


# ----------------------------------------------------------------------------------------------
# Workloads


def batch_lengths(max_seqlen, mix, total, gen):
    """Lengths summing to exactly `total`: uniform in [max/2, max], log-uniform in [1, max] ("mix"), or
    all max_seqlen ("full": the recipe's full-length training batch)."""
    if mix == "full":
        return [max_seqlen] * (total // max_seqlen) + ([total % max_seqlen] if total % max_seqlen else [])
    lengths = []
    while sum(lengths) < total:
        u = torch.rand((), generator=gen).item()
        if mix == "uniform":
            n = max_seqlen // 2 + int(u * (max_seqlen - max_seqlen // 2 + 1))
        else:
            n = int(round(math.exp(u * math.log(max_seqlen))))
        lengths.append(max(1, min(n, max_seqlen, total - sum(lengths))))
    return lengths


class Workload:
    def __init__(self, max_seqlen, mix, n_heads, head_dim, total, device, dtype, seed=0):
        gen = torch.Generator().manual_seed(seed)
        self.max_seqlen, self.mix, self.n_heads, self.head_dim = max_seqlen, mix, n_heads, head_dim
        self.lengths = batch_lengths(max_seqlen, mix, total, gen)
        self.n_tokens = sum(self.lengths)
        self.device = device
        self.cu_seqlens = torch.tensor([0] + torch.tensor(self.lengths).cumsum(0).tolist(),
                                       dtype=torch.int32, device=device)
        self.qkv = torch.randn(self.n_tokens, 3, n_heads, head_dim, generator=gen).to(device, dtype)
        self.dout = torch.randn(self.n_tokens, n_heads, head_dim, generator=gen).to(device, dtype)
        self.slopes = alibi_slopes(n_heads).to(device)
        lengths = torch.tensor(self.lengths, device=device)
        self.lengths_t = lengths
        self.seq_of_token = torch.repeat_interleave(torch.arange(len(self.lengths), device=device), lengths)
        self.pos_of_token = torch.arange(self.n_tokens, device=device) - self.cu_seqlens[:-1].long()[
            self.seq_of_token]

    @property
    def flops_fwd(self):
        return 4 * sum(n * n for n in self.lengths) * self.n_heads * self.head_dim

    def pad(self, x):
        """(tokens, heads, dim) -> (batch, heads, max_seqlen, dim), zeros in the padding."""
        out = x.new_zeros(len(self.lengths), self.max_seqlen, *x.shape[1:])
        out[self.seq_of_token, self.pos_of_token] = x
        return out.transpose(1, 2).contiguous()

    def unpad(self, x):
        return x.transpose(1, 2)[self.seq_of_token, self.pos_of_token]


# ----------------------------------------------------------------------------------------------
# Methods: each returns (forward function, leaves to reset, dout shaped like its output, unpad).


def method_triton(w):
    qkv = w.qkv.clone().requires_grad_()
    def run():
        return fa.flash_attn_varlen_alibi(qkv, w.cu_seqlens, w.max_seqlen, w.slopes)
    return run, [qkv], w.dout, None


def _padded_qkv(w):
    q, k, v = (w.pad(w.qkv[:, i]).requires_grad_() for i in range(3))
    return q, k, v, w.pad(w.dout)


def method_sdpa_bias(w):
    q, k, v, dout = _padded_qkv(w)
    pos = torch.arange(w.max_seqlen, device=w.device, dtype=torch.float32)
    alibi = -w.slopes[:, None, None] * (pos[:, None] - pos[None, :]).abs()  # (H, L, L)
    key_pad = torch.where(pos[None, :] < w.lengths_t[:, None], 0.0, float("-inf"))  # (B, L)
    bias = (alibi[None] + key_pad[:, None, None, :]).to(q.dtype)
    return (lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=bias)), [q, k, v], dout, w.unpad


def _flex(compile_flex):
    import torch._dynamo
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    # Every workload (shape, closures) compiles Flex again; past Dynamo's limit it would run eagerly.
    for limit in ("cache_size_limit", "recompile_limit"):
        if hasattr(torch._dynamo.config, limit):
            setattr(torch._dynamo.config, limit, 256)
    flex = torch.compile(flex_attention, dynamic=False) if compile_flex else flex_attention
    return flex, create_block_mask


def method_flex_packed(w, compile_flex):
    flex, create_block_mask = _flex(compile_flex)
    q, k, v = (w.qkv[:, i].transpose(0, 1)[None].contiguous().requires_grad_() for i in range(3))
    dout = w.dout.transpose(0, 1)[None].contiguous()
    doc, slopes = w.seq_of_token, w.slopes

    def document(b, h, q_idx, kv_idx):
        return doc[q_idx] == doc[kv_idx]

    def alibi(score, b, h, q_idx, kv_idx):  # positions cancel: same document, global indices
        return score - slopes[h] * (q_idx - kv_idx).abs()

    mask = create_block_mask(document, 1, None, w.n_tokens, w.n_tokens, device=w.device)
    return ((lambda: flex(q, k, v, score_mod=alibi, block_mask=mask)), [q, k, v], dout,
            lambda x: x[0].transpose(0, 1))


def method_flex_padded(w, compile_flex):
    flex, create_block_mask = _flex(compile_flex)
    q, k, v, dout = _padded_qkv(w)
    lengths, slopes = w.lengths_t, w.slopes

    def key_padding(b, h, q_idx, kv_idx):
        return kv_idx < lengths[b]

    def alibi(score, b, h, q_idx, kv_idx):
        return score - slopes[h] * (q_idx - kv_idx).abs()

    mask = create_block_mask(key_padding, len(w.lengths), None, w.max_seqlen, w.max_seqlen, device=w.device)
    return (lambda: flex(q, k, v, score_mod=alibi, block_mask=mask)), [q, k, v], dout, w.unpad


def method_sdpa_flash_nobias(w):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    q, k, v, dout = _padded_qkv(w)

    def run():
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return F.scaled_dot_product_attention(q, k, v)
    return run, [q, k, v], dout, None


def build(name, w, compile_flex):
    if name.startswith("flex"):
        return globals()[f"method_{name}"](w, compile_flex)
    return globals()[f"method_{name}"](w)


# ----------------------------------------------------------------------------------------------
# Timing


def bench(fn, grad_to_none=None, warmup=25, rep=100):
    """Median milliseconds: do_bench on the GPU, a plain timer under the interpreter."""
    if QUICK:
        fn()
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3
    return triton.testing.do_bench(fn, warmup=warmup, rep=rep, grad_to_none=grad_to_none,
                                   return_mode="median")


def time_method(fwd, leaves, dout):
    fwd_ms = bench(fwd)

    def fwd_bwd():
        fwd().backward(dout)
    fwdbwd_ms = bench(fwd_bwd, grad_to_none=leaves)
    return fwd_ms, fwdbwd_ms


def run_benchmark(args, device, dtype, meta):
    rows = []
    for max_seqlen in args.max_seqlens:
        for mix in ("uniform", "mix"):
            w = Workload(max_seqlen, mix, args.heads, args.head_dim, args.tokens, device, dtype)
            reference = None
            for name in args.methods:
                if QUICK and name == "sdpa_flash_nobias":
                    continue
                row = {"max_seqlen": max_seqlen, "mix": mix, "n_seqs": len(w.lengths), "tokens": w.n_tokens,
                       "mean_len": w.n_tokens / len(w.lengths), "method": name}
                try:
                    fwd, leaves, dout, unpad = build(name, w, compile_flex=not QUICK)
                    # FlexAttention has no backward on the CPU (it refuses inputs that require grad).
                    for t in leaves:
                        t.requires_grad_(not QUICK)
                    out = fwd()
                    for t in leaves:
                        t.requires_grad_(True)
                    if name == "triton":
                        reference = out.detach().float()
                    elif unpad is not None and reference is not None:
                        got = unpad(out.detach()).float()
                        row["rel_diff_vs_triton"] = ((got - reference).norm() / reference.norm()).item()
                    del out
                    fwd_ms, fwdbwd_ms = time_method(fwd, leaves, dout)
                    row.update(fwd_ms=fwd_ms, fwdbwd_ms=fwdbwd_ms,
                               fwd_tflops=w.flops_fwd / fwd_ms * 1e-9,
                               fwdbwd_tflops=2.5 * w.flops_fwd / fwdbwd_ms * 1e-9)
                    del fwd, leaves, dout
                except Exception as e:  # a baseline that cannot run here is reported, not fatal
                    row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
                rows.append(row)
                print(format_row(row), flush=True)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            if not QUICK:  # after every group, so that a run cut short keeps what it measured
                write_results(rows, speedups(rows), meta)
    return rows


def speedups(rows):
    """Per (max_seqlen, mix): triton's speed-up over the fastest same-function alternative."""
    out = []
    for key in sorted({(r["max_seqlen"], r["mix"]) for r in rows}, key=lambda k: (k[0], k[1] != "uniform")):
        group = {r["method"]: r for r in rows if (r["max_seqlen"], r["mix"]) == key and "error" not in r}
        if "triton" not in group:
            continue
        entry = {"max_seqlen": key[0], "mix": key[1]}
        for phase in ("fwd_ms", "fwdbwd_ms"):
            alts = {m: group[m][phase] for m in SAME_FUNCTION if m in group}
            if alts:
                best = min(alts, key=alts.get)
                entry[f"{phase}_best_alternative"] = best
                entry[f"{phase}_speedup"] = alts[best] / group["triton"][phase]
            if "sdpa_flash_nobias" in group:
                entry[f"{phase}_vs_flash_nobias"] = group["sdpa_flash_nobias"][phase] / group["triton"][phase]
        out.append(entry)
    return out


def format_row(r):
    head = f"{r['max_seqlen']:>6} {r['mix']:<8}{r['n_seqs']:>5} {r['method']:<18}"
    if "error" in r:
        return head + f"  diff {r.get('rel_diff_vs_triton', float('nan')):.1e}; error: " + r["error"]
    diff = f"{r['rel_diff_vs_triton']:.1e}" if "rel_diff_vs_triton" in r else "-"
    return (head + f"{r['fwd_ms']:>9.3f}{r['fwd_tflops']:>8.1f}{r['fwdbwd_ms']:>10.3f}"
            f"{r['fwdbwd_tflops']:>8.1f}{diff:>10}")


def format_speedup(u):
    """'fwd x (best alternative) | fwd+bwd x (best alternative) | fwd+bwd x over flash without bias'."""
    nan = float("nan")
    return (f"{u.get('fwd_ms_speedup', nan):.2f}x ({u.get('fwd_ms_best_alternative', '-')}) | "
            f"{u.get('fwdbwd_ms_speedup', nan):.2f}x ({u.get('fwdbwd_ms_best_alternative', '-')}) | "
            f"{u.get('fwdbwd_ms_vs_flash_nobias', nan):.2f}x")


TABLE_HEADER = (f"{'maxL':>6} {'lengths':<8}{'seqs':>5} {'method':<18}{'fwd ms':>9}{'TFLOP/s':>8}"
                f"{'f+b ms':>10}{'TFLOP/s':>8}{'diff':>10}")


def write_results(rows, ups, meta):
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "attention.json").write_text(json.dumps({"meta": meta, "rows": rows, "speedups": ups},
                                                       indent=1))
    md = [f"# Attention benchmark ({meta['gpu']}, torch {meta['torch']}, triton {meta['triton']})", "",
          f"{meta['heads']} heads x {meta['head_dim']}, {meta['dtype']}, {meta['tokens']} tokens per batch; "
          "do_bench median; TFLOP/s over real tokens only. `diff`: ||out - triton|| / ||triton||.", "",
          *([meta["note"], ""] if "note" in meta else []),
          "| max_seqlen | lengths | seqs | method | fwd ms | fwd TFLOP/s | fwd+bwd ms | fwd+bwd TFLOP/s "
          "| diff |",
          "|---:|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            md.append(f"| {r['max_seqlen']} | {r['mix']} | {r['n_seqs']} | {r['method']} | "
                      f"error: {r['error']} | | | | |")
            continue
        diff = f"{r['rel_diff_vs_triton']:.1e}" if "rel_diff_vs_triton" in r else ""
        md.append(f"| {r['max_seqlen']} | {r['mix']} | {r['n_seqs']} | {r['method']} | {r['fwd_ms']:.3f} | "
                  f"{r['fwd_tflops']:.1f} | {r['fwdbwd_ms']:.3f} | {r['fwdbwd_tflops']:.1f} | {diff} |")
    md += ["", "Speed-up of triton over the fastest alternative computing the same function:", "",
           "| max_seqlen | lengths | fwd (best alternative) | fwd+bwd (best alternative) | "
           "fwd+bwd vs sdpa_flash_nobias |", "|---:|---|---|---|---:|"]
    for u in ups:
        md.append(f"| {u['max_seqlen']} | {u['mix']} | {format_speedup(u)} |")
    (RESULTS / "attention.md").write_text("\n".join(md) + "\n")
    plot(rows, meta)


def plot(rows, meta):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    keys = sorted({(r["max_seqlen"], r["mix"]) for r in rows}, key=lambda k: (k[0], k[1] != "uniform"))
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.8))
    width = 0.8 / len(METHODS)
    panels = ((axes[0], "fwd_tflops", "forward"), (axes[1], "fwdbwd_tflops", "forward + backward"))
    for ax, phase, title in panels:
        for i, m in enumerate(METHODS):
            vals = [next((r.get(phase, 0.0) for r in rows
                          if (r["max_seqlen"], r["mix"]) == k and r["method"] == m), 0.0) for k in keys]
            ax.bar([j + i * width for j in range(len(keys))], vals, width, label=m)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(keys))])
        ax.set_xticklabels([f"{k[0]}\n{k[1]}" for k in keys])
        ax.set_ylabel("TFLOP/s (real tokens)")
        ax.set_title(title)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Varlen attention with ALiBi, {meta['heads']}x{meta['head_dim']} {meta['dtype']}, "
                 f"{meta['tokens']} tokens, {meta['gpu']}")
    fig.tight_layout()
    fig.savefig(RESULTS / "attention.png", dpi=110)


# ----------------------------------------------------------------------------------------------
# Tuning: time each kernel config alone; the best go into the kernel's table.
#
# Sessions 10-17 tuned with do_bench on the host-launched kernels: at max_seqlen 128 a launch's host work
# (the schedule, argument packing) took longer than the kernel, so the sweep timed the host (the same
# config timed 0.35 and 0.71 ms; every forward ~0.31 ms against 0.10 ms per layer in the training
# profile). The sweep now replays each call from a CUDA graph, which leaves only the GPU's time.

# Block-kernel candidates (block_m, block_n, warps, stages), max_seqlen > 128.
TUNE_FWD = [K(64, 32, 4, 3), K(64, 64, 4, 3), K(128, 64, 4, 3), K(128, 32, 4, 3), K(128, 64, 8, 3)]
TUNE_DQ = [K(64, 64, 4, 2), K(128, 32, 4, 3), K(64, 64, 4, 3), K(64, 32, 4, 3), K(128, 64, 8, 2)]
TUNE_DKDV = [K(32, 64, 4, 3), K(64, 64, 4, 2), K(32, 64, 4, 2), K(32, 128, 4, 2), K(64, 64, 4, 3)]
# Short-kernel candidates (heads per program, warps, stages), max_seqlen <= 128: every combination. More
# heads per program with stages > 1 lets Triton load the next head's tiles during this head's math.
TUNE_SHORT = [S(h, w, s) for h in (1, 2, 4) for w in (4, 8) for s in (1, 2, 3)]
# The backward also with its queries in blocks of 32 or 64 rows (smaller score tiles in registers).
TUNE_SHORT_BWD = TUNE_SHORT + [S(h, w, s, q) for q in (32, 64) for h in (1, 2) for w in (4, 8) for s in (1, 2)]
TUNE_SMALL_FWD = [S(2, 4, 2), S(4, 4, 2), S(4, 2, 2), S(1, 4, 1), S(12, 4, 2)]
TUNE_SMALL_BWD = [S(2, 4, 2), S(4, 2, 2), S(1, 4, 1), S(4, 4, 2)]
# The block kernels at max_seqlen <= 128 (candidates marked "long path"): smaller tiles, several programs
# per SM, at the price of a second backward kernel that recomputes the scores.
_BLOCKS_128 = [(64, 64), (64, 128), (128, 64), (32, 128)]
TUNE_LONG_128 = [K(m, n, w, s) for m, n in _BLOCKS_128 for w in (4, 8) for s in (2, 3)]


def _kernel_ms(fn):
    """Median GPU milliseconds of `fn` replayed from a CUDA graph (a plain timer under the interpreter)."""
    if QUICK:
        return bench(fn)
    return triton.testing.do_bench_cudagraph(fn, rep=50, return_mode="median")


def _time_config(w, cfg, scale, long_path=False, reference=None):
    """(fwd ms, bwd ms, max |difference| from `reference`'s (out, dqkv) scaled by their largest value)."""
    qkv, slopes = w.qkv, w.slopes

    def schedule():
        s = fa._Schedule(w.cu_seqlens, w.max_seqlen, w.n_tokens)
        if long_path:
            s.short_tiles = None
        return s

    def fwd():
        return fa._forward(qkv, slopes, scale, schedule(), cfg)

    def bwd():
        return fa._backward(w.dout, qkv, out, lse, slopes, scale, schedule(), cfg)
    try:
        out, lse = fwd()
        dqkv = bwd()
        diff = float("nan")
        if reference is not None:
            diff = max(((a.float() - b.float()).abs().max() / b.float().abs().max()).item()
                       for a, b in ((out, reference[0]), (dqkv, reference[1])))
        return _kernel_ms(fwd), _kernel_ms(bwd), diff, (out, dqkv)
    except Exception as e:  # e.g. out of shared memory for this config
        print(f"    {cfg}: {type(e).__name__}: {str(e).splitlines()[0][:120]}", flush=True)
        return float("inf"), float("inf"), float("nan"), None


def _trials(short):
    """(kernel field, config, long path?) to time, one kernel varied at a time around the table's config."""
    if not short:
        return [(f, k, False) for f, ks in (("forward", TUNE_FWD), ("backward_dq", TUNE_DQ),
                                           ("backward_dkdv", TUNE_DKDV)) for k in ks]
    trials = [(f, k, False) for f, ks in (("short_forward", TUNE_SHORT), ("short_backward", TUNE_SHORT_BWD),
                                         ("small_forward", TUNE_SMALL_FWD), ("small_backward", TUNE_SMALL_BWD))
              for k in ks]
    return trials + [(f, k, True) for f in ("forward", "backward_dq", "backward_dkdv") for k in TUNE_LONG_128]


def tune(args, device, dtype):
    """Vary one kernel's config at a time around the current table; print fwd and bwd time of each."""
    results = []
    for head_dim in args.tune_head_dims:
        for max_seqlen in args.max_seqlens:
            base = fa.select_config(head_dim, max_seqlen, device)
            short = fa._short_tiles(max_seqlen, device) is not None
            # "full": every sequence max_seqlen long, the training batch of the recipe's full-length rows.
            for mix in args.tune_mixes:
                w = Workload(max_seqlen, mix, args.heads, head_dim, args.tokens, device, dtype)
                print(f"tune head_dim={head_dim} max_seqlen={max_seqlen} {mix} ({len(w.lengths)} seqs); "
                      f"{base}", flush=True)
                base_fwd, base_bwd, _, reference = _time_config(w, base, head_dim ** -0.5)
                print(f"  the table's config: fwd {base_fwd:8.4f} ms  bwd {base_bwd:8.4f} ms", flush=True)
                results.append({"head_dim": head_dim, "max_seqlen": max_seqlen, "mix": mix, "kernel": "table",
                                "config": asdict(base), "fwd_ms": base_fwd, "bwd_ms": base_bwd})
                for field, k, long_path in _trials(short):
                    if mix != "mix" and field.startswith("small"):
                        continue  # no sequence is that short
                    if args.tune_kernels and field not in args.tune_kernels:
                        continue
                    fwd_ms, bwd_ms, diff, _ = _time_config(w, replace(base, **{field: k}), head_dim ** -0.5,
                                                           long_path, reference)
                    label = field + (" (long path)" if long_path else "")
                    results.append({"head_dim": head_dim, "max_seqlen": max_seqlen, "mix": mix, "kernel": label,
                                    "config": asdict(k), "fwd_ms": fwd_ms, "bwd_ms": bwd_ms, "max_diff": diff})
                    print(f"  {label:<27} {str(tuple(asdict(k).values())):<18} fwd {fwd_ms:8.4f} ms  "
                          f"bwd {bwd_ms:8.4f} ms  diff {diff:.1e}", flush=True)
    return results


def tune_summary(results) -> str:
    """Markdown: per workload, the table's config and the fastest candidates of each kernel."""
    lines = []
    for key in sorted({(r["head_dim"], r["max_seqlen"], r["mix"]) for r in results}):
        rows = [r for r in results if (r["head_dim"], r["max_seqlen"], r["mix"]) == key]
        table = next(r for r in rows if r["kernel"] == "table")
        lines += [f"### head_dim {key[0]}, max_seqlen {key[1]}, lengths {key[2]}", "",
                  f"The table's config: forward {table['fwd_ms']:.4f} ms, backward {table['bwd_ms']:.4f} ms "
                  "(each kernel alone, replayed from a CUDA graph).", "",
                  "| kernel | config | forward ms | backward ms | max diff |", "| --- | --- | ---: | ---: | ---: |"]
        for kernel in dict.fromkeys(r["kernel"] for r in rows if r["kernel"] != "table"):
            phase = "fwd_ms" if "forward" in kernel else "bwd_ms"
            best = sorted((r for r in rows if r["kernel"] == kernel), key=lambda r: r[phase])[:3]
            for r in best:
                lines.append(f"| {kernel} | {tuple(r['config'].values())} | {r['fwd_ms']:.4f} | "
                             f"{r['bwd_ms']:.4f} | {r['max_diff']:.1e} |")
        lines.append("")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny shapes on the CPU (interpreter)")
    parser.add_argument("--tune", action="store_true", help="sweep kernel configs instead of benchmarking")
    parser.add_argument("--tune-head-dims", type=int, nargs="+", default=[64])
    parser.add_argument("--max-seqlens", type=int, nargs="+", default=None)
    parser.add_argument("--tune-out", default=None, help="write the sweep as JSON (and .md) here")
    parser.add_argument("--tune-mixes", nargs="+", default=["full", "uniform", "mix"],
                        choices=["full", "uniform", "mix"], help="the lengths of the sweep's batches")
    parser.add_argument("--tune-kernels", nargs="+", default=None,
                        help="sweep only these kernels (config fields, e.g. short_backward; default: all)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    args = parser.parse_args()
    device = torch.device("cpu" if QUICK else "cuda")
    dtype = torch.float16 if QUICK else torch.bfloat16
    args.heads, args.head_dim = (2, 32) if QUICK else (12, 64)
    args.tokens = 256 if QUICK else 32768
    args.max_seqlens = args.max_seqlens or ([16, 64] if QUICK else [128, 512, 2048])
    if QUICK:
        args.tune_head_dims = [32]

    if args.tune:
        results = tune(args, device, dtype)
        summary = tune_summary(results)
        print(summary)
        if args.tune_out:
            Path(args.tune_out).write_text(json.dumps(results, indent=1))
            Path(args.tune_out).with_suffix(".md").write_text(
                f"# Attention kernel sweep ({torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}, "
                f"triton {triton.__version__})\n\n`python {' '.join(sys.argv)}`\n\n{summary}")
        return

    meta = {"gpu": torch.cuda.get_device_name() if device.type == "cuda" else "cpu (interpreter)",
            "torch": torch.__version__, "triton": triton.__version__,
            "dtype": str(dtype).replace("torch.", ""),
            "heads": args.heads, "head_dim": args.head_dim, "tokens": args.tokens,
            "configs": {str(n): asdict(fa.select_config(args.head_dim, n, device)) for n in args.max_seqlens}}
    print(TABLE_HEADER, flush=True)
    rows = run_benchmark(args, device, dtype, meta)
    ups = speedups(rows)
    print("\n" + TABLE_HEADER)
    print("\n".join(format_row(r) for r in rows))
    print("\nspeed-up of triton over the fastest same-function alternative "
          "(fwd | fwd+bwd | fwd+bwd over flash without bias):")
    for u in ups:
        print(f"  {u['max_seqlen']:>5} {u['mix']:<8} {format_speedup(u)}")


if __name__ == "__main__":
    main()
