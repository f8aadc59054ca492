"""What stands between the compiled encoder and CUDA graphs (a probe for the next attempt, on one GPU).

Session 10 compiled the encoder with `mode="reduce-overhead"` and Inductor skipped the graphs ("mutated
inputs"). This script
1. captures the fused GEGLU in a CUDA graph and replays it twice: its seed is drawn on the device, so
   each replay must drop a different tenth of the values (a host seed would be frozen into the graph);
2. trains a 2-layer Mosaic BERT-base (compile_encoder, fused GEGLU, bf16, batch 64 x 128) for 3 steps
   with the encoder compiled in "reduce-overhead" mode; run it under `TORCH_LOGS=+cudagraphs` and the
   log names the graph input that is mutated and why each graph was skipped.
Prints a JSON summary and writes benchmarks/results/cuda_graphs_probe.json.

    TORCH_LOGS=+cudagraphs python benchmarks/cuda_graphs_probe.py
"""
import functools
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


def encoder_in_reduce_overhead_mode() -> dict:
    # The encoder's torch.compile, in "reduce-overhead" mode (CUDA graphs), for this process only.
    bert_layers.compiled = functools.cache(
        lambda function: torch.compile(function, dynamic=False, mode="reduce-overhead"))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=VOCAB, num_hidden_layers=2, compile_encoder=True, fused_geglu=True,
                        attention_probs_dropout_prob=0.0)
    model = bert_layers.BertForMaskedLM(config).cuda().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    generator = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(3):
        batch = make_batch(64, 128, 0.0, generator)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return dict(losses=losses)


def main() -> None:
    summary = dict(gpu=torch.cuda.get_device_name(), torch=torch.__version__)
    for name, probe in (("GEGLU in a captured CUDA graph", geglu_replays),
                        ("encoder in reduce-overhead mode", encoder_in_reduce_overhead_mode)):
        try:
            summary[name] = probe()
        except Exception as error:  # the other probe still runs
            summary[name] = dict(error=f"{type(error).__name__}: {error}"[:1000])
        print(json.dumps({name: summary[name]}), flush=True)
    (REPO_ROOT / "benchmarks" / "results" / "cuda_graphs_probe.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
