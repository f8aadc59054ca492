"""The pretraining dataloader alone, on the CPU: samples/s of the recipe's train loader, and where a sample's
time goes (reading it from MDS, tokenizing it, masking it in the collator); and what tokenizing a
C4-length document costs, in full and from its start only (src/text_data.py `SampleTokenizer`).

    python benchmarks/dataloader.py --data data --out benchmarks/results/dataloader_cpu
    python benchmarks/dataloader.py --data data --pretokenized_data DIR --workers 0 2

DIR holds `synthetic-c4/{train,val}` and `tokenizer/` (what `python -m src.synthetic.prepare` writes);
`--pretokenized_data` a copy of the same corpus converted with `src/convert_dataset.py --tokenizer ...
--max_seq_len 128`. The loader is the Mosaic BERT recipe's (yamls/main/mosaic-bert-base-uncased.yaml), with
its number of workers overridden by `--workers`. Writes OUT.json and OUT.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from pretraining import dataloader_rate, recipe_config  # noqa: E402


def loader_rate(data: str, workers: int, batch_size: int, batches: int) -> float:
    from src.tokenization import load_tokenizer

    cfg = recipe_config("mosaic_bert", data, batch_size, [f"train_loader.num_workers={workers}"])
    rate, _, iterator = dataloader_rate(cfg, load_tokenizer(cfg.tokenizer_name), batch_size, batches)
    del iterator  # stops the workers before the next loader starts (one dataset per process at a time)
    return rate


def per_sample_microseconds(data: str, samples: int, batch_size: int) -> dict[str, float]:
    """One process, no workers: microseconds per sample of each stage of the loader."""
    from streaming import StreamingDataset

    from src.text_data import MLMCollator, SampleTokenizer
    from src.tokenization import load_tokenizer

    tokenizer = load_tokenizer(f"{data}/tokenizer")
    raw = StreamingDataset(local=f"{data}/synthetic-c4", split="train", shuffle=False, batch_size=batch_size)
    started = time.perf_counter()
    rows = [raw[i] for i in range(samples)]
    read_s = time.perf_counter() - started
    tokenize = SampleTokenizer(tokenizer, 128)
    tokenized = [dict(tokenize(row), sample_id=i) for i, row in enumerate(rows)]

    def through_transformers(row):  # what SampleTokenizer did before session 11 (it now calls the Rust tokenizer)
        return tokenizer(row["text"], truncation=True, max_length=128, padding="max_length",
                         return_token_type_ids=False)

    tokenize_passes = {"tokenize": [], "tokenize through transformers' call (before session 11)": []}
    for _ in range(3):  # interleaved, the median of three passes each
        for name, function in zip(tokenize_passes, (tokenize, through_transformers)):
            started = time.perf_counter()
            for row in rows:
                function(row)
            tokenize_passes[name].append(time.perf_counter() - started)
    # C4's documents average ~2,000 characters; the synthetic ones ~500, so four of them make one.
    long_texts = [{"text": " ".join(r["text"] for r in rows[i:i + 4])} for i in range(0, len(rows) - 3, 4)]
    long_us = {}
    for name, tokenize_long in (("whole text", lambda sample: tokenize.encode(sample["text"])),
                                ("from its start", tokenize)):
        started = time.perf_counter()
        for text in long_texts:
            tokenize_long(text)
        long_us[name] = (time.perf_counter() - started) / len(long_texts) * 1e6
    mean_chars = statistics.mean(len(t["text"]) for t in long_texts)

    collator = MLMCollator(tokenizer, mlm_probability=0.3)
    collator(tokenized[:batch_size])  # first call outside the clock
    passes = []  # the median of 5 passes: one pass moves by +-30% on a busy 2-core machine
    for _ in range(5):
        started = time.perf_counter()
        for begin in range(0, samples, batch_size):
            collator(tokenized[begin:begin + batch_size])
        passes.append(time.perf_counter() - started)
    collate_s = statistics.median(passes)
    return {"read from MDS": read_s / samples * 1e6,
            **{name: statistics.median(times) / samples * 1e6 for name, times in tokenize_passes.items()},
            "mask and collate": collate_s / samples * 1e6,
            **{f"tokenize a {mean_chars:,.0f}-character document, {name}": us for name, us in long_us.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--pretokenized_data")
    parser.add_argument("--workers", nargs="*", type=int, default=[0, 2])
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "dataloader_cpu"))
    args = parser.parse_args()

    stages = per_sample_microseconds(args.data, args.batches * args.batch_size, args.batch_size)
    rates = {}
    for kind, data in (("text, tokenized on the fly", args.data), ("pre-tokenized", args.pretokenized_data)):
        for workers in args.workers if data else []:
            rates[f"{kind}, {workers} workers"] = loader_rate(data, workers, args.batch_size, args.batches)
            print(f"{kind}, {workers} workers: {rates[f'{kind}, {workers} workers']:,.0f} samples/s", flush=True)

    meta = dict(command=" ".join(["python benchmarks/dataloader.py", *sys.argv[1:]]), cpus=os.cpu_count(),
                python=platform.python_version(), processor=platform.processor() or platform.machine())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".json").write_text(json.dumps(dict(meta=meta, microseconds_per_sample=stages,
                                                        samples_per_s=rates), indent=1))
    lines = [f"`{meta['command']}` ({meta['cpus']} CPUs, Python {meta['python']})", "",
             "| stage (one process) | microseconds per sample |", "| --- | ---: |"]
    lines += [f"| {stage} | {us:.0f} |" for stage, us in stages.items()]
    lines += ["", "| loader | samples/s |", "| --- | ---: |"]
    lines += [f"| {name} | {rate:,.0f} |" for name, rate in rates.items()]
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
