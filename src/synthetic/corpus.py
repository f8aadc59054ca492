"""Write the synthetic corpus in C4's raw shape: gzipped JSON lines `{"text", "timestamp", "url"}`.

    <out>/train/c4-train.00000-of-00004.json.gz ... <out>/validation/c4-validation.00000-of-00001.json.gz

The same world and seed give the same bytes (gzip headers carry no time or file name).
"""
from __future__ import annotations

import datetime
import gzip
import json
import random
import re
from collections import Counter
from pathlib import Path
from typing import Iterator

from src.synthetic.language import Document, World, words_of

SPLITS = ("train", "validation")
EPOCH = datetime.datetime(2019, 4, 18, tzinfo=datetime.timezone.utc)  # around when C4 was crawled


def shard_name(split: str, index: int, count: int) -> str:
    return f"c4-{split}.{index:05d}-of-{count:05d}.json.gz"


def shard_paths(raw_dir: str | Path, split: str) -> list[Path]:
    return sorted(Path(raw_dir, split).glob(f"c4-{split}.*.json.gz"))


def documents(world: World, split: str, count: int, seed: int) -> Iterator[Document]:
    """`count` documents of a split; train and validation draw from different streams of the seed."""
    rng = random.Random(f"synthetic-corpus:{seed}:{split}")
    for _ in range(count):
        yield world.document(rng)


def c4_record(document: Document, index: int, split: str, rng: random.Random) -> dict[str, str]:
    stamp = EPOCH + datetime.timedelta(seconds=rng.randrange(14 * 24 * 3600))
    slug = re.sub(r"[^a-z0-9]+", "-", document.title.lower()).strip("-")[:60]
    return {"text": document.text, "timestamp": stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "url": f"https://{document.kind}.synthetic.example/{split}/{index}/{slug}"}


def write_split(world: World, out_dir: str | Path, split: str, count: int, shards: int, seed: int) -> dict:
    """Write one split as `shards` json.gz files of about equal size; returns its statistics."""
    folder = Path(out_dir, split)
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"synthetic-metadata:{seed}:{split}")
    kinds: Counter = Counter()
    words = 0
    stream = documents(world, split, count, seed)
    index = 0
    for shard in range(shards):
        size = count // shards + (shard < count % shards)
        with open(folder / shard_name(split, shard, shards), "wb") as raw, \
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as file:
            for _ in range(size):
                document = next(stream)
                kinds[document.kind] += 1
                words += len(words_of(document.text))
                line = json.dumps(c4_record(document, index, split, rng), ensure_ascii=False) + "\n"
                file.write(line.encode("utf-8"))
                index += 1
    return {"documents": count, "shards": shards, "words": words,
            "document_kinds": dict(sorted(kinds.items()))}


def write_corpus(world: World, out_dir: str | Path, train_docs: int, val_docs: int, seed: int,
                 train_shards: int = 4, val_shards: int = 1) -> dict:
    """Write both splits; returns {"train": stats, "validation": stats}."""
    sizes = {"train": (train_docs, train_shards), "validation": (val_docs, val_shards)}
    return {split: write_split(world, out_dir, split, count, min(shards, max(count, 1)), seed)
            for split, (count, shards) in sizes.items()}


def read_texts(raw_dir: str | Path, split: str) -> Iterator[str]:
    """The `text` of every document of a split, in order."""
    for path in shard_paths(raw_dir, split):
        with gzip.open(path, "rt", encoding="utf-8") as file:
            for line in file:
                yield json.loads(line)["text"]
