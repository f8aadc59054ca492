"""Masked-language-model data: an MDS streaming dataset that tokenizes on the fly, and its collator.

    # Print a few decoded batches from a local copy
    python src/text_data.py --local_path ./my-copy-c4 --split val --tokenizer bert-base-uncased
    # The same, streamed from a remote (a slow file system or an object store) into a local cache
    python src/text_data.py --local_path /tmp/cache-c4 --remote_path s3://my-bucket/my-copy-c4 --tokenizer bert-base-uncased
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import random
import re
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Optional

if __package__ in (None, ""):  # run as `python src/text_data.py`
    sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the repo root, not src/

import numpy as np
import torch
from streaming import Stream, StreamingDataset
from streaming.base.hashing import get_hash
from torch.utils.data import DataLoader
from transformers import PreTrainedTokenizerBase

from src.config import ConfigError
from src.tokenization import ascii_normalizer, load_tokenizer, starts_are_tokenized_alike

PREPARE_HINT = (
    "Prepare it with `python src/convert_dataset.py --dataset c4 --data_subset en --out_root DIR --splits ...` "
    "(or `--dataset json --data_files ...` for local files), or run `make data` for the embedded synthetic corpus."
)


class DataConfigError(ConfigError):
    """A dataloader configuration that cannot work; the message names the problem and the fix."""


class ShardError(RuntimeError):
    """A shard that could not be read while iterating (corrupted, missing); the message names it."""


# Whitespace to every tokenizer. (Python's \s also matches characters that BERT's normalizer deletes,
# such as \x1c: a cut there could split what the whole text tokenizes as one word.)
CUT_AT = re.compile(r"[ \t\n\r]")


class SampleTokenizer:
    """An MDS sample (its `text`, or `input_ids` pre-tokenized by convert_dataset.py) as `max_seq_len` token
    ids and attention mask, truncated or padded.

    A long document is tokenized from its start only, when the tokenizer allows it
    (`tokenization.starts_are_tokenized_alike`): its first `PREFIX_CHARS_PER_TOKEN * max_seq_len`
    characters, cut at the next whitespace, give the same first tokens as the whole text. If they hold
    fewer than `max_seq_len` tokens (very long words), the whole text is tokenized. C4's documents average
    ~2,000 characters, several times what 128 tokens need.
    """

    PREFIX_CHARS_PER_TOKEN = 8

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_seq_len: int):
        self.tokenizer = tokenizer
        self.max_seq_len = max_seq_len
        alike = starts_are_tokenized_alike(tokenizer)
        self.prefix_chars = self.PREFIX_CHARS_PER_TOKEN * max_seq_len if alike else None
        self.backend = padded_backend(tokenizer, max_seq_len)
        self.ascii = AsciiFastPath.of(self.backend) if self.backend is not None else None

    def __call__(self, sample: Mapping[str, Any]) -> dict[str, list[int]]:
        if "input_ids" in sample:
            ids = np.asarray(sample["input_ids"], dtype=np.int64)[: self.max_seq_len].tolist()
            padding = self.max_seq_len - len(ids)
            return {"input_ids": ids + [self.tokenizer.pad_token_id] * padding,
                    "attention_mask": [1] * len(ids) + [0] * padding}
        text = sample["text"]
        cut = CUT_AT.search(text, self.prefix_chars) if self.prefix_chars is not None else None
        if cut is not None:
            start = self.encode(text[: cut.start()])
            if sum(start["attention_mask"]) == self.max_seq_len:  # the start held enough tokens
                return start
        return self.encode(text)

    def encode(self, text: str) -> dict[str, list[int]]:
        """`text` tokenized in full, then truncated and padded to max_seq_len."""
        if self.backend is not None:
            encoding = self.ascii.encode(text) if self.ascii is not None else None
            if encoding is None:
                encoding = self.backend.encode(text)
            return {"input_ids": encoding.ids, "attention_mask": encoding.attention_mask}
        encoded = self.tokenizer(text, truncation=True, max_length=self.max_seq_len, padding="max_length",
                                 return_token_type_ids=False)
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}


def padded_backend(tokenizer: PreTrainedTokenizerBase, max_seq_len: int):
    """A copy of a fast tokenizer's Rust tokenizer that truncates and pads to `max_seq_len` as
    `tokenizer(text, truncation=True, max_length=max_seq_len, padding="max_length")` does. Calling it
    directly skips transformers' per-call Python work (a sixth of what a short document costs). None for a
    slow tokenizer, or one without a padding token (transformers' call then says what is wrong)."""
    if not getattr(tokenizer, "is_fast", False) or tokenizer.pad_token_id is None:
        return None
    backend = copy.deepcopy(tokenizer.backend_tokenizer)
    backend.enable_truncation(max_seq_len, direction=tokenizer.truncation_side)
    backend.enable_padding(length=max_seq_len, direction=tokenizer.padding_side, pad_id=tokenizer.pad_token_id,
                           pad_type_id=tokenizer.pad_token_type_id, pad_token=tokenizer.pad_token)
    return backend


class AsciiFastPath:
    """A fast tokenizer's pipeline for ASCII text, its normalizer done by str methods
    (`tokenization.ascii_normalizer`): `tokenizers` keeps every character's alignment while it normalizes,
    which made BertNormalizer a third of a short document's tokenization (benchmarks/dataloader.py). Same
    ids and mask as the whole pipeline (tests/test_text_data.py: every ASCII character, random text). Text
    that is not ASCII, or that holds an added token's text in any case (such as "[MASK]", which the
    pipeline matches before normalizing), gets None: the caller then runs the whole pipeline."""

    def __init__(self, backend: Any, normalize):
        self.normalize = normalize
        self.unnormalized = copy.deepcopy(backend)
        self.unnormalized.normalizer = None
        self.added = [token.content.lower() for token in backend.get_added_tokens_decoder().values()]

    @classmethod
    def of(cls, backend: Any) -> Optional[AsciiFastPath]:
        normalize = ascii_normalizer(backend)
        return cls(backend, normalize) if normalize is not None else None

    def encode(self, text: str):
        if not text.isascii():
            return None
        normalized = self.normalize(text)
        lowered = normalized.lower()
        if any(added in lowered for added in self.added):
            return None
        return self.unnormalized.encode(normalized)


class StreamingTextDataset(StreamingDataset):
    """A StreamingDataset of MDS samples with a `text` column (or pre-tokenized `input_ids`).

    Each sample is tokenized on the fly and padded or truncated to `max_seq_len` (BERT does not
    concatenate documents; `SampleTokenizer`). The sample's index in the dataset travels with it as
    `sample_id`, and the epoch being iterated as `epoch`, so the collator can draw its mask from the
    sample's identity rather than from a worker's RNG state: the same run, resumed, sees exactly the same
    masks.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_seq_len: int, **streaming_kwargs: Any):
        super().__init__(**streaming_kwargs)
        self.tokenize = SampleTokenizer(tokenizer, max_seq_len)
        self.epoch_being_iterated: Optional[int] = None

    def get_item(self, idx: int) -> dict[str, Any]:
        sample = self.tokenize(super().get_item(idx))
        sample["sample_id"] = idx
        sample["epoch"] = self.epoch_being_iterated
        return sample

    def _resume_incr_epoch(self) -> tuple[int, int]:
        # streaming decides here which epoch an iteration is (resumed from a checkpoint or the next one).
        epoch, sample_in_epoch = super()._resume_incr_epoch()
        self.epoch_being_iterated = epoch
        return epoch, sample_in_epoch

    # streaming 0.13 downloads and checks shards in background threads; when one fails (a checksum
    # mismatch, a missing file) the epoch just ends early, and only the next epoch raises, without the
    # cause. These overrides keep the error and raise it, explained, where the epoch ended.
    def _prepare_thread(self, it: Any) -> None:
        try:
            super()._prepare_thread(it)
        except Exception as error:
            self.thread_error = error
            raise

    def _ready_thread(self, it: Any) -> None:
        try:
            super()._ready_thread(it)
        except Exception as error:
            self.thread_error = error
            raise

    def __iter__(self):
        self.thread_error: Optional[Exception] = None
        yield from super().__iter__()
        if self.thread_error is not None:
            raise ShardError(self.explain(self.thread_error)) from self.thread_error

    def explain(self, error: Exception) -> str:
        text = str(error)
        if isinstance(error, ValueError) and text.startswith("Checksum failure: "):
            path = text.removeprefix("Checksum failure: ")
            downloaded = any(stream.remote for stream in self.streams) and os.path.isfile(path)
            if downloaded:  # else the next run would use the bad copy without checking it again
                os.remove(path)
            return (f"shard {path} does not match its {self.streams[0].validate_hash} hash in index.json: it was "
                    "corrupted in the remote copy or on the way. "
                    + ("The bad local copy was deleted, so the next run downloads it again; if that fails too, "
                       if downloaded else "")
                    + "convert the dataset again (src/convert_dataset.py --hashes xxh64).")
        if isinstance(error, FileNotFoundError):
            return (f"a shard listed in index.json is missing: {error}. Copy the whole dataset folder again, or "
                    "convert it again.")
        return f"reading a shard failed: {type(error).__name__}: {error}"


# SplitMix64 (Steele, Lea and Flood, 2014): the n-th number of the stream seeded with `key` is
# mix(key + n * GOLDEN). Counter-based, so a whole batch's draws are a few vectorized numpy operations.
GOLDEN_GAMMA = np.uint64(0x9E3779B97F4A7C15)


def splitmix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64's output function on uint64 states (numpy wraps the arithmetic modulo 2**64)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


class MLMCollator:
    """BERT's masking: pick `mlm_probability` of the real tokens; of those 80% -> [MASK], 10% -> a random
    token, 10% unchanged. Special and padding tokens are never picked; labels are -100 elsewhere.

    transformers' DataCollatorForLanguageModeling draws from a global or per-collator RNG, whose state
    depends on worker scheduling; here each sample's draws come from its own random stream, keyed by
    (seed, sample_id), which makes masking reproducible across restarts and independent of the number of
    workers. Position j of a sample gets the same four draws (pick, [MASK] or not, random token or
    unchanged, which random token) whatever the sequence length. With `remask_each_epoch` (training) the
    stream is keyed by the epoch too, so each pass over the data masks a sample anew, as RoBERTa's dynamic
    masking does (a small corpus seen for many epochs with one mask per sample is memorised sooner); epoch 0
    and the static masking of evaluation data (`remask_each_epoch=False`) share their masks.
    """

    DRAWS_PER_TOKEN = 4

    def __init__(self, tokenizer: PreTrainedTokenizerBase, mlm_probability: float, seed: int = 17,
                 remask_each_epoch: bool = True):
        if not 0.0 < mlm_probability < 1.0:
            raise DataConfigError(f"mlm_probability must be in (0, 1), got {mlm_probability}")
        if tokenizer.mask_token_id is None:
            raise DataConfigError(f"tokenizer {tokenizer.name_or_path!r} has no [MASK] token; MLM needs one")
        self.mlm_probability = mlm_probability
        self.seed = seed
        self.remask_each_epoch = remask_each_epoch
        self.mask_token_id = tokenizer.mask_token_id
        self.vocab_size = len(tokenizer)
        self.special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)
        self.fallback_generator = torch.Generator().manual_seed(seed)

    def _stream_key(self, sample_id: Optional[int], epoch: Optional[int]) -> int:
        """The 64-bit key of a sample's random stream; a sample without an id draws one from the collator's
        own generator (reproducible for a single process only)."""
        if sample_id is None:
            return int(torch.randint(2**63 - 1, (1,), generator=self.fallback_generator))
        name = f"{self.seed}:{sample_id}"
        if self.remask_each_epoch and epoch:
            name += f":{epoch}"
        digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "little")

    def _random_bits(self, sample_ids: list[Optional[int]], seq_len: int,
                     epochs: Optional[list[Optional[int]]] = None) -> np.ndarray:
        """(batch, seq_len, DRAWS_PER_TOKEN) uint64: the first seq_len * 4 numbers of each sample's stream."""
        epochs = epochs or [None] * len(sample_ids)
        keys = np.array([self._stream_key(i, e) for i, e in zip(sample_ids, epochs)], dtype=np.uint64)
        steps = np.arange(1, seq_len * self.DRAWS_PER_TOKEN + 1, dtype=np.uint64) * GOLDEN_GAMMA
        bits = splitmix64(keys[:, None] + steps[None, :])
        return bits.reshape(len(sample_ids), seq_len, self.DRAWS_PER_TOKEN)

    def mask_tokens(self, input_ids: torch.Tensor, sample_ids: list[Optional[int]],
                    epochs: Optional[list[Optional[int]]] = None) -> tuple[torch.Tensor, torch.Tensor]:
        bits = self._random_bits(sample_ids, input_ids.shape[1], epochs)
        uniform = torch.from_numpy((bits[..., :3] >> np.uint64(11)).astype(np.float64) * 2.0**-53)  # [0, 1)
        random_tokens = torch.from_numpy((bits[..., 3] % np.uint64(self.vocab_size)).astype(np.int64))
        maskable = ~torch.isin(input_ids, self.special_ids)
        picked = (uniform[..., 0] < self.mlm_probability) & maskable
        labels = torch.where(picked, input_ids, torch.full_like(input_ids, -100))
        to_mask = picked & (uniform[..., 1] < 0.8)
        to_random = picked & ~to_mask & (uniform[..., 2] < 0.5)
        masked = torch.where(to_mask, torch.full_like(input_ids, self.mask_token_id), input_ids)
        masked = torch.where(to_random, random_tokens, masked)
        return masked, labels

    def __call__(self, samples: list[Mapping[str, Any]]) -> dict[str, Any]:
        # numpy turns lists of Python ints into an array 3x faster than torch.tensor does.
        input_ids = torch.from_numpy(np.array([s["input_ids"] for s in samples], dtype=np.int64))
        attention_mask = torch.from_numpy(np.array([s["attention_mask"] for s in samples], dtype=np.int64))
        sample_ids = [s.get("sample_id") for s in samples]
        masked, labels = self.mask_tokens(input_ids, sample_ids, [s.get("epoch") for s in samples])
        batch = {"input_ids": masked, "attention_mask": attention_mask, "labels": labels,
                 # Sizes the model would otherwise read back from the GPU (one wait each): Python ints,
                 # one per sample, so Composer's microbatching splits them with the rows.
                 "real_token_counts": attention_mask.sum(dim=1).tolist(),
                 "predicted_token_counts": ((labels != -100) & attention_mask.bool()).sum(dim=1).tolist()}
        if all(i is not None for i in sample_ids):
            batch["sample_id"] = torch.tensor(sample_ids, dtype=torch.long)
        return batch


def check_local_split(local: str, split: Optional[str], validate_hash: Optional[str] = None) -> None:
    """Fail early, naming the path, when a local-only dataset is missing, empty or lacks shard files; with
    `validate_hash`, check every shard against its hash (streaming checks only what it downloads)."""
    folder = Path(local, split) if split else Path(local)
    if not (folder / "index.json").is_file():
        raise DataConfigError(f"no MDS dataset at {folder} (index.json not found). {PREPARE_HINT}")
    shards = json.loads((folder / "index.json").read_text()).get("shards", [])
    if sum(shard.get("samples", 0) for shard in shards) == 0:
        raise DataConfigError(f"the MDS dataset at {folder} has no samples. {PREPARE_HINT}")
    missing = []
    for shard in shards:
        present = [info for info in (shard.get("raw_data"), shard.get("zip_data"))
                   if info and (folder / info["basename"]).is_file()]
        if not present:
            missing.append(shard["raw_data"]["basename"])
        elif validate_hash:
            check_shard_hash(folder / present[0]["basename"], present[0].get("hashes") or {}, validate_hash)
    if missing:
        raise DataConfigError(
            f"the MDS dataset at {folder} lacks {len(missing)} of the {len(shards)} shard files its index.json "
            f"lists: {', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}. Copy the whole folder again, "
            f"or convert the dataset again. {PREPARE_HINT}")


def check_pretokenized(local: str, split: Optional[str], tokenizer: PreTrainedTokenizerBase, max_seq_len: int) -> None:
    """A split that convert_dataset.py pre-tokenized must match the loader: the same vocabulary, and the
    same max_seq_len (a longer one would give other samples than tokenizing on the fly, a shorter one would
    cut each document's final [SEP])."""
    info_file = (Path(local, split) if split else Path(local)) / "pretokenized.json"
    if not info_file.is_file():
        return
    info = json.loads(info_file.read_text())
    if info["vocab_size"] != len(tokenizer):
        raise DataConfigError(
            f"{info_file.parent} was tokenized with {info['tokenizer']} ({info['vocab_size']} tokens), and this "
            f"run's tokenizer {tokenizer.name_or_path} has {len(tokenizer)}: convert the text again with "
            f"--tokenizer {tokenizer.name_or_path}, or use the tokenizer it was made with")
    if info["max_seq_len"] != max_seq_len:
        raise DataConfigError(
            f"{info_file.parent} was tokenized with --max_seq_len {info['max_seq_len']} and the loader's "
            f"max_seq_len is {max_seq_len}: set max_seq_len {info['max_seq_len']}, or convert the text again "
            f"with --max_seq_len {max_seq_len}")


def check_shard_hash(path: Path, hashes: Mapping[str, str], algorithm: str) -> None:
    if algorithm not in hashes:
        raise DataConfigError(
            f"validate_hash: {algorithm}, but {path.parent} was converted without {algorithm} hashes (its "
            f"index.json has: {', '.join(hashes) or 'none'}): convert it again with "
            f"`src/convert_dataset.py --hashes {algorithm}`, or drop validate_hash")
    if get_hash(algorithm, path.read_bytes()) != hashes[algorithm]:
        raise DataConfigError(
            f"shard {path} does not match its {algorithm} hash in index.json: the file was changed or damaged "
            "after conversion. Restore it from the original copy, or convert the dataset again.")


def build_streams(streams_cfg: Mapping[str, Mapping[str, Any]], default_split: Optional[str]) -> list[Stream]:
    """`streams: {name: {remote, local, split, proportion | repeat | choose}}` -> streaming Streams."""
    streams = []
    for name, stream_cfg in streams_cfg.items():
        stream_cfg = dict(stream_cfg)
        stream_cfg.setdefault("split", default_split)
        if not stream_cfg.get("remote"):
            stream_cfg.pop("remote", None)
            check_local_split(stream_cfg["local"], stream_cfg.get("split"), stream_cfg.get("validate_hash"))
        try:
            streams.append(Stream(**stream_cfg))
        except TypeError as error:
            raise DataConfigError(f"stream {name!r}: {error}") from error
    return streams


def with_shared_memory_retries(create, attempts: int = 6):
    """`create()`, tried again after a short random pause when streaming's shared memory name is taken.

    Each StreamingDataset on a machine looks for the first free shared-memory prefix and then creates it;
    two processes starting at the same moment can pick the same one, and the slower one's create fails
    with FileExistsError (seen in CI with three runs started together). The next attempt finds the next
    free prefix. A name that stays taken (stale memory of a crashed run) is raised after the last try.
    """
    for attempt in range(attempts):
        try:
            return create()
        except FileExistsError:
            if attempt == attempts - 1:
                raise
            time.sleep(random.uniform(0.05, 0.5) * (attempt + 1))


def build_text_dataloader(cfg: Mapping[str, Any], tokenizer: PreTrainedTokenizerBase,
                          device_batch_size: int, seed: int = 17, unused: Optional[list[str]] = None,
                          section: str = "loader", remask_each_epoch: bool = True) -> DataLoader:
    """Build the MLM dataloader from a `train_loader` / `eval_loader` config section.

    `cfg.dataset` takes `local`, `remote`, `split`, `max_seq_len`, `mlm_probability`, `shuffle`,
    optionally `tokenizer_name` (a tokenizer other than the model's), `streams` and `remask_each_epoch`
    (default: the argument; true for training, so each epoch masks anew, false for evaluation, whose masks
    stay fixed so that evaluations compare), and passes every other key (predownload,
    num_canonical_nodes, shuffle_seed, ...) to streaming.StreamingDataset.
    Keys nothing takes are appended to `unused` (dotted, under `section`), or rejected when it is None.
    """
    from src.builders import accepted_kwargs

    unused_here: list[str] = []
    cfg = dict(cfg)
    name = cfg.pop("name", "text")
    if name != "text":
        raise DataConfigError(f"unknown dataloader name {name!r}; valid: text")
    dataset_cfg = dict(cfg.pop("dataset"))
    tokenizer_name = dataset_cfg.pop("tokenizer_name", None)
    if tokenizer_name:
        tokenizer = load_tokenizer(tokenizer_name)
    max_seq_len = dataset_cfg.pop("max_seq_len")
    mlm_probability = dataset_cfg.pop("mlm_probability", 0.15)
    remask_each_epoch = dataset_cfg.pop("remask_each_epoch", remask_each_epoch)
    if not isinstance(remask_each_epoch, bool):
        raise DataConfigError(
            f"{section}.dataset.remask_each_epoch must be true or false, got {remask_each_epoch!r}")
    streams_cfg = dataset_cfg.pop("streams", None)
    split = dataset_cfg.pop("split", None)
    local = dataset_cfg.pop("local", None)
    remote = dataset_cfg.pop("remote", None) or None
    if streams_cfg:
        dataset_cfg["streams"] = build_streams(streams_cfg, split)
    else:
        if not local:
            raise DataConfigError("dataset.local is empty: set it to the folder that holds (or caches) the MDS data")
        if remote is None:
            check_local_split(local, split, dataset_cfg.get("validate_hash"))
            check_pretokenized(local, split, tokenizer, max_seq_len)
        dataset_cfg.update(local=local, remote=remote, split=split)
    dataset_cfg = accepted_kwargs(StreamingDataset.__init__, dataset_cfg, f"{section}.dataset", unused_here)
    remotes = [remote] if remote else [s.remote for s in dataset_cfg.get("streams") or [] if s.remote]
    try:
        dataset = with_shared_memory_retries(lambda: StreamingTextDataset(
            tokenizer=tokenizer, max_seq_len=max_seq_len, batch_size=device_batch_size, **dataset_cfg))
    except (ValueError, TypeError):
        raise
    except FileExistsError as error:  # streaming's shared memory (named after the local folder) is taken
        raise DataConfigError(
            f"streaming's shared memory for the local folder {local or 'of a stream'} already exists ({error}): "
            "another process on this machine is streaming into the same local folder, or a run that crashed "
            "left its shared memory behind. Give each concurrent run its own data_local, or remove stale shared "
            "memory with: python -c 'from streaming.base.util import clean_stale_shared_memory as c; c()'"
        ) from error
    except Exception as error:  # each object store's client raises its own types
        if not remotes:
            raise
        retries = dataset_cfg.get("download_retry")
        raise DataConfigError(
            f"could not read the dataset index from {', '.join(remotes)} (split {split}) after "
            f"{1 + (2 if retries is None else retries)} attempts: {type(error).__name__}: {error}\n"
            "Check the path, the network and the credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, and "
            "S3_ENDPOINT_URL for an S3-compatible store); dataset.download_retry and download_timeout set how "
            "long to try.") from error

    num_workers = cfg.pop("num_workers", 0)
    loader_kwargs = dict(
        batch_size=device_batch_size,
        collate_fn=MLMCollator(tokenizer, mlm_probability, seed=seed, remask_each_epoch=remask_each_epoch),
        drop_last=cfg.pop("drop_last", True),
        num_workers=num_workers,
        pin_memory=cfg.pop("pin_memory", torch.cuda.is_available()),
        timeout=cfg.pop("timeout", 0),
    )
    prefetch_factor = cfg.pop("prefetch_factor", 2)
    persistent_workers = cfg.pop("persistent_workers", True)
    if num_workers > 0:  # DataLoader rejects these two without workers
        loader_kwargs.update(prefetch_factor=prefetch_factor, persistent_workers=persistent_workers)
    unused_here.extend(f"{section}.{key}" for key in cfg)
    if unused is None and unused_here:
        raise DataConfigError(f"unknown dataloader keys: {', '.join(unused_here)}")
    if unused is not None:
        unused.extend(unused_here)
    return DataLoader(dataset, **loader_kwargs)


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Print decoded MLM batches from an MDS text dataset.")
    parser.add_argument("--local_path", required=True)
    parser.add_argument("--remote_path", default=None)
    parser.add_argument("--split", default="val")
    parser.add_argument("--tokenizer", default="bert-base-uncased")
    parser.add_argument("--max_seq_len", type=int, default=128)
    parser.add_argument("--mlm_probability", type=float, default=0.15)
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--batches", type=int, default=2)
    args = parser.parse_args(argv)

    tokenizer = load_tokenizer(args.tokenizer)
    cfg = {"name": "text", "num_workers": 0, "dataset": {
        "local": args.local_path, "remote": args.remote_path, "split": args.split, "shuffle": False,
        "max_seq_len": args.max_seq_len, "mlm_probability": args.mlm_probability}}
    loader = build_text_dataloader(cfg, tokenizer, args.batch_size)
    for batch_index, batch in enumerate(loader):
        if batch_index >= args.batches:
            break
        shapes = {k: tuple(v.shape) if isinstance(v, torch.Tensor) else (len(v),) for k, v in batch.items()}
        print(f"--- batch {batch_index}: " + ", ".join(f"{k} {shape}" for k, shape in shapes.items()))
        for row, ids in enumerate(batch["input_ids"]):
            real = batch["attention_mask"][row].bool()
            print(f"[{row}] input : {tokenizer.decode(ids[real])}")
            targets = batch["labels"][row]
            predicted = targets != -100
            print(f"[{row}] masked: {predicted.sum().item()} of {real.sum().item()} tokens -> "
                  f"{tokenizer.convert_ids_to_tokens(targets[predicted].tolist())}")


if __name__ == "__main__":
    try:
        main()
    except DataConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
