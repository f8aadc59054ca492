"""Convert a Hugging Face text dataset (C4 from the hub, or local JSON / text files) to MDS.

MDS is MosaicML streaming's shard format: once converted, a dataset can sit on local disk or in an
object store and be streamed to any number of nodes and dataloader workers.

    # C4 from the hub (streamed; nothing is kept but the MDS shards)
    python src/convert_dataset.py --dataset c4 --data_subset en --out_root ./my-copy-c4 --splits train_small val

    # Local files, e.g. the embedded synthetic corpus or your own {"text": ...} JSON lines
    python src/convert_dataset.py --dataset json --data_files train=raw/train/*.json.gz val=raw/validation/*.json.gz \
        --out_root ./my-data --splits train val

    # Plain text, one sample per line
    python src/convert_dataset.py --dataset text --data_files train=corpus.txt --out_root ./my-data --splits train

    # Pre-tokenized (the dataloader then only pads): the same samples the loader would tokenize itself
    python src/convert_dataset.py --dataset json --data_files train=raw/train/*.json.gz --out_root ./my-data-tok \
        --splits train --tokenizer bert-base-uncased --max_seq_len 128

BERT does not concatenate samples: each document becomes one sample that the dataloader pads or
truncates to `max_seq_len`, so there is no `--concat_tokens` here. With `--tokenizer`, the documents are
tokenized (and truncated to `--max_seq_len`) once, here, instead of by every dataloader worker on every
epoch; tokenization was 62% of the dataloader's CPU time on the synthetic corpus (docs/performance.md).
The split folder then holds `pretokenized.json` (tokenizer, vocabulary size, max_seq_len), which the
dataloader checks against its own.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

if __package__ in (None, ""):  # run as `python src/convert_dataset.py`
    sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the repo root, not src/

import numpy as np
from tqdm import tqdm


@dataclass(frozen=True)
class SplitSpec:
    """Which split of the source to read, and how many samples to keep (None: all)."""
    source_split: str
    max_samples: Optional[int]
    expected_samples: Optional[int] = None  # for the progress bar when streaming


# The seed's C4 splits: `*_small` are truncated copies for quick profiling.
C4_SPLITS = {
    "train": SplitSpec("train", None, 364_868_892),
    "train_small": SplitSpec("train", 100_000, 100_000),
    "val": SplitSpec("validation", None, 364_608),
    "val_small": SplitSpec("validation", 10_000, 10_000),
}
C4_HUB_NAME = "allenai/c4"
LOCAL_FORMATS = ("json", "text", "csv", "parquet")


class ConversionError(RuntimeError):
    """A conversion that cannot start or finish; the message says why and what to do."""


def parse_data_files(items: list[str]) -> dict[str, list[str]]:
    """`["train=a/*.json.gz", "val=b.json"]` -> {"train": [files...], "val": [files...]}."""
    data_files: dict[str, list[str]] = {}
    for item in items:
        split, sep, pattern = item.partition("=")
        if not sep or not split or not pattern:
            raise ConversionError(f"--data_files takes SPLIT=PATTERN (e.g. train=raw/train/*.json.gz), got {item!r}")
        matches = sorted(glob.glob(os.path.expanduser(pattern)))
        if not matches:
            raise ConversionError(f"--data_files {item!r}: no file matches {pattern!r}")
        data_files.setdefault(split, []).extend(matches)
    return data_files


def iterate_c4(split: str, data_subset: str) -> tuple[Iterable[dict], Optional[int]]:
    import datasets

    if split not in C4_SPLITS:
        raise ConversionError(f"unknown C4 split {split!r}; valid splits: {', '.join(C4_SPLITS)}")
    spec = C4_SPLITS[split]
    try:
        stream = datasets.load_dataset(C4_HUB_NAME, name=data_subset, split=spec.source_split, streaming=True)
        stream = iter(stream)
        first = next(stream)
    except Exception as error:  # the hub raises many types (ConnectionError, OSError, HfHubHTTPError, ...)
        raise ConversionError(
            f"could not read {C4_HUB_NAME} ({data_subset}, split {spec.source_split}) from the Hugging Face hub: "
            f"{type(error).__name__}: {error}\n"
            "Without access to the hub, convert local files instead: download C4's json.gz files elsewhere and run\n"
            "  python src/convert_dataset.py --dataset json --data_files train=PATH/c4-train.*.json.gz "
            "--out_root DIR --splits train"
        ) from error

    def samples():
        yield first
        for count, sample in enumerate(stream, start=1):
            if spec.max_samples is not None and count >= spec.max_samples:
                return
            yield sample

    return samples(), spec.expected_samples


def iterate_local(fmt: str, data_files: dict[str, list[str]], split: str) -> tuple[Iterable[dict], int]:
    import datasets

    if split not in data_files:
        raise ConversionError(
            f"split {split!r} has no files: pass --data_files {split}=PATTERN (given: {', '.join(data_files) or 'none'})"
        )
    dataset = datasets.load_dataset(fmt, data_files={split: data_files[split]}, split=split)
    return iter(dataset), len(dataset)


PRETOKENIZED_INFO = "pretokenized.json"
TOKENIZE_BATCH = 1000  # documents per call to the (Rust, multi-threaded) tokenizer


@dataclass(frozen=True)
class Pretokenize:
    """`--tokenizer` / `--max_seq_len`: store token ids instead of text."""
    tokenizer_name: str
    max_seq_len: int

    def info(self, tokenizer) -> dict:
        return {"tokenizer": self.tokenizer_name, "vocab_size": len(tokenizer), "max_seq_len": self.max_seq_len}


def write_mds(samples: Iterable[dict], out: str, total: Optional[int], compression: Optional[str],
              text_column: str, description: str, hashes: Optional[list[str]] = None,
              pretokenize: Optional[Pretokenize] = None) -> int:
    from streaming import MDSWriter

    tokenizer = None
    columns = {"text": "str"}
    if pretokenize is not None:
        from src.tokenization import load_tokenizer

        tokenizer = load_tokenizer(pretokenize.tokenizer_name)
        dtype = "uint16" if len(tokenizer) <= 2**16 else "int32"
        columns = {"input_ids": f"ndarray:{dtype}"}
    count = 0
    with MDSWriter(out=out, columns=columns, compression=compression, hashes=hashes) as writer:
        texts: list[str] = []

        def flush() -> None:
            if not texts:
                return
            if tokenizer is None:
                for text in texts:
                    writer.write({"text": text})
            else:  # the same call as the dataloader's on-the-fly tokenization, without the padding
                encoded = tokenizer(texts, truncation=True, max_length=pretokenize.max_seq_len,
                                    return_attention_mask=False, return_token_type_ids=False)["input_ids"]
                for ids in encoded:
                    writer.write({"input_ids": np.asarray(ids, dtype=dtype)})
            texts.clear()

        for sample in tqdm(samples, total=total, desc=description, unit=" samples", dynamic_ncols=True):
            if text_column not in sample:
                raise ConversionError(
                    f"sample {count} has no {text_column!r} column (columns: {', '.join(sample)}); "
                    f"pass --text_column NAME"
                )
            texts.append(sample[text_column])
            count += 1
            if len(texts) == TOKENIZE_BATCH:
                flush()
        flush()
    if tokenizer is not None and "://" not in out:
        Path(out, PRETOKENIZED_INFO).write_text(json.dumps(pretokenize.info(tokenizer), indent=1) + "\n")
    return count


def check_remote_split_absent(remote_split: str) -> None:
    """Fail before converting when the object store is unreachable or the split is already there.

    A split is complete once its index.json is uploaded (MDSWriter writes it last), so that is what counts.
    """
    from streaming.base.storage.upload import CloudUploader

    try:
        uploader = CloudUploader.get(remote_split, exist_ok=True)
    except Exception as error:  # each provider's client raises its own types (ClientError, ...)
        raise ConversionError(
            f"cannot write to {remote_split}: {type(error).__name__}: {error}\n"
            "Check that the bucket exists and the credentials (e.g. AWS_ACCESS_KEY_ID, S3_ENDPOINT_URL for an "
            "S3-compatible store) allow writing to it."
        ) from error
    try:
        if uploader.list_objects("index.json"):
            raise ConversionError(f"{remote_split}/index.json already exists; delete the split or choose "
                                  "another --out_root")
    finally:
        shutil.rmtree(uploader.local, ignore_errors=True)  # the staging folder the uploader made


def convert_dataset(dataset: str, out_root: str, splits: list[str], data_subset: Optional[str] = None,
                    data_files: Optional[dict[str, list[str]]] = None, compression: Optional[str] = None,
                    text_column: str = "text", hashes: Optional[list[str]] = None,
                    pretokenize: Optional[Pretokenize] = None) -> dict[str, int]:
    """Convert each split to `<out_root>/<split>/`; returns the number of samples written per split.

    Local output is written to a hidden `.partial` folder first and renamed when complete, so a crash or
    Ctrl-C never leaves a half-written split behind. Existing split folders are never overwritten.
    """
    if dataset != "c4" and dataset not in LOCAL_FORMATS:
        raise ConversionError(f"unknown --dataset {dataset!r}; valid: c4, {', '.join(LOCAL_FORMATS)}")
    if dataset != "c4" and not data_files:
        raise ConversionError(f"--dataset {dataset} needs --data_files SPLIT=PATTERN ...")
    if hashes:
        from streaming.base.hashing import get_hashes

        if set(hashes) - get_hashes():
            raise ConversionError(f"unknown --hashes {', '.join(sorted(set(hashes) - get_hashes()))}; "
                                  f"valid: {', '.join(sorted(get_hashes()))}")
    remote = "://" in out_root
    for split in splits:
        if remote:
            check_remote_split_absent(f"{out_root.rstrip('/')}/{split}")
            continue
        target = Path(out_root, split)
        if target.exists() and any(target.iterdir()):
            raise ConversionError(
                f"{target} already exists and is not empty; delete it or choose another --out_root"
            )

    written = {}
    for split in splits:
        if dataset == "c4":
            samples, total = iterate_c4(split, data_subset or "en")
        else:
            samples, total = iterate_local(dataset, data_files or {}, split)
        if remote:
            # MDSWriter stages shards in a local temporary folder and uploads each as it closes.
            written[split] = write_mds(samples, f"{out_root.rstrip('/')}/{split}", total, compression,
                                       text_column, split, hashes, pretokenize)
            print(f"wrote {written[split]:,} samples to {out_root.rstrip('/')}/{split}")
            continue
        target = Path(out_root, split)
        partial = Path(out_root, f".{split}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        try:
            written[split] = write_mds(samples, str(partial), total, compression, text_column, split, hashes,
                                       pretokenize)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        if target.exists():  # an empty folder left by the user
            target.rmdir()
        partial.rename(target)
        print(f"wrote {written[split]:,} samples to {target}")
    return written


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help=f"c4 (from the hub) or a local format: {', '.join(LOCAL_FORMATS)}")
    parser.add_argument("--data_subset", default=None, help="C4 subset, e.g. en")
    parser.add_argument("--data_files", nargs="+", default=[], metavar="SPLIT=PATTERN",
                        help="local files per output split, e.g. train=raw/train/*.json.gz")
    parser.add_argument("--splits", nargs="+", default=["train", "val"])
    parser.add_argument("--out_root", required=True, help="output folder (local path or s3://bucket/prefix)")
    parser.add_argument("--compression", default=None, help="shard compression, e.g. zstd")
    parser.add_argument("--hashes", nargs="+", default=None, metavar="ALGORITHM",
                        help="hashes to record per shard, e.g. xxh64; readers check them with validate_hash")
    parser.add_argument("--text_column", default="text")
    parser.add_argument("--tokenizer", default=None,
                        help="store token ids (tokenized with this hub name or folder) instead of text")
    parser.add_argument("--max_seq_len", type=int, default=None,
                        help="with --tokenizer: truncate each document to this many tokens (the loader's max_seq_len)")
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    try:
        data_files = parse_data_files(args.data_files) if args.data_files else None
        if (args.tokenizer is None) != (args.max_seq_len is None) or (args.max_seq_len or 1) <= 0:
            raise ConversionError("--tokenizer and --max_seq_len go together (pre-tokenized output; e.g. "
                                  "--tokenizer bert-base-uncased --max_seq_len 128), with max_seq_len positive")
        pretokenize = Pretokenize(args.tokenizer, args.max_seq_len) if args.tokenizer else None
        convert_dataset(args.dataset, args.out_root, args.splits, data_subset=args.data_subset,
                        data_files=data_files, compression=args.compression, text_column=args.text_column,
                        hashes=args.hashes, pretokenize=pretokenize)
    except ConversionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
