"""Composer's own per-batch host time: the same tiny Mosaic BERT, optimizer and batches through a raw
PyTorch loop and through `Trainer.fit` (the model built by main.main from yamls/test/main.yaml).

The model is tiny so the step's compute is small and the difference is the Trainer's Python: its events,
callbacks, loggers, time accounting and (unless `train_metrics: false`) the training metrics. On a GPU
that time is not hidden behind queued kernels, because Composer waits for the GPU several times per batch
(docs/performance.md lists where).

    python benchmarks/composer_overhead.py --data DIR     # DIR: what `python -m src.synthetic.prepare` wrote
    python benchmarks/composer_overhead.py --data DIR --profile benchmarks/results/composer_overhead_profile_cpu.txt

`--profile FILE` also runs the Composer loop (train_metrics off) under cProfile and writes where its
time goes, by function (own time and with callees), to FILE.
"""
import argparse
import cProfile
import io
import json
import pstats
import sys
import time
from pathlib import Path
from typing import Optional

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import main as pretraining  # noqa: E402
from src.config import load_config  # noqa: E402

TINY = ["model.name=mosaic_bert", "model.model_config.hidden_size=16", "model.model_config.intermediate_size=32",
        "model.model_config.num_attention_heads=1", "model.model_config.num_hidden_layers=1", "max_seq_len=32",
        "global_train_batch_size=8", "device_train_microbatch_size=8", "eval_loader=null", "save_folder=null",
        "max_duration=1000000ba", "console_log_interval=100000ba", "train_loader.num_workers=0",
        "callbacks.speed_monitor.window_size=50", "precision=fp32"]


def per_batch_ms(data: str, batches: int, extra: list[str], profile: Optional[cProfile.Profile] = None
                 ) -> tuple[float, float]:
    cfg = load_config(str(REPO / "yamls" / "test" / "main.yaml"),
                      [f"data_local={data}/synthetic-c4", f"tokenizer_name={data}/tokenizer", *TINY, *extra])
    trainer = pretraining.main(cfg, return_trainer=True, do_train=False)
    model, optimizer = trainer.state.model, trainer.state.optimizers[0]
    cached = [batch for _, batch in zip(range(20), trainer.state.train_dataloader)]
    sequence = [cached[i % len(cached)] for i in range(batches)]  # the same batches for both loops

    def step(batch):
        loss = model.loss(model(batch), batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    for batch in cached[:5]:
        step(batch)
    started = time.perf_counter()
    for batch in sequence:
        step(batch)
    raw = (time.perf_counter() - started) / batches * 1000
    started = time.perf_counter()
    if profile:
        profile.enable()
    trainer.fit(train_dataloader=sequence, duration=f"{batches}ba")
    if profile:
        profile.disable()
    composer = (time.perf_counter() - started) / batches * 1000
    trainer.close()
    return raw, composer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "composer_overhead_cpu.json"))
    parser.add_argument("--profile", help="write a cProfile summary of the Composer loop (train_metrics off) here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for train_metrics in (True, False):
        raw, composer = per_batch_ms(args.data, args.batches, [f"train_metrics={str(train_metrics).lower()}"])
        rows.append(dict(train_metrics=train_metrics, raw_loop_ms=raw, composer_ms=composer,
                         composer_adds_ms=composer - raw))
    for r in rows:
        print(f"train_metrics={r['train_metrics']}: raw loop {r['raw_loop_ms']:.2f} ms/batch, Composer "
              f"{r['composer_ms']:.2f} ms/batch: Composer adds {r['composer_adds_ms']:.2f} ms of host time per batch")
    Path(args.out).write_text(json.dumps(dict(device="cpu", batches=args.batches, rows=rows), indent=1) + "\n")
    if args.profile:
        write_profile(args.data, args.batches, Path(args.profile))


def write_profile(data: str, batches: int, out: Path) -> None:
    """The Composer loop under cProfile: the functions with the most own time, then with callees."""
    profile = cProfile.Profile()
    raw, composer = per_batch_ms(data, batches, ["train_metrics=false"], profile)
    text = io.StringIO()
    text.write(f"# Composer loop under cProfile: {batches} batches, train_metrics=false, CPU, 1 thread\n"
               f"# (cProfile slows Python down: raw loop {raw:.2f} ms/batch, Composer {composer:.2f} ms/batch)\n")
    for order, count in (("tottime", 45), ("cumulative", 70)):
        text.write(f"\n## sorted by {order}\n")
        pstats.Stats(profile, stream=text).strip_dirs().sort_stats(order).print_stats(count)
    out.write_text(text.getvalue())
    print(f"profile written to {out}")


if __name__ == "__main__":
    main()
