"""Training-step throughput of HF BERT-base and Mosaic BERT-base on one GPU, side by side.

A raw training loop (no Composer): bf16 autocast, fused AdamW, batch 256 x 128, 30% of the real tokens
masked, on full-length batches and on a mix with 30% padding. For each variant: samples/s, real
tokens/s, MFU and peak memory.

MFU counts each model's own matmul FLOPs per sample, forward x 3 (forward + backward):
  encoder   per real token and layer: QKV 6h^2 + attention output 2h^2 + MLP 4hi (GLU: 6hi)
  attention per layer: 4 * sum over sequences of L_real^2 * h   (QK^T and PV on real tokens only)
  MLM head  per predicted token: transform 2h^2 + decoder 2hV   (30% of the real tokens)
against 790 TFLOP/s, the bf16 matrix rate measured on this H200 (an 8192^3 bf16 matmul through PyTorch).
HF BERT computes its head on every token and attends over padding; that extra work is not counted, so
its MFU shows how much of the chip goes to useful work.

    python benchmarks/throughput.py            # all variants, writes benchmarks/results/throughput.{json,md,png}
    python benchmarks/throughput.py --quick    # fewer steps
    python benchmarks/throughput.py --profile "Mosaic BERT (full recipe)"   # also: where its step's time goes

samples/s, MFU and "GPU ms/step" come from steps queued back to back, as a training loop runs them (from
session 8 on; before, they were the median of steps timed one at a time). "samples/s, each step alone" is
that older figure: each step timed between two waits for the GPU, so it also pays the GPU's idle time while
the host queues the step's first kernels. "host waits/step" counts the step's waits for the GPU (torch's
sync debug mode); "host ms/step" is the host's time to queue one step while the GPU is held busy (its
launch cost; a step whose launch cost nears its GPU time cannot hide any other host work).

--profile runs torch.profiler over a few steps of the named variants (full-length batches) and writes
benchmarks/results/throughput_profile.md: GPU time per kernel category (matmuls, attention, LayerNorm,
optimizer, other element-wise work), the share of the step in which the GPU is idle (host overhead), and,
from a second run recording the GPU's activity only, which kernels the GPU sat idle waiting for.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import json
import platform
import statistics
import sys
import time
import types
import warnings
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from src.bert_layers import BertForMaskedLM  # noqa: E402
from src.configuration_bert import BertConfig  # noqa: E402
from src.fused_layernorm import apply_fused_layernorm  # noqa: E402

PEAK_TFLOPS = 790.0
VOCAB = 30528  # bert-base-uncased's 30522 rounded up to a multiple of 8 (Mosaic BERT does this too)
HIDDEN, LAYERS, HEADS, INTERMEDIATE = 768, 12, 12, 3072
MLM_PROBABILITY = 0.3


def make_batch(batch_size: int, seqlen: int, padding: float, generator: torch.Generator) -> dict:
    if padding == 0:
        lengths = torch.full((batch_size,), seqlen)
    else:  # uniform lengths with the requested mean share of padding
        low = max(1, int(round(seqlen * (1 - 2 * padding))))
        lengths = torch.randint(low, seqlen + 1, (batch_size,), generator=generator)
    mask = (torch.arange(seqlen)[None, :] < lengths[:, None]).long()
    ids = torch.randint(5, VOCAB - 8, (batch_size, seqlen), generator=generator) * mask
    picked = (torch.rand(batch_size, seqlen, generator=generator) < MLM_PROBABILITY) & mask.bool()
    labels = torch.where(picked, ids, torch.full_like(ids, -100))
    batch = dict(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids), labels=labels)
    batch = {k: v.cuda(non_blocking=True) for k, v in batch.items()}
    # What src.text_data.MLMCollator counts on the host (Mosaic BERT sizes its tensors from them without
    # waiting for the GPU); HF BERT's variants drop them.
    batch.update(real_token_counts=lengths.tolist(), predicted_token_counts=picked.sum(1).tolist())
    return batch


HOST_COUNTS = ("real_token_counts", "predicted_token_counts")


def without_host_counts(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k not in HOST_COUNTS}


def train_flops(batch: dict, glu: bool) -> float:
    lengths = batch["attention_mask"].sum(1).double()
    tokens = lengths.sum().item()
    predicted = (batch["labels"] != -100).sum().item()
    mlp = (6 if glu else 4) * HIDDEN * INTERMEDIATE
    encoder = tokens * LAYERS * (8 * HIDDEN**2 + mlp)
    attention = LAYERS * 4 * (lengths**2).sum().item() * HIDDEN
    head = predicted * (2 * HIDDEN**2 + 2 * HIDDEN * VOCAB)
    return 3 * (encoder + attention + head)


def hf_bert(attn_implementation: str) -> torch.nn.Module:
    import transformers

    config = transformers.BertConfig(vocab_size=VOCAB, attn_implementation=attn_implementation)
    return transformers.BertForMaskedLM(config)


def mosaic_bert(glu: bool, backend: str = "auto", fused_layernorm: bool = True, compile_regions: bool = False,
                fused_geglu: bool = False, geglu_kernel: str | None = None, compile_encoder: bool = False,
                **config_switches) -> torch.nn.Module:
    config = BertConfig(vocab_size=VOCAB, use_glu=glu, attention_backend=backend, attention_probs_dropout_prob=0.0,
                        compile_regions=compile_regions, fused_geglu=fused_geglu, compile_encoder=compile_encoder,
                        **config_switches)
    model = BertForMaskedLM(config)
    if fused_layernorm:
        apply_fused_layernorm(model)
    if geglu_kernel:  # another of src/fused_geglu.py's kernels than the default (an earlier session's)
        import src.fused_geglu as kernels

        chosen = types.SimpleNamespace(runs_on=kernels.runs_on,
                                       geglu_dropout=functools.partial(kernels.geglu_dropout, kernel=geglu_kernel))
        for module in model.modules():
            if getattr(module, "fused", None) is not None:
                module.fused = chosen
    return model


# The recipe with each layer compiled between attention calls and the fused GEGLU: several variants
# below build it and differ only in how they run it.
REGIONAL_RECIPE = functools.partial(mosaic_bert, glu=True, compile_regions=True, fused_geglu=True)
# The recipe YAML's model settings of session 13 (the compiled encoder and the Triton dropout mask), and
# since session 14 (bf16 hidden states too). The YAML's cuda_graphs is a variant of its own here: it buys
# host time, which the steps below, queued back to back, do not show.
ENCODER_RECIPE = functools.partial(REGIONAL_RECIPE, compile_encoder=True, triton_hidden_dropout=True)
YAML_RECIPE = functools.partial(ENCODER_RECIPE, low_precision_hidden_states=True)

VARIANTS = {
    # name: (builder, GLU FLOPs?, torch.compile?)
    "HF BERT eager": (lambda: hf_bert("eager"), False, False),
    "HF BERT SDPA": (lambda: hf_bert("sdpa"), False, False),
    "HF BERT SDPA + compile": (lambda: hf_bert("sdpa"), False, True),
    "Mosaic BERT (full recipe)": (lambda: mosaic_bert(glu=True), True, False),
    "Mosaic BERT (full recipe) + compile": (lambda: mosaic_bert(glu=True), True, True),
    "Mosaic BERT (full recipe) + regional compile": (lambda: mosaic_bert(glu=True, compile_regions=True), True, False),
    "Mosaic BERT (full recipe) + regional compile + fused GEGLU": (REGIONAL_RECIPE, True, False),
    "Mosaic BERT (full recipe) + regional compile + fused GEGLU (flat kernel)": (
        functools.partial(REGIONAL_RECIPE, geglu_kernel="flat"), True, False),
    # The same model run differently (training_step, INDUCTOR_OPTIONS).
    "Mosaic BERT (full recipe) + regional compile + fused GEGLU, sizes from the GPU": (
        REGIONAL_RECIPE, True, False),
    "Mosaic BERT (full recipe) + regional compile + fused GEGLU, Composer's DecoupledAdamW": (
        REGIONAL_RECIPE, True, False),
    "Mosaic BERT (full recipe) + regional compile + fused GEGLU, Inductor coordinate descent": (
        REGIONAL_RECIPE, True, False),
    # The whole encoder, Triton attention included, as one compiled graph (compile_encoder); the MLM head
    # is its own region as in the recipe.
    "Mosaic BERT (full recipe) + encoder compile + fused GEGLU": (
        functools.partial(REGIONAL_RECIPE, compile_encoder=True), True, False),
    # The same with the GEGLU kernels of sessions 5-9 (one Philox call per four values, not eight).
    "Mosaic BERT (full recipe) + encoder compile + fused GEGLU (tiled kernel)": (
        functools.partial(REGIONAL_RECIPE, compile_encoder=True, geglu_kernel="tiled"), True, False),
    # The same with CUDA graphs (config cuda_graphs: the compiled encoder in "reduce-overhead" mode), and
    # with bf16 hidden states (config low_precision_hidden_states).
    "Mosaic BERT (full recipe) + encoder compile + fused GEGLU + CUDA graphs": (
        functools.partial(REGIONAL_RECIPE, compile_encoder=True, cuda_graphs=True), True, False),
    "Mosaic BERT (full recipe) + encoder compile + fused GEGLU, bf16 hidden states": (
        functools.partial(REGIONAL_RECIPE, compile_encoder=True, low_precision_hidden_states=True), True, False),
    # The hidden dropout's mask from src/fused_dropout.py's kernel instead of Inductor's (config
    # triton_hidden_dropout): with the recipe's GEGLU only the attention output's dropout changes; without
    # GLU the MLP's too.
    "Mosaic BERT (full recipe) + encoder compile + fused GEGLU, Triton hidden dropout": (
        ENCODER_RECIPE, True, False),
    # The recipe as it now is, under two Inductor settings (INDUCTOR_OPTIONS) that change the generated
    # reductions: the LayerNorm and bias gradients' column sums (~1.2 ms of the step in session 12's profile,
    # 4 aten::sum finishing passes and their memsets per layer).
    ("Mosaic BERT (full recipe) + encoder compile + fused GEGLU, Triton hidden dropout, bf16 hidden states, "
     "Inductor coordinate descent"): (YAML_RECIPE, True, False),
    ("Mosaic BERT (full recipe) + encoder compile + fused GEGLU, Triton hidden dropout, bf16 hidden states, "
     "no split reductions"): (YAML_RECIPE, True, False),
    # The recipe as it now is with other cuBLAS settings (BLAS_OPTIONS).
    ("Mosaic BERT (full recipe) + encoder compile + fused GEGLU, Triton hidden dropout, bf16 hidden states, "
     "cuBLASLt"): (YAML_RECIPE, True, False),
    ("Mosaic BERT (full recipe) + encoder compile + fused GEGLU, Triton hidden dropout, bf16 hidden states, "
     "no reduced-precision reductions"): (YAML_RECIPE, True, False),
    "Mosaic BERT (full recipe) + encoder compile + fused GEGLU + CUDA graphs, Triton hidden dropout": (
        functools.partial(ENCODER_RECIPE, cuda_graphs=True), True, False),
    # That with bf16 hidden states between the layers: the recipe YAML's model since session 14.
    "Mosaic BERT (full recipe) + encoder compile + fused GEGLU, Triton hidden dropout, bf16 hidden states": (
        YAML_RECIPE, True, False),
    "Mosaic BERT no GLU + encoder compile, Triton hidden dropout": (
        lambda: mosaic_bert(glu=False, compile_regions=True, compile_encoder=True, triton_hidden_dropout=True),
        False, False),
    "Mosaic BERT no GLU + encoder compile, Triton hidden dropout, bf16 hidden states": (
        lambda: mosaic_bert(glu=False, compile_regions=True, compile_encoder=True, triton_hidden_dropout=True,
                            low_precision_hidden_states=True), False, False),
    "Mosaic BERT (full recipe) + encoder compile": (
        lambda: mosaic_bert(glu=True, compile_regions=True, compile_encoder=True), True, False),
    "Mosaic BERT no GLU": (lambda: mosaic_bert(glu=False), False, False),
    "Mosaic BERT no GLU + compile": (lambda: mosaic_bert(glu=False), False, True),
    "Mosaic BERT no GLU + regional compile": (lambda: mosaic_bert(glu=False, compile_regions=True), False, False),
    "Mosaic BERT no GLU + encoder compile": (
        lambda: mosaic_bert(glu=False, compile_regions=True, compile_encoder=True), False, False),
    "Mosaic BERT no GLU + encoder compile, bf16 hidden states": (
        lambda: mosaic_bert(glu=False, compile_regions=True, compile_encoder=True, low_precision_hidden_states=True),
        False, False),
    "Mosaic BERT no GLU, SDPA attention": (lambda: mosaic_bert(glu=False, backend="sdpa"), False, False),
}


# Inductor settings a variant compiles under (by a part of its name); its compiled code is dropped
# before and after, so no other variant reuses it.
INDUCTOR_OPTIONS = {
    # Tunes the block sizes of each generated element-wise / reduction kernel (LayerNorm, dropout, ...).
    "Inductor coordinate descent": {"coordinate_descent_tuning": True},
    # Inductor splits a long reduction (a column sum over all tokens) into partial sums and a second pass;
    # unsplit, one kernel reduces each column.
    "no split reductions": {"split_reductions": False},
}


# cuBLAS settings a variant runs under (by a part of its name), restored after it. Session 12's profile
# found a memset before every cuBLAS GEMM (166 per step) and ~0.9 ms of GPU idle in front of them; torch
# calls cuBLAS by default, and cuBLASLt (with torch's own workspace) or GEMMs without reduced-precision
# split-K reductions may choose other kernels.
BLAS_OPTIONS = {
    "cuBLASLt": lambda: torch.backends.cuda.preferred_blas_library("cublaslt"),
    "no reduced-precision reductions": lambda: setattr(
        torch.backends.cuda.matmul, "allow_bf16_reduced_precision_reduction", False),
}


@contextlib.contextmanager
def variant_settings(name: str):
    """The variant's INDUCTOR_OPTIONS and BLAS_OPTIONS for everything run inside (its compilation
    included); Inductor's compiled code is dropped before and after a variant that changes its options."""
    options = {k: v for part, opts in INDUCTOR_OPTIONS.items() if part in name for k, v in opts.items()}
    blas_before = (torch.backends.cuda.preferred_blas_library(),
                   torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction)
    if options:
        torch._dynamo.reset()
    try:
        for part, apply in BLAS_OPTIONS.items():
            if part in name:
                apply()
        with torch._inductor.config.patch(options):
            yield
    finally:
        if options:
            torch._dynamo.reset()
        torch.backends.cuda.preferred_blas_library(blas_before[0])
        torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = blas_before[1]


KERNEL_CATEGORIES = [  # (category, substrings of CUDA kernel names), first match wins
    ("communication (NCCL)", ("nccl",)),
    ("attention", ("_short_fwd", "_short_bwd", "_fwd_kernel", "_bwd_kernel", "_bwd_preprocess", "_block_table",
                   "flash", "fmha", "attention", "softmax")),
    ("matmul", ("gemm", "nvjet", "cutlass", "xmma", "cublas", "sm90_", "sm80_", "wgmma")),
    ("layernorm", ("layer_norm", "layernorm")),
    ("optimizer", ("multi_tensor", "adam", "foreach")),
    ("embedding / gather / index", ("index", "gather", "scatter", "embedding", "nonzero", "cub::")),
]


def kernel_category(name: str) -> str:
    lowered = name.lower()
    for category, patterns in KERNEL_CATEGORIES:
        if any(p in lowered for p in patterns):
            return category
    return "other element-wise / reductions"


def profile_steps(step, batch: dict, steps: int, cpu: bool = True):
    """`(profiler, wall ms per step)` of `steps` calls of `step(batch)` under torch.profiler (CUDA activity,
    and the CPU's unless `cpu` is false: recording every CPU op slows the host enough to change where the
    GPU waits for it)."""
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    started = time.perf_counter()
    activities = [ProfilerActivity.CPU, ProfilerActivity.CUDA] if cpu else [ProfilerActivity.CUDA]
    # Input shapes (CPU ops only) tell which layer's tensors a kernel worked on (`kernel_sources`).
    with profile(activities=activities, record_shapes=cpu) as prof:
        for _ in range(steps):
            step(batch)
        torch.cuda.synchronize()
    return prof, (time.perf_counter() - started) * 1000 / steps


def gpu_ms_by_kernel(prof, steps: int) -> dict[str, float]:
    """GPU milliseconds per step of each CUDA kernel in a torch.profiler run of `steps` steps."""
    kernels: dict[str, float] = {}
    for event in prof.key_averages():
        gpu_us = getattr(event, "self_device_time_total", None) or getattr(event, "self_cuda_time_total", 0)
        # "Optimizer.step#AdamW.step" and the like are annotations spanning kernels already counted.
        if gpu_us > 0 and event.device_type == torch.autograd.DeviceType.CUDA and "#" not in event.key:
            kernels[event.key] = kernels.get(event.key, 0.0) + gpu_us / 1000 / steps
    return kernels


def top_kernels(prof, steps: int, count: int = 20) -> dict[str, float]:
    """The `count` kernels with the most GPU ms per step, most first: name (cut to 120 characters) -> ms."""
    ranked = sorted(gpu_ms_by_kernel(prof, steps).items(), key=lambda kv: -kv[1])[:count]
    return {kernel[:120]: round(ms, 3) for kernel, ms in ranked}


def gpu_spans(prof) -> list[tuple[str, float, float]]:
    """`(name, start us, end us)` of every kernel, copy and memset the GPU ran in a torch.profiler run."""
    return [(e.name, e.time_range.start, e.time_range.end) for e in prof.events()
            if e.device_type == torch.autograd.DeviceType.CUDA and "#" not in e.name]


def gpu_idle_gaps(spans: list[tuple[str, float, float]], steps: int) -> tuple[float, list[tuple[str, float, float]]]:
    """Where the GPU sat idle: `(idle ms per step, [(kernel, idle ms per step, gaps per step), ...])`, most
    idle first. Each stretch with nothing running (overlapping spans merged) is charged to the span that
    ends it: the work the GPU was waiting for the host to launch."""
    idle_us: dict[str, float] = {}
    gaps: dict[str, int] = {}
    busy_until = None
    for name, start, end in sorted(spans, key=lambda span: span[1]):
        if busy_until is not None and start > busy_until:
            idle_us[name] = idle_us.get(name, 0.0) + start - busy_until
            gaps[name] = gaps.get(name, 0) + 1
        busy_until = end if busy_until is None else max(busy_until, end)
    by_kernel = sorted(((name, us / 1000 / steps, gaps[name] / steps) for name, us in idle_us.items()),
                       key=lambda row: -row[1])
    return sum(idle_us.values()) / 1000 / steps, by_kernel


def merged(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The intervals' union as sorted, disjoint intervals."""
    union: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if union and start <= union[-1][1]:
            union[-1] = (union[-1][0], max(union[-1][1], end))
        else:
            union.append((start, end))
    return union


def overlap_length(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    """Total length of the intersection of two unions of disjoint, sorted intervals."""
    total, i, j = 0.0, 0, 0
    while i < len(a) and j < len(b):
        total += max(0.0, min(a[i][1], b[j][1]) - max(a[i][0], b[j][0]))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


def communication_overlap(spans: list[tuple[str, float, float]], steps: int) -> dict[str, float]:
    """NCCL's GPU time per step (its kernels' union: concurrent ones count once), split into the part spent
    beside other kernels (hidden behind the backward, or slowing it by sharing the SMs) and the part it ran
    alone, which adds to the step as it stands. A NCCL kernel's span includes its wait for the other ranks."""
    nccl = merged([(start, end) for name, start, end in spans if "nccl" in name.lower()])
    compute = merged([(start, end) for name, start, end in spans if "nccl" not in name.lower()])
    total = sum(end - start for start, end in nccl)
    beside = overlap_length(nccl, compute)
    return {"nccl_ms": round(total / 1000 / steps, 3), "nccl_beside_compute_ms": round(beside / 1000 / steps, 3),
            "nccl_alone_ms": round((total - beside) / 1000 / steps, 3)}


def kernel_sources(prof, steps: int, kernels: set[str]) -> list[tuple[str, str, str, float, float]]:
    """Who launched the named kernels: `(kernel, launching op chain, its input shapes, GPU ms per step,
    launches per step)`, most time first. The chain is the launching CPU op (an aten op, or the name
    Inductor gives a Triton kernel it launches) and its two nearest enclosing ops, innermost first; the
    shapes are the launching op's (recorded with `record_shapes`). Tells apart kernels of one name that
    different layers or tensors launch, e.g. which reductions are bias gradients, and where memsets come
    from."""
    rows: dict[tuple[str, str, str], list[float]] = {}
    for event in prof.events():
        launched = [k for k in getattr(event, "kernels", []) if k.name in kernels]
        if not launched or event.device_type != torch.autograd.DeviceType.CPU:
            continue
        chain, parent = [event.name], event.cpu_parent
        while parent is not None and len(chain) < 3:
            chain.append(parent.name)
            parent = parent.cpu_parent
        shapes = str([list(shape) for shape in (event.input_shapes or []) if shape])
        for kernel in launched:
            row = rows.setdefault((kernel.name, " < ".join(chain), shapes), [0.0, 0.0])
            row[0] += kernel.duration / 1000 / steps
            row[1] += 1 / steps
    return sorted(((*key, ms, count) for key, (ms, count) in rows.items()), key=lambda row: -row[3])


def gpu_ms_by_category(prof, steps: int) -> dict[str, float]:
    categories: dict[str, float] = {}
    for kernel, ms in gpu_ms_by_kernel(prof, steps).items():
        categories[kernel_category(kernel)] = categories.get(kernel_category(kernel), 0.0) + ms
    return categories


def training_step(name: str, dynamic: bool):
    """`(step, glu)`: `step(batch)` runs one bf16 training step of the variant (fused AdamW) and returns
    the loss; `glu` says which FLOP count applies."""
    builder, glu, compiled = VARIANTS[name]
    torch.manual_seed(0)
    model = builder().cuda().train()
    if "Composer's DecoupledAdamW" in name:  # one parameter at a time, a host wait each (src/optimizers.py)
        from composer.optim import DecoupledAdamW

        optimizer = DecoupledAdamW(model.parameters(), lr=1e-4)
    else:  # the same kernel as the recipes' decoupled_adamw (src.optimizers.DecoupledAdamW)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    step_model = torch.compile(model, dynamic=dynamic) if compiled else model

    # HF BERT takes no host-side counts; the "sizes from the GPU" variant is Mosaic BERT without them
    # (every unpadding reads its sizes back from the GPU, as before the collator counted them).
    drop_counts = name.startswith("HF") or "sizes from the GPU" in name

    def step(batch):
        if drop_counts:
            batch = without_host_counts(batch)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = step_model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    return step, glu


def profile(name: str, batch_size: int, seqlen: int, steps: int = 5) -> str:
    """Where one variant's training step spends its GPU time, by kernel category and the top kernels."""
    step, glu = training_step(name, dynamic=False)
    batch = make_batch(batch_size, seqlen, 0.0, torch.Generator().manual_seed(1))
    for _ in range(10):
        step(batch)
    prof, wall_ms = profile_steps(step, batch, steps)
    kernels = gpu_ms_by_kernel(prof, steps)
    busy_ms = sum(kernels.values())
    categories = gpu_ms_by_category(prof, steps)
    flops = train_flops(batch, glu)
    lines = [f"### {name}, batch {batch_size} x {seqlen}, full length", "",
             f"Step {wall_ms:.2f} ms under the profiler (its overhead included); GPU busy {busy_ms:.2f} ms "
             f"({busy_ms / wall_ms:.0%}); the counted FLOPs at the busy time would be "
             f"{flops / (busy_ms / 1000) / 1e12 / PEAK_TFLOPS:.0%} MFU.", "",
             "| kernel category | ms per step | share of GPU time |", "| --- | ---: | ---: |"]
    for category, ms in sorted(categories.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {category} | {ms:.2f} | {ms / busy_ms:.0%} |")
    ranked = sorted(kernels, key=lambda kernel: -kernels[kernel])  # most GPU time first
    lines += ["", "| top kernels | category | ms per step |", "| --- | --- | ---: |"]
    for kernel in ranked[:40]:
        lines.append(f"| `{kernel[:120]}` | {kernel_category(kernel)} | {kernels[kernel]:.3f} |")
    top = set(ranked[:20])
    top |= {kernel for kernel in kernels if "memset" in kernel.lower() or "_sum" in kernel}
    lines += ["", "Who launched the top kernels, the memsets and the sum reductions (the launching op, "
              "innermost first, and its input shapes):", "",
              "| kernel | launched by | input shapes | ms per step | launches per step |",
              "| --- | --- | --- | ---: | ---: |"]
    for kernel, chain, shapes, ms, count in kernel_sources(prof, steps, top)[:60]:
        lines.append(f"| `{kernel[:60]}` | {chain[:150]} | {shapes[:120]} | {ms:.3f} | {count:.1f} |")
    lines += ["", idle_report(step, batch, steps)]
    del step  # its closure holds the model and the optimizer
    torch.cuda.empty_cache()
    return "\n".join(lines) + "\n"


def idle_report(step, batch: dict, steps: int) -> str:
    """Where the step leaves the GPU idle, profiled recording the GPU's activity only (so that the host runs
    about as fast as in training): total idle time and the kernels the GPU waited for most."""
    try:
        prof, wall_ms = profile_steps(step, batch, steps, cpu=False)
        idle_ms, waits = gpu_idle_gaps(gpu_spans(prof), steps)
    except Exception as error:  # the kernel table above stands without this
        return f"GPU idle analysis failed: {type(error).__name__}: {error}"
    lines = [f"Profiled again recording the GPU only: step {wall_ms:.2f} ms, GPU idle {idle_ms:.2f} ms per step "
             "between kernels. The kernels the GPU waited for most (each idle stretch charged to the kernel "
             "that ended it):", "", "| kernel waited for | category | idle ms per step | gaps per step |",
             "| --- | --- | ---: | ---: |"]
    for kernel, ms, count in waits[:15]:
        lines.append(f"| `{kernel[:120]}` | {kernel_category(kernel)} | {ms:.3f} | {count:.1f} |")
    return "\n".join(lines)


def count_host_syncs(step, batch: dict) -> int:
    """How many times one training step makes the host wait for the GPU (`.item()`, `nonzero`, a
    boolean-mask index, ...): torch's sync debug mode warns at each."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            step(batch)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return len(host_waits(caught))


def is_host_wait(message) -> bool:
    """Whether a warning's message is the one torch's sync debug mode ("warn") gives at a host wait."""
    return "synchroniz" in str(message)


def host_waits(caught: list) -> list:
    """The warnings, among `caught`, that torch's sync debug mode ("warn") gave for a host wait."""
    return [w for w in caught if is_host_wait(w.message)]


def host_enqueue_ms(step, batch) -> float | None:
    """Host milliseconds to queue one call of `step(batch)` while a sleep kernel holds the GPU, so the host
    never waits for it: the step's launch cost alone. A step whose launch cost approaches its GPU time hides
    no other host work (collating and copying the next batch, a trainer's bookkeeping). None when the step
    waited for the GPU after all (a host wait, or a full launch queue)."""
    torch.cuda.synchronize()
    torch.cuda._sleep(1_000_000_000)  # about half a second of GPU clock cycles
    started = time.perf_counter()
    step(batch)
    elapsed_ms = (time.perf_counter() - started) * 1000
    torch.cuda.synchronize()
    return elapsed_ms if elapsed_ms < 300 else None


def back_to_back_seconds_per_step(step, batches: list[dict], steps: int) -> float:
    """GPU seconds per step over `steps` steps queued one after another, as a training loop runs them: the
    host queues each step while the GPU still runs the previous ones, so the launch cost hides behind GPU
    work unless it exceeds it. (Timing each step alone, between two waits, charges every step the GPU's
    idle time while the host queues its first kernels.)"""
    torch.cuda.synchronize()
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin.record()
    for i in range(steps):
        step(batches[i % len(batches)])
    end.record()
    end.synchronize()
    return begin.elapsed_time(end) / 1000 / steps


def measure(name: str, padding: float, steps: int, warmup: int, batch_size: int, seqlen: int) -> dict:
    step, glu = training_step(name, dynamic=padding > 0)
    generator = torch.Generator().manual_seed(1)
    batches = [make_batch(batch_size, seqlen, padding, generator) for _ in range(4)]

    started = time.perf_counter()
    for i in range(warmup):
        loss = step(batches[i % len(batches)])
    torch.cuda.synchronize()
    warmup_s = time.perf_counter() - started
    host_syncs = count_host_syncs(step, batches[0])
    host_ms = statistics.median([ms for ms in map(functools.partial(host_enqueue_ms, step), batches) if ms is not None]
                                or [float("nan")])
    torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(steps):
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        loss = step(batches[i % len(batches)])
        end.record()
        end.synchronize()
        times.append(begin.elapsed_time(end) / 1000)
    step_alone_s = statistics.median(times)
    step_s = back_to_back_seconds_per_step(step, batches, steps)
    if not torch.isfinite(loss):
        raise RuntimeError(f"{name}: loss is {loss.item()}")
    flops = statistics.mean(train_flops(b, glu) for b in batches)
    tokens = statistics.mean(b["attention_mask"].sum().item() for b in batches)
    result = dict(variant=name, padding=padding, samples_per_s=batch_size / step_s, tokens_per_s=tokens / step_s,
                  step_ms=step_s * 1000, tflops=flops / step_s / 1e12, mfu=flops / step_s / 1e12 / PEAK_TFLOPS,
                  step_alone_ms=step_alone_s * 1000, samples_per_s_step_alone=batch_size / step_alone_s,
                  gflop_per_sample=flops / batch_size / 1e9, peak_memory_gib=torch.cuda.max_memory_allocated() / 2**30,
                  warmup_s=warmup_s, final_loss=loss.item(), host_syncs_per_step=host_syncs,
                  host_ms_per_step=host_ms)
    del step  # its closure holds the model and the optimizer
    torch.cuda.empty_cache()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    parser.add_argument("--paddings", nargs="*", type=float, default=[0.0, 0.3])
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--seqlen", type=int, default=128)
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results" / "throughput"))
    parser.add_argument("--profile", nargs="*", default=[], metavar="VARIANT", help="variants to profile")
    parser.add_argument("--repeats", type=int, default=1,
                        help="measure every variant this many times, interleaved; the table gives the median run")
    args = parser.parse_args()
    steps, warmup = (10, 5) if args.quick else (30, 10)

    runs = []
    for _ in range(args.repeats):  # interleaved, so that a slow spell of the host hits every variant alike
        for padding in args.paddings:
            for name in args.variants:
                try:
                    with variant_settings(name):
                        result = measure(name, padding, steps, warmup, args.batch_size, args.seqlen)
                except Exception as error:  # one broken variant must not hide the others' numbers
                    result = dict(variant=name, padding=padding, error=f"{type(error).__name__}: {error}"[:500])
                runs.append(result)
                print(json.dumps(result), flush=True)
    results = median_runs(runs)

    import triton
    import transformers
    meta = dict(gpu=torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__,
                transformers=transformers.__version__, python=platform.python_version(),
                batch_size=args.batch_size, seqlen=args.seqlen, peak_tflops=PEAK_TFLOPS,
                repeats=args.repeats, command=" ".join(["python benchmarks/throughput.py", *sys.argv[1:]]))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".json").write_text(json.dumps(dict(meta=meta, results=results, runs=runs), indent=1))
    lines = [f"{meta['gpu']}, torch {meta['torch']}, triton {meta['triton']}, transformers {meta['transformers']}; "
             f"batch {args.batch_size} x {args.seqlen}, bf16 autocast, fused AdamW; `{meta['command']}`", "",
             "| variant | padding | samples/s | tokens/s | MFU | GFLOP/sample | peak GiB | host waits/step | "
             "host ms/step | GPU ms/step | samples/s, each step alone | samples/s of each run |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['variant']} | {r['padding']:.0%} | error: {r['error'][:80]} | | | | | | | | | |")
        else:
            lines.append(f"| {r['variant']} | {r['padding']:.0%} | {r['samples_per_s']:,.0f} | {r['tokens_per_s']:,.0f} "
                         f"| {r['mfu']:.1%} | {r['gflop_per_sample']:.1f} | {r['peak_memory_gib']:.1f} "
                         f"| {r['host_syncs_per_step']} | {r.get('host_ms_per_step', float('nan')):.1f} "
                         f"| {r['step_ms']:.1f} | {r['samples_per_s_step_alone']:,.0f} "
                         f"| {', '.join(f'{x:,.0f}' for x in r['samples_per_s_runs'])} |")
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    plot(results, args.out + ".png", meta)
    print("\n".join(lines))
    if args.profile:
        reports = [f"# Where the training step's GPU time goes ({meta['gpu']}, torch {meta['torch']})", "",
                   "Kernel names grouped by `KERNEL_CATEGORIES` in benchmarks/throughput.py.", ""]
        for name in args.profile:
            try:
                with variant_settings(name):
                    reports.append(profile(name, args.batch_size, args.seqlen))
            except Exception as error:
                reports.append(f"### {name}\n\nprofile failed: {type(error).__name__}: {error}\n")
        Path(args.out + "_profile.md").write_text("\n".join(reports))
        print("\n".join(reports))


def median_runs(runs: list[dict]) -> list[dict]:
    """One row per (variant, padding), in first-measured order: the run with the median samples/s, with
    every run's samples/s beside it (an error if every run failed)."""
    grouped: dict[tuple, list[dict]] = {}
    for run in runs:
        grouped.setdefault((run["variant"], run["padding"]), []).append(run)
    rows = []
    for group in grouped.values():
        ok = sorted((r for r in group if "error" not in r), key=lambda r: r["samples_per_s"])
        if not ok:
            rows.append(group[0])
            continue
        rows.append({**ok[(len(ok) - 1) // 2], "samples_per_s_runs": [r["samples_per_s"] for r in group if "error" not in r]})
    return rows


def plot(results: list[dict], path: str, meta: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in results if "error" not in r]
    paddings = sorted({r["padding"] for r in ok})
    fig, axes = plt.subplots(1, len(paddings), figsize=(7 * len(paddings), 5), squeeze=False)
    for ax, padding in zip(axes[0], paddings):
        rows = [r for r in ok if r["padding"] == padding]
        ax.barh([r["variant"] for r in rows], [r["samples_per_s"] for r in rows],
                color=["tab:orange" if r["variant"].startswith("Mosaic") else "tab:blue" for r in rows])
        for i, r in enumerate(rows):
            ax.text(r["samples_per_s"], i, f" {r['samples_per_s']:,.0f} ({r['mfu']:.0%} MFU)", va="center", fontsize=8)
        ax.set_title(f"{padding:.0%} padding")
        ax.set_xlabel("training samples/s")
        ax.invert_yaxis()
    fig.suptitle(f"BERT-base training throughput, {meta['gpu']}, batch {meta['batch_size']}x{meta['seqlen']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
