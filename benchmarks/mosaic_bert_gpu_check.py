"""Mosaic BERT-base on one GPU: is each attention backend right, and how fast is it?

For each configuration (attention backend `torch`, `sdpa`, `triton`; then the fastest available one with
the fused LayerNorm swapped in; then the Triton attention inside one compiled encoder graph,
`compile_encoder`, where the count of compiled graphs is also checked), on one MLM batch of 256
sequences padded to 128 tokens with random lengths and 30% of the real tokens masked:
- correctness: forward + backward under bf16 autocast against an fp32 reference (backend `torch`, TF32
  off, same weights, dropout off); the loss must agree within bf16 tolerance, and the gradient (all
  parameters as one vector) within a small relative error;
- speed: forward + backward (no optimizer step) in training mode, timed with CUDA events after a
  warm-up; the median step gives samples/s and real (unpadded) tokens/s.
Prints a table, writes benchmarks/results/mosaic_bert_gpu_check.json, exits 1 if any check fails.

Needs only torch, transformers and triton (no Composer):  python benchmarks/mosaic_bert_gpu_check.py
"""
import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from src.attention import load_triton_kernel  # noqa: E402
from src.bert_layers import BertAttention, BertForMaskedLM  # noqa: E402
from src.configuration_bert import BertConfig  # noqa: E402

LOSS_RTOL = 1e-2  # bf16 keeps 8 bits of mantissa; the loss is a mean over ~11k tokens
GRAD_RTOL = 5e-2  # ||g - g_ref|| / ||g_ref|| over all parameters


def make_batch(batch_size: int, seqlen: int, vocab_size: int, mlm_probability: float, device, seed: int):
    generator = torch.Generator(device="cpu").manual_seed(seed)
    lengths = torch.randint(8, seqlen + 1, (batch_size,), generator=generator)
    attention_mask = (torch.arange(seqlen)[None, :] < lengths[:, None]).long()
    input_ids = torch.randint(5, vocab_size, (batch_size, seqlen), generator=generator) * attention_mask
    masked = (torch.rand(batch_size, seqlen, generator=generator) < mlm_probability) & attention_mask.bool()
    labels = torch.where(masked, input_ids, torch.full_like(input_ids, -100))
    token_type_ids = torch.zeros_like(input_ids)
    batch = dict(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                 labels=labels)
    return {key: value.to(device) for key, value in batch.items()}


def set_backend(model: torch.nn.Module, backend: str) -> None:
    for module in model.modules():
        if isinstance(module, BertAttention):
            module.backend = backend


def loss_and_gradient(model, batch, autocast: bool):
    model.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        loss = model(**batch).loss
    loss.backward()
    gradient = torch.cat([p.grad.flatten().float() for p in model.parameters() if p.grad is not None])
    return loss.item(), gradient


def time_steps(model, batch, warmup: int, steps: int) -> list[float]:
    """Milliseconds of each forward + backward under bf16 autocast, in training mode."""
    model.train()
    times = []
    for step in range(warmup + steps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        model.zero_grad(set_to_none=True)
        start.record()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(**batch).loss
        loss.backward()
        end.record()
        torch.cuda.synchronize()
        if step >= warmup:
            times.append(start.elapsed_time(end))
    return times


def layer_norm_kernel_check(device) -> dict:
    """The fused LayerNorm kernel against torch on one BERT-sized activation (fp32 and bf16)."""
    from src.fused_layernorm import layer_norm_triton

    result = {}
    for dtype, tolerance in ((torch.float32, 1e-4), (torch.bfloat16, 5e-2)):
        torch.manual_seed(0)
        x = torch.randn(256 * 128, 768, device=device, dtype=dtype, requires_grad=True)
        weight = torch.randn(768, device=device, requires_grad=True)
        bias = torch.randn(768, device=device, requires_grad=True)
        upstream = torch.randn_like(x)
        outputs = []
        for fn in (layer_norm_triton, torch.nn.functional.layer_norm):
            y = fn(x, (768,), weight.to(dtype), bias.to(dtype), 1e-12)
            outputs.append((y, *torch.autograd.grad(y, (x, weight, bias), upstream)))
        errors = [(a.float() - b.float()).abs().max().item() / max(b.float().abs().max().item(), 1e-6)
                  for a, b in zip(*outputs)]
        result[str(dtype).removeprefix("torch.")] = {
            "max_rel_error_y_dx_dweight_dbias": errors, "ok": max(errors) < tolerance}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--seqlen", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", type=Path,
                        default=REPO_ROOT / "benchmarks" / "results" / "mosaic_bert_gpu_check.json")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("This check needs a CUDA GPU.")
        return 1
    device = torch.device("cuda")

    # BERT-base (bert-base-uncased's shape, vocabulary rounded up to 30528) with the recipe's dropouts.
    config = BertConfig(vocab_size=30528, attention_probs_dropout_prob=0.0, hidden_dropout_prob=0.1)
    torch.manual_seed(17)
    model = BertForMaskedLM(config).to(device)
    batch = make_batch(args.batch_size, args.seqlen, config.vocab_size, 0.3, device, seed=0)
    real_tokens = int(batch["attention_mask"].sum())

    # fp32 reference: plain torch attention, no TF32, dropout off.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model.eval()
    set_backend(model, "torch")
    reference_loss, reference_gradient = loss_and_gradient(model, batch, autocast=False)

    kernel, import_error = load_triton_kernel()
    configurations = [("torch", False, False), ("sdpa", False, False)]
    if kernel is not None:
        configurations += [("triton", False, False), ("triton", True, False), ("triton", True, True)]
    else:
        configurations += [("sdpa", True, False)]
    rows, failed = [], False
    for backend, fused_layernorm, compile_encoder in configurations:
        name = backend + (" + fused_layernorm" if fused_layernorm else "")
        name += " + compiled" if compile_encoder else ""
        row = {"configuration": name, "attention_backend": backend, "fused_layernorm": fused_layernorm,
               "compile_encoder": compile_encoder}
        try:
            candidate = model
            if fused_layernorm or compile_encoder:
                candidate = copy.deepcopy(model)
            if fused_layernorm:
                from src.fused_layernorm import apply_fused_layernorm

                row["layernorms_replaced"] = apply_fused_layernorm(candidate)
            if compile_encoder:
                from torch._dynamo.utils import counters

                candidate.bert.encoder.compile_encoder = True
                counters.clear()
            set_backend(candidate, backend)
            candidate.eval()
            loss, gradient = loss_and_gradient(candidate, batch, autocast=True)
            row["loss"] = loss
            row["loss_rel_error"] = abs(loss - reference_loss) / abs(reference_loss)
            grad_error = (gradient - reference_gradient).norm() / reference_gradient.norm()
            row["grad_rel_error"] = grad_error.item()
            torch.cuda.reset_peak_memory_stats()
            times = time_steps(candidate, batch, args.warmup, args.steps)
            median_ms = statistics.median(times)
            row.update(
                step_ms_median=median_ms, step_ms_all=times,
                samples_per_s=args.batch_size / (median_ms / 1e3),
                real_tokens_per_s=real_tokens / (median_ms / 1e3),
                peak_memory_gb=torch.cuda.max_memory_allocated() / 2**30,
            )
            row["ok"] = row["loss_rel_error"] <= LOSS_RTOL and row["grad_rel_error"] <= GRAD_RTOL
            if compile_encoder:  # one graph in eval mode, one in training mode: the attention did not split it
                row["compiled_graphs"] = counters["stats"]["unique_graphs"]
                row["graph_breaks"] = sum(counters["graph_break"].values())
                row["ok"] &= row["compiled_graphs"] == 2 and row["graph_breaks"] == 0
        except Exception as error:  # one failing backend must not hide the others' results
            row.update(ok=False, error=f"{type(error).__name__}: {error}")
        failed |= not row["ok"]
        rows.append(row)
        if candidate is not model:
            del candidate
            torch.cuda.empty_cache()

    try:
        layer_norm = layer_norm_kernel_check(device)
        failed |= not all(check["ok"] for check in layer_norm.values())
    except Exception as error:
        layer_norm = {"ok": False, "error": f"{type(error).__name__}: {error}"}
        failed = True

    header = (f"{'configuration':<36}{'loss':>9}{'loss rel err':>14}{'grad rel err':>14}{'ms/step':>10}"
              f"{'samples/s':>11}{'real tok/s':>12}{'peak GB':>9}  status")
    print(f"Mosaic BERT-base, batch {args.batch_size}x{args.seqlen}, {real_tokens} real tokens, "
          f"bf16 autocast, forward+backward on {torch.cuda.get_device_name()}; "
          f"fp32 reference loss {reference_loss:.5f}")
    print(header)
    print("-" * len(header))
    for row in rows:
        if "error" in row:
            print(f"{row['configuration']:<36}  FAILED: {row['error']}")
            continue
        print(f"{row['configuration']:<36}{row['loss']:>9.5f}{row['loss_rel_error']:>14.2e}"
              f"{row['grad_rel_error']:>14.2e}{row['step_ms_median']:>10.2f}{row['samples_per_s']:>11.0f}"
              f"{row['real_tokens_per_s']:>12.0f}{row['peak_memory_gb']:>9.2f}  "
              f"{'ok' if row['ok'] else 'FAILED'}"
              + (f" ({row['compiled_graphs']} graphs, {row['graph_breaks']} breaks)" if "compiled_graphs" in row else ""))
    if kernel is None:
        print(f"triton attention skipped: {import_error}")
    print(f"fused LayerNorm kernel vs torch: {json.dumps(layer_norm)}")

    result = {
        "device": torch.cuda.get_device_name(), "torch": torch.__version__,
        "triton": __import__("triton").__version__, "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "batch_size": args.batch_size, "seqlen": args.seqlen, "real_tokens": real_tokens,
        "warmup_steps": args.warmup, "timed_steps": args.steps, "reference_loss_fp32": reference_loss,
        "tolerances": {"loss_rel": LOSS_RTOL, "grad_rel": GRAD_RTOL}, "rows": rows,
        "triton_attention_import_error": None if kernel is not None else str(import_error),
        "fused_layernorm_kernel": layer_norm, "ok": not failed,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
