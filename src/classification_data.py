"""Fine-tuning data and starting points, shared by sequence_classification.py and glue.py.

A dataset is a hub dataset (`path: nyu-mll/glue`, `name: qnli`), a local folder (saved by `datasets`'
`save_to_disk`, or one `<split>.parquet|csv|json|jsonl` file per split) or local files per split
(`data_files: {train: a.csv, validation: b.csv}`). One or two text columns are tokenized with the model's
tokenizer (truncated to `max_seq_len`); the collator pads every batch to `max_seq_len`.

Fine-tuning starts from a Composer checkpoint (of MLM pretraining, or of another fine-tuning): only its
encoder is loaded (`START_FROM_CHECKPOINT`), after `check_start_checkpoint` made sure it has one that fits.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import datasets
import torch
from composer.utils import dist
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from src.config import ConfigError, pop_typed
from src.mosaic_bert import read_state_dict

FILE_FORMATS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


class DatasetConfigError(ConfigError):
    pass


@dataclass
class ClassificationData:
    """Where the examples are and how to read them. `num_labels == 1` means regression."""

    text_columns: list[str]
    num_labels: int
    label_column: str = "label"
    path: Optional[str] = None
    name: Optional[str] = None
    data_files: dict[str, Any] = field(default_factory=dict)
    label_names: Optional[list[str]] = None
    max_seq_len: int = 128
    train_split: str = "train"
    eval_split: str = "validation"

    def __post_init__(self):
        if not 1 <= len(self.text_columns) <= 2:
            raise DatasetConfigError(f"dataset.text_columns takes one or two columns, got {self.text_columns}")
        if self.num_labels < 1:
            raise DatasetConfigError(f"dataset.num_labels must be 1 (regression) or more, got {self.num_labels}")
        if bool(self.path) == bool(self.data_files):
            raise DatasetConfigError("set exactly one of dataset.path (a hub dataset or a local folder) and "
                                     "dataset.data_files (local files per split)")
        if self.label_names is not None and len(self.label_names) != self.num_labels:
            raise DatasetConfigError(f"dataset.label_names has {len(self.label_names)} names but num_labels is "
                                     f"{self.num_labels}")

    @property
    def source(self) -> str:
        if self.data_files:
            return "dataset.data_files"
        return f"{self.path} ({self.name})" if self.name else str(self.path)


def pop_classification_data(section: dict[str, Any]) -> ClassificationData:
    """The `dataset:` section of a config; the keys it reads are popped, the rest left for the caller."""
    text_columns = pop_typed(section, "text_columns", (list, str), section="dataset")
    return ClassificationData(
        text_columns=[text_columns] if isinstance(text_columns, str) else list(text_columns),
        num_labels=pop_typed(section, "num_labels", int, section="dataset"),
        label_column=pop_typed(section, "label_column", str, "label", section="dataset"),
        path=pop_typed(section, "path", str, None, section="dataset"),
        name=pop_typed(section, "name", str, None, section="dataset"),
        data_files=pop_typed(section, "data_files", dict, {}, section="dataset"),
        label_names=pop_typed(section, "label_names", list, None, section="dataset"),
        max_seq_len=pop_typed(section, "max_seq_len", int, 128, section="dataset", positive=True),
        train_split=pop_typed(section, "train_split", str, "train", section="dataset"),
        eval_split=pop_typed(section, "eval_split", str, "validation", section="dataset"),
    )


def file_format(files: Any) -> str:
    first = Path(files if isinstance(files, str) else files[0])
    suffix = first.suffix.lower()
    if suffix == ".gz":
        suffix = Path(first.stem).suffix.lower()
    if suffix not in FILE_FORMATS:
        raise DatasetConfigError(f"cannot tell the format of {first}: use one of {', '.join(FILE_FORMATS)}")
    return FILE_FORMATS[suffix]


def load_files(files: Any, split: str) -> datasets.Dataset:
    paths = [files] if isinstance(files, str) else list(files)
    for path in paths:
        if not Path(path).expanduser().exists():
            raise DatasetConfigError(f"the {split} data file {path} does not exist")
    kind = file_format(files)
    kwargs = {"delimiter": "\t"} if kind == "csv" and str(paths[0]).endswith((".tsv", ".tsv.gz")) else {}
    return datasets.load_dataset(kind, data_files={split: paths}, split=split, **kwargs)


def load_split(data: ClassificationData, split: str) -> datasets.Dataset:
    """One split as a `datasets.Dataset` (see the module docstring for the places it can come from)."""
    if data.data_files:
        if split not in data.data_files:
            raise DatasetConfigError(f"dataset.data_files has no {split!r} entry; it has "
                                     f"{', '.join(data.data_files)}")
        return load_files(data.data_files[split], split)
    folder = Path(data.path).expanduser()
    if folder.is_dir():
        return load_from_folder(folder, split)
    if data.path.startswith((".", "/", "~")):
        raise DatasetConfigError(f"dataset folder {data.path} does not exist")
    try:
        return datasets.load_dataset(data.path, data.name, split=split)
    except ValueError as error:  # an unknown split names the ones there are
        raise DatasetConfigError(f"{data.source}: {error}") from error


def load_from_folder(folder: Path, split: str) -> datasets.Dataset:
    """A `save_to_disk` folder (of a DatasetDict, or one per split), or one file per split."""
    if (folder / "dataset_dict.json").is_file():
        splits = datasets.load_from_disk(str(folder))
        if split not in splits:
            raise DatasetConfigError(f"{folder} has no split {split!r}; it has {', '.join(splits)}")
        return splits[split]
    if (folder / split / "dataset_info.json").is_file():
        return datasets.load_from_disk(str(folder / split))
    files = [folder / f"{split}{suffix}" for suffix in FILE_FORMATS]
    found = [path for path in files if path.is_file()]
    if not found:
        present = sorted(p.name for p in folder.iterdir())
        raise DatasetConfigError(f"{folder} has no {split} split: expected a save_to_disk folder or one of "
                                 f"{', '.join(p.name for p in files)}; it holds {', '.join(present) or 'nothing'}")
    return load_files(str(found[0]), split)


def label_values(table: datasets.Dataset, data: ClassificationData, split: str) -> list[Any]:
    """The label column as numbers, checked against num_labels (string labels mapped by label_names)."""
    for column in [*data.text_columns, data.label_column]:
        if column not in table.column_names:
            raise DatasetConfigError(f"{data.source}, split {split}: no column {column!r}; the columns are "
                                     f"{', '.join(table.column_names)}")
    labels = table[data.label_column]
    if data.label_names is not None:
        unknown = sorted({str(label) for label in labels} - set(data.label_names))
        if unknown:
            raise DatasetConfigError(f"{data.source}, split {split}: labels {', '.join(unknown[:5])} are not in "
                                     f"dataset.label_names ({', '.join(data.label_names)})")
        return [data.label_names.index(str(label)) for label in labels]
    if any(isinstance(label, str) for label in labels):
        example = next(label for label in labels if isinstance(label, str))
        raise DatasetConfigError(f"{data.source}, split {split}: the labels are strings (e.g. {example!r}); list "
                                 f"them in dataset.label_names to number them 0..num_labels-1")
    if data.num_labels == 1:
        return [float(label) for label in labels]
    not_integer = [label for label in labels if label is None or not float(label).is_integer()]
    if not_integer:
        raise DatasetConfigError(f"{data.source}, split {split}: labels such as {not_integer[0]} are not class "
                                 f"numbers; for regression set dataset.num_labels: 1")
    labels = [int(label) for label in labels]
    seen = sorted(set(labels))
    wrong = [label for label in seen if not 0 <= label < data.num_labels]
    if wrong:
        raise DatasetConfigError(
            f"dataset.num_labels is {data.num_labels} but the {split} split of {data.source} has labels "
            f"{', '.join(map(str, seen))} in column {data.label_column!r}: labels must be 0..{data.num_labels - 1}"
            + (f"; set dataset.num_labels: {max(seen) + 1}" if min(seen) >= 0 else "")
        )
    return labels


def check_train_labels(labels: list[int], data: ClassificationData) -> None:
    """In the training split every class of num_labels occurs; otherwise num_labels is likely wrong."""
    if data.num_labels == 1:
        return
    missing = sorted(set(range(data.num_labels)) - set(labels))
    if missing:
        raise DatasetConfigError(
            f"dataset.num_labels is {data.num_labels} but the {data.train_split} split of {data.source} has no "
            f"example of class(es) {', '.join(map(str, missing))}; set dataset.num_labels to the number of "
            f"classes ({len(set(labels))} seen)"
        )


def build_classification_dataset(data: ClassificationData, split: str, tokenizer: PreTrainedTokenizerBase,
                                 train: bool = False) -> datasets.Dataset:
    """Load `split`, check its labels and tokenize it (input_ids, attention_mask, token_type_ids, labels)."""
    table = load_split(data, split)
    labels = label_values(table, data, split)
    if train:
        check_train_labels(labels, data)
    if tokenizer is None:
        raise DatasetConfigError("the model has no tokenizer: set model.tokenizer_name")
    label_type = "float32" if data.num_labels == 1 else "int64"
    table = table.select_columns(data.text_columns).add_column("labels", labels)

    def tokenize(batch: dict[str, list]) -> dict[str, list]:
        texts = [batch[column] for column in data.text_columns]
        return tokenizer(*texts, truncation=True, max_length=data.max_seq_len)

    tokenized = table.map(tokenize, batched=True, remove_columns=data.text_columns,
                          desc=f"tokenizing {split}")
    return tokenized.cast_column("labels", datasets.Value(label_type))


def build_classification_dataloader(dataset: datasets.Dataset, tokenizer: PreTrainedTokenizerBase,
                                    max_seq_len: int, batch_size: int, shuffle: bool, drop_last: bool = False,
                                    num_workers: int = 0, seed: int = 0) -> DataLoader:
    """Batches padded to max_seq_len, each rank reading its own shard (composer's distributed sampler)."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=dist.get_sampler(dataset, shuffle=shuffle, drop_last=drop_last, seed=seed),
        collate_fn=DataCollatorWithPadding(tokenizer, padding="max_length", max_length=max_seq_len),
        drop_last=drop_last,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=num_workers > 0,
    )



# Trainer settings that load a checkpoint as a starting point: the weights only, and not the
# classification head (a pretraining checkpoint has none, another task's has another shape).
START_FROM_CHECKPOINT = {"load_weights_only": True, "load_strict_model_weights": False,
                         "load_ignore_keys": ["state/model/model.classifier*"]}


def check_start_checkpoint(model: torch.nn.Module, checkpoint: str, key: str = "load_path") -> None:
    """Fail unless the checkpoint (a local file) holds every encoder weight of `model`, in the same shape.

    Loading with strict=False would otherwise start silently from random weights when the checkpoint
    comes from another architecture (hf_bert vs mosaic_bert) or size.
    """
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise ConfigError(f"{key}: the checkpoint {checkpoint} does not exist")
    saved = read_state_dict(str(path))
    expected = {name: tensor for name, tensor in model.state_dict().items()
                if name.startswith("model.bert.") and ".pooler." not in name}
    missing = [name for name in expected if name.removeprefix("model.") not in saved]
    if missing:
        raise ConfigError(
            f"{key}: {checkpoint} lacks {len(missing)} of the model's {len(expected)} encoder weights (e.g. "
            f"{missing[0].removeprefix('model.')}): was it written by another model.name?")
    for name, tensor in expected.items():
        name = name.removeprefix("model.")
        if saved[name].shape != tensor.shape:
            raise ConfigError(
                f"{key}: {name} has shape {tuple(saved[name].shape)} in {checkpoint} but {tuple(tensor.shape)} "
                f"in the model: set model.model_config (and the tokenizer) as in pretraining")
