"""Data-parallel scaling of the Mosaic BERT recipe's training step without Composer: one GPU vs several.

A raw loop (the recipe YAML's model settings: throughput.py's YAML_RECIPE with CUDA graphs; bf16 autocast,
fused AdamW, batch 256 x 128 per GPU, full-length batches, the collator's host-side counts) wrapped in
torch.nn.parallel.DistributedDataParallel. Run it once per world size; the JSON lines it appends to
`--out` (one per run) are compared by world size. Composer's own 2-GPU figure
(`benchmarks/pretraining.py speed`) minus this one is what Composer adds; this one minus perfect scaling
is what the gradient all-reduce costs.

    torchrun --nproc_per_node 1 benchmarks/ddp_scaling.py
    torchrun --nproc_per_node 2 benchmarks/ddp_scaling.py [--bf16_gradients] [--profile] [--padding 0.3]

--no_cuda_graphs runs the compiled encoder without replaying CUDA graphs (the recipe before session 12);
--bf16_gradients all-reduces the gradients in bf16 (DDP's bf16_compress_hook: half the bytes);
--profile adds the GPU time per kernel category of rank 0 (communication included) and its 20 largest
kernels over 5 steps;
--padding 0.3 gives the batches throughput.py's padded mix (unpadded, the step gets shorter while the
all-reduce keeps its size: the case of real data, whose documents are shorter than max_seq_len).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

import throughput  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_size", type=int, default=256, help="per GPU")
    parser.add_argument("--seqlen", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--bf16_gradients", action="store_true")
    parser.add_argument("--no_cuda_graphs", action="store_true")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--padding", type=float, default=0.0, help="fraction of padding tokens per batch")
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results" / "ddp_scaling.jsonl"))
    args = parser.parse_args()

    dist.init_process_group("nccl")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank)))
    torch.manual_seed(0)
    model = throughput.YAML_RECIPE(cuda_graphs=not args.no_cuda_graphs)
    model = model.cuda().train()
    ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[torch.cuda.current_device()],
                                                    gradient_as_bucket_view=True)
    if args.bf16_gradients:
        from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import bf16_compress_hook

        ddp.register_comm_hook(None, bf16_compress_hook)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    generator = torch.Generator().manual_seed(1 + rank)
    batches = [throughput.make_batch(args.batch_size, args.seqlen, args.padding, generator) for _ in range(4)]

    def step(batch):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = ddp(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for i in range(args.warmup):
        step(batches[i % len(batches)])
    torch.cuda.synchronize()
    dist.barrier()
    started = time.perf_counter()
    for i in range(args.steps):
        step(batches[i % len(batches)])
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    slowest = torch.tensor([elapsed], device="cuda")
    dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
    per_gpu = args.batch_size * args.steps / slowest.item()
    result = dict(gpus=world, bf16_gradients=args.bf16_gradients, cuda_graphs=not args.no_cuda_graphs,
                  padding=args.padding, samples_per_s=per_gpu * world,
                  samples_per_s_per_gpu=per_gpu, step_ms=slowest.item() / args.steps * 1000,
                  mfu=throughput.train_flops(batches[0], True) * args.steps / slowest.item() / 1e12
                  / throughput.PEAK_TFLOPS, gpu=torch.cuda.get_device_name(), torch=torch.__version__)
    if args.profile:
        result["profile"] = profile_categories(step, batches[0])
    if rank == 0:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "a") as out:
            out.write(json.dumps(result) + "\n")
        print(json.dumps(result), flush=True)
    dist.destroy_process_group()


def profile_categories(step, batch, steps: int = 5) -> dict:
    """GPU ms per step by kernel category (benchmarks/throughput.py's, plus NCCL), and the step's wall ms."""
    prof, wall_ms = throughput.profile_steps(step, batch, steps)
    categories = {"wall (under the profiler)": wall_ms, **throughput.gpu_ms_by_category(prof, steps)}
    # Session 15: under CUDA graphs the categories summed to more than the step; the top kernels show what
    # each holds.
    return {**{k: round(v, 2) for k, v in categories.items()}, "top_kernels": throughput.top_kernels(prof, steps),
            # how much of NCCL's time the backward hides (session 16: Composer's seemed not to)
            "communication": throughput.communication_overlap(throughput.gpu_spans(prof), steps)}


if __name__ == "__main__":
    main()
