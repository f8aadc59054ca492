"""Prepare the embedded offline default: corpus, tokenizer, MDS shards and GLUE tasks, in one command.

    python -m src.synthetic.prepare --out_dir data [--train_docs N --val_docs N --vocab_size V --seed S
                                                    --glue_train_rows N --glue_val_rows N --force]

writes
    data/synthetic-c4-raw/   the corpus in C4's raw shape (train/, validation/, stats.json)
    data/tokenizer/          a WordPiece tokenizer trained on it (AutoTokenizer.from_pretrained)
    data/synthetic-c4/       the corpus as MDS (train/, val/), by src/convert_dataset.py as for C4
    data/synthetic-glue/     <task>/<split>.parquet for the eight GLUE tasks

Each step records what it was made from (`stats.json` for the corpus, `.complete.json` in the other
folders) and is skipped when its output is complete and made from the same settings; a step whose
input changed is redone, and so are the steps after it.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

from src.synthetic.corpus import read_texts, shard_paths, write_corpus
from src.synthetic.glue_tasks import DEFAULT_VALIDATION_ROWS, TASKS, write_glue_tasks
from src.synthetic.language import World

REPO_ROOT = Path(__file__).resolve().parents[2]
# Bump when the language or a generator changes, so that data prepared by older code is redone.
FORMAT_VERSION = 2
MARKER = ".complete.json"


def _read_json(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_json(path: Path, content: dict):
    path.write_text(json.dumps(content, indent=2, sort_keys=True) + "\n")


def _fresh(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def make_corpus(raw: Path, world: World, settings: dict) -> dict:
    stats = write_corpus(world, _fresh(raw), settings["train_docs"], settings["val_docs"], settings["seed"])
    _write_json(raw / "stats.json", {"settings": settings, **stats})
    return stats


def make_tokenizer(folder: Path, raw: Path, settings: dict) -> dict:
    from src.synthetic.tokenizer import token_counts, train_tokenizer

    tokenizer = train_tokenizer(read_texts(raw, "train"), _fresh(folder), settings["vocab_size"])
    counts = {split: token_counts(tokenizer, read_texts(raw, split)) for split in ("train", "validation")}
    tokens = {"vocab_size": len(tokenizer)}
    for split, count in counts.items():
        total = sum(count.values())
        token, n = count.most_common(1)[0]
        tokens[split] = {"tokens": total, "most_frequent_token": tokenizer.convert_ids_to_tokens(token),
                         "most_frequent_share": round(n / total, 4)}
    stats = _read_json(raw / "stats.json")
    stats["tokens"] = tokens  # the corpus's counts in tokens, next to its counts in documents and words
    _write_json(raw / "stats.json", stats)
    _write_json(folder / MARKER, {"settings": settings})
    return tokens


def make_mds(folder: Path, raw: Path, settings: dict) -> dict:
    """Convert with the same script and flags a user runs on C4's json.gz files."""
    shutil.rmtree(folder, ignore_errors=True)
    command = [sys.executable, str(REPO_ROOT / "src" / "convert_dataset.py"), "--dataset", "json",
               "--data_files", f"train={raw}/train/*.json.gz", f"val={raw}/validation/*.json.gz",
               "--out_root", str(folder), "--splits", "train", "val"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}")
    for split in ("train", "val"):
        if not (folder / split / "index.json").exists():
            raise RuntimeError(f"{folder / split} has no index.json after conversion:\n{result.stdout}")
    _write_json(folder / MARKER, {"settings": settings})
    indexes = {split: json.loads((folder / split / "index.json").read_text()) for split in ("train", "val")}
    return {split: sum(shard["samples"] for shard in index["shards"]) for split, index in indexes.items()}


def make_glue(folder: Path, world: World, settings: dict) -> dict:
    rows = write_glue_tasks(world, _fresh(folder), settings["seed"], settings["train_rows"],
                            settings["validation_rows"])
    _write_json(folder / MARKER, {"settings": settings})
    return rows


def prepare(out_dir: str | Path = "data", train_docs: int = 20_000, val_docs: int = 1_000,
            vocab_size: int = 4096, seed: int = 0, glue_train_rows: Optional[int] = None,
            glue_val_rows: int = DEFAULT_VALIDATION_ROWS,
            force: bool = False, log: Callable[[str], None] = print) -> dict[str, str]:
    """Run the steps that are not complete; returns {step: "made" | "skipped"}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    raw, tokenizer, mds, glue = (out / "synthetic-c4-raw", out / "tokenizer", out / "synthetic-c4",
                                 out / "synthetic-glue")
    corpus_settings = {"format_version": FORMAT_VERSION, "seed": seed, "train_docs": train_docs,
                       "val_docs": val_docs}
    tokenizer_settings = {"corpus": corpus_settings, "vocab_size": vocab_size}
    mds_settings = {"corpus": corpus_settings}
    glue_settings = {"format_version": FORMAT_VERSION, "seed": seed,
                     "train_rows": {t: glue_train_rows for t in TASKS} if glue_train_rows else None,
                     "validation_rows": {t: glue_val_rows for t in TASKS}}
    world: Optional[World] = None

    def get_world() -> World:
        nonlocal world
        world = world or World(seed)
        return world

    steps = [
        ("corpus", raw, raw / "stats.json", corpus_settings,
         lambda: make_corpus(raw, get_world(), corpus_settings),
         lambda: len(shard_paths(raw, "train")) > 0 and len(shard_paths(raw, "validation")) > 0),
        ("tokenizer", tokenizer, tokenizer / MARKER, tokenizer_settings,
         lambda: make_tokenizer(tokenizer, raw, tokenizer_settings),
         lambda: (tokenizer / "tokenizer.json").exists()),
        ("mds", mds, mds / MARKER, mds_settings, lambda: make_mds(mds, raw, mds_settings),
         lambda: (mds / "train" / "index.json").exists() and (mds / "val" / "index.json").exists()),
        ("glue", glue, glue / MARKER, glue_settings, lambda: make_glue(glue, get_world(), glue_settings),
         lambda: all((glue / t / f"{s}.parquet").exists() for t, spec in TASKS.items() for s in spec.splits)),
    ]
    outcome: dict[str, str] = {}
    corpus_made = False
    for i, (name, folder, marker, settings, make, complete) in enumerate(steps, start=1):
        recorded = _read_json(marker)
        # A remade corpus invalidates the tokenizer and the MDS shards; GLUE depends on the seed only.
        stale = force or (corpus_made and name in ("tokenizer", "mds"))
        if not stale and recorded and recorded.get("settings") == settings and complete():
            log(f"[{i}/{len(steps)}] {name}: up to date in {folder}")
            outcome[name] = "skipped"
            continue
        log(f"[{i}/{len(steps)}] {name}: writing {folder} ...")
        start = time.perf_counter()
        summary = make()
        log(f"[{i}/{len(steps)}] {name}: done in {time.perf_counter() - start:.1f}s: {json.dumps(summary)}")
        outcome[name] = "made"
        corpus_made = corpus_made or name == "corpus"
    return outcome


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out_dir", default="data")
    parser.add_argument("--train_docs", type=int, default=20_000)
    parser.add_argument("--val_docs", type=int, default=1_000)
    parser.add_argument("--vocab_size", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--glue_train_rows", type=int, default=None,
                        help="train rows of every GLUE task (default: per task, 500 to 2000)")
    parser.add_argument("--glue_val_rows", type=int, default=DEFAULT_VALIDATION_ROWS)
    parser.add_argument("--force", action="store_true", help="redo every step")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    prepare(args.out_dir, args.train_docs, args.val_docs, args.vocab_size, args.seed, args.glue_train_rows,
            args.glue_val_rows, args.force)
    print(f"synthetic data ready in {args.out_dir} ({time.perf_counter() - start:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
