"""What stands between the compiled encoder and CUDA graphs (a probe for the next attempt, on one GPU).

Session 10 compiled the encoder with `mode="reduce-overhead"` and Inductor skipped the graphs ("mutated
inputs"). This script
1. captures the fused GEGLU in a CUDA graph and replays it twice: its seed is drawn on the device, so
   each replay must drop a different tenth of the values (a host seed would be frozen into the graph);
2. trains a 2-layer Mosaic BERT-base (compile_encoder, fused GEGLU, bf16, batch 64 x 128, no dropout) for
   4 steps with the config's `cuda_graphs` (the compiled encoder in "reduce-overhead" mode) and without,
   one and two micro-batches per step: the losses must agree; run it under `TORCH_LOGS=cudagraphs` and
   the log says why any graph was skipped. Not `+cudagraphs`: with debug logging on, torch 2.11 builds
   the reason for a re-recording with a helper that fails ("length mismatch between inputs,
   recorded_data_ptr, and placeholders"), which is what stopped this probe in sessions 10 and 11.
   (Session 10's skip, "mutated inputs", was cu_seqlens: Inductor's analysis counted it as written by
   the attention kernels; see src/flash_attn_triton.py `_locate`.)
Prints a JSON summary and writes benchmarks/results/cuda_graphs_probe.json.

    TORCH_LOGS=cudagraphs python benchmarks/cuda_graphs_probe.py
"""
import json
import sys
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

import src.bert_layers as bert_layers  # noqa: E402
from src.configuration_bert import BertConfig  # noqa: E402
from src.fused_geglu import geglu_dropout  # noqa: E402
from throughput import VOCAB, make_batch  # noqa: E402


def geglu_replays() -> dict:
    gated = torch.randn(4096, 2 * 3072, device="cuda", dtype=torch.bfloat16)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # compile and autotune outside the capture
        geglu_dropout(gated, 0.1)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = geglu_dropout(gated, 0.1)
    dropped = []
    for _ in range(2):
        graph.replay()
        dropped.append(out == 0)
    return dict(ok=not torch.equal(dropped[0], dropped[1]) and abs(dropped[0].float().mean().item() - 0.1) < 0.01,
                dropped_share=dropped[0].float().mean().item(),
                same_mask_share=(dropped[0] == dropped[1]).float().mean().item())


def train(cuda_graphs: bool, micro_batches: int) -> list[float]:
    """Losses of 4 steps of a 2-layer Mosaic BERT-base (compile_encoder, fused GEGLU, bf16, no dropout so
    that the two modes must agree), each step `micro_batches` micro-batches of 64 x 128 (8,192 tokens: a
    multiple of the token bucket, so the real tokens are the same in both modes), with the config's
    `cuda_graphs` or without. Each call builds a new model in this process, as a benchmark does."""
    torch.manual_seed(0)
    config = BertConfig(vocab_size=VOCAB, num_hidden_layers=2, compile_encoder=True, compile_regions=True,
                        fused_geglu=True, cuda_graphs=cuda_graphs, attention_probs_dropout_prob=0.0,
                        hidden_dropout_prob=0.0)
    model = bert_layers.BertForMaskedLM(config).cuda().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    generator = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(4):
        for _ in range(micro_batches):
            batch = make_batch(64, 128, 0.0, generator)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = model(**batch).loss
            loss.backward()
            losses.append(loss.detach())
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return [loss.item() for loss in losses]


def encoder_with_cuda_graphs() -> dict:
    """The config's cuda_graphs against the default: same losses, no graph skipped."""
    from torch._dynamo.utils import counters

    result = {}
    for micro_batches in (1, 2):
        plain = train(False, micro_batches)
        counters.clear()
        graphs = train(True, micro_batches)
        result[f"{micro_batches} micro-batches"] = dict(
            losses=graphs, losses_without=plain, largest_difference=max(abs(a - b) for a, b in zip(plain, graphs)),
            inductor_counters={k: v for k, v in counters["inductor"].items() if "cudagraph" in k})
    return result


def main() -> None:
    summary = dict(gpu=torch.cuda.get_device_name(), torch=torch.__version__)
    for name, probe in (("GEGLU in a captured CUDA graph", geglu_replays),
                        ("encoder with CUDA graphs", encoder_with_cuda_graphs)):
        try:
            summary[name] = probe()
        except Exception as error:  # the other probe still runs
            summary[name] = dict(error=f"{type(error).__name__}: {error}"[:1000])
        print(json.dumps({name: summary[name]}), flush=True)
    (REPO_ROOT / "benchmarks" / "results" / "cuda_graphs_probe.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
