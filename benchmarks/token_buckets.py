"""Which CUDA-graph shapes a pretraining run meets, and at which batch each shows up first.

With `cuda_graphs` the compiled encoder records a CUDA graph, forward and backward, for every token count it
is given, after padding the count up to the next multiple of `cuda_graph_token_bucket`
(`bert_layers.pad_token_count`), and compiles anew for every sequence-length bucket (the longest sequence,
rounded up to a power of two). The first batch with a new shape pays for the recording; on several GPUs
every rank waits for it at the next all-reduce. This script reads the recipe's training batches exactly as
a run on GPUS ranks sees them (the same streaming partition, shuffle and microbatches; on the CPU, no model)
and lists, per rank, the batches where a shape appears for the first time, to set beside the stalls in the
SpeedMonitor's windows of `pretraining.py speed` (docs/performance.md, session 16):

    composer -n 2 benchmarks/token_buckets.py --data .gpu_data_v2 --batches 150 \\
        --out benchmarks/results/token_buckets_2gpu.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root, for `src`

from pretraining import recipe_config  # noqa: E402  (benchmarks/, this script's folder)


def padded_token_count(lengths: torch.Tensor, bucket: int) -> tuple[int, int]:
    """The encoder's input shape for a microbatch of sequences of these lengths: (token count after
    `pad_token_count`, sequence-length bucket), as `BertEncoder.forward` computes them under cuda_graphs."""
    from src.bert_layers import pad_token_count, sequence_length_bucket

    lengths = lengths[lengths > 0]
    tokens = int(lengths.sum())
    seq_bucket = sequence_length_bucket(int(lengths.max()))
    cu_seqlens = torch.nn.functional.pad(lengths.cumsum(0), (1, 0)).to(torch.int32)
    padded, _ = pad_token_count(torch.zeros(tokens, 1), cu_seqlens, seq_bucket, bucket)
    return padded.shape[0], seq_bucket


def first_appearances(shapes: list[list[tuple[int, int]]]) -> list[dict]:
    """For each batch (a list of its microbatches' shapes), the shapes not seen in any earlier batch."""
    seen: set[tuple[int, int]] = set()
    firsts = []
    for batch, microbatch_shapes in enumerate(shapes, start=1):
        new = sorted(set(microbatch_shapes) - seen)
        seen.update(new)
        if new:
            firsts.append({"batch": batch, "new_shapes": [list(shape) for shape in new]})
    return firsts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--batch_size", type=int, default=256, help="microbatch per GPU, as pretraining.py speed")
    parser.add_argument("--global_batch", type=int, default=None, help="as pretraining.py speed")
    parser.add_argument("--batches", type=int, default=150)
    parser.add_argument("--out", required=True)
    parser.add_argument("override", nargs="*", help="key=value overrides of the recipe YAML")
    args = parser.parse_args()

    from composer.utils import dist
    from omegaconf import OmegaConf

    from src.configuration_bert import BertConfig
    from src.text_data import build_text_dataloader
    from src.tokenization import load_tokenizer

    dist.initialize_dist("cpu")
    cfg = recipe_config("mosaic_bert", args.data, args.batch_size, args.override, global_batch=args.global_batch)
    world = dist.get_world_size()
    device_batch = cfg.global_train_batch_size // world
    bucket = cfg.model.model_config.get("cuda_graph_token_bucket", BertConfig().cuda_graph_token_bucket)
    loader = build_text_dataloader(OmegaConf.to_container(cfg.train_loader, resolve=True),
                                   load_tokenizer(cfg.tokenizer_name), device_batch, seed=cfg.seed, unused=[])
    started = time.perf_counter()
    shapes, real_tokens = [], []
    for index, batch in enumerate(loader):
        if index == args.batches:
            break
        lengths = batch["attention_mask"].sum(dim=1)
        microbatches = lengths.split(args.batch_size)
        shapes.append([padded_token_count(m, bucket) for m in microbatches])
        real_tokens.append([int(m.sum()) for m in microbatches])
    rank = {"rank": dist.get_global_rank(), "shapes": shapes, "real_tokens": real_tokens,
            "first_appearances": first_appearances(shapes)}
    ranks = dist.all_gather_object(rank)
    if dist.get_global_rank() == 0:
        together = first_appearances([[s for r in ranks for s in r["shapes"][i]] for i in range(len(shapes))])
        result = dict(gpus=world, microbatch=args.batch_size, global_batch=cfg.global_train_batch_size,
                      batches=len(shapes), cuda_graph_token_bucket=bucket, ranks=ranks,
                      # a shape new to any rank stalls them all at the next all-reduce
                      first_appearances_any_rank=together, seconds=round(time.perf_counter() - started, 1))
        Path(args.out).write_text(json.dumps(result))
        print(f"{world} rank(s), microbatches of {args.batch_size}, {len(shapes)} batches: shapes "
              "(padded tokens, sequence bucket) first met at")
        for first in together:
            print(f"  batch {first['batch']}: {first['new_shapes']}")


if __name__ == "__main__":
    main()
