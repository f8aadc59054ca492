"""Checkpoints that survive kills and bad files: atomic writes, whole-file checks, loading without code.

Composer 0.32.1 (its last release) writes a checkpoint straight to its final name and loads one with
`torch.load(weights_only=False)`. So a run killed mid-write leaves a partial `ep*-ba*.pt` (which also
blocks the restart when `save_overwrite` is false), a truncated or bit-flipped file fails with a message
that does not name it (or, for flipped bytes, loads silently), and a checkpoint from elsewhere can run any
code while it is unpickled. `install()` replaces the two functions Composer uses for this:

- writing: to a hidden `.partial-<pid>-<name>` file in the same folder, fsync, then `os.replace` to the final
  name; a killed write leaves only the hidden file, which the next autoresume deletes;
- loading: the file's zip records are checked against their CRCs first (a `CheckpointError` names the
  file), then it is unpickled with `weights_only=True` and an allowlist (`SAFE_GLOBALS`) of the few
  non-tensor types a Composer checkpoint holds. A file that needs anything else is refused, naming the
  types; with `TRUST_CHECKPOINT_CODE=1` it is loaded with `weights_only=False` after a warning.

`recover_latest_checkpoint` runs before an autoresume: when `latest` is missing (a kill between Composer's
remove and re-create of the symlink), dangling or points to a damaged file, it points `latest` to the
newest whole checkpoint and renames the damaged ones `*.corrupt`.
"""
from __future__ import annotations

import datetime
import logging
import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from composer import Trainer
from composer.core import Callback, State
from composer.loggers import Logger
from composer.utils import checkpoint, dist, reproducibility
from composer.utils.file_helpers import format_name_with_dist
from torch.torch_version import TorchVersion

from src.config import ConfigError

log = logging.getLogger(__name__)

PARTIAL_PREFIX = ".partial-"
TRUST_ENV = "TRUST_CHECKPOINT_CODE"
# What a Composer checkpoint holds besides tensors and plain containers: numpy arrays (RNG states,
# metric values), timedeltas (timestamps) and the torch version (metadata).
_NUMPY_CORE = np._core if hasattr(np, "_core") else np.core  # numpy 2 renamed it
SAFE_GLOBALS = [TorchVersion, _NUMPY_CORE.multiarray._reconstruct, np.ndarray, np.dtype, datetime.timedelta,
                *(getattr(np.dtypes, name) for name in dir(np.dtypes) if name.endswith("DType"))]


class CheckpointError(ConfigError):
    """A checkpoint that cannot (or must not) be loaded; the message names the file and what to do."""


def checkpoint_problem(path: str | os.PathLike) -> Optional[str]:
    """What is wrong with a `torch.save` file (truncated, bytes changed), or None if it is whole.

    torch.save writes a zip archive with a CRC-32 per record; the directory at its end goes last. Files
    that are not zip archives (legacy torch format) cannot be checked and count as whole.
    """
    try:
        with open(path, "rb") as file:
            if file.read(2) != b"PK":
                return None
        with zipfile.ZipFile(path) as archive:
            bad_record = archive.testzip()
    except zipfile.BadZipFile:
        return ("is truncated or damaged: its zip directory is missing or unreadable (the write did not finish, "
                "or the copy was cut short)")
    except OSError as error:
        return f"cannot be read: {error}"
    if bad_record:
        return f"is corrupted: its record {bad_record!r} does not match its CRC-32 (bytes changed after saving)"
    return None


def load_checkpoint_file(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """torch.load of a whole file, with weights_only=True and SAFE_GLOBALS (see the module docstring)."""
    real = os.path.realpath(path)
    problem = checkpoint_problem(path)
    if problem:
        raise CheckpointError(f"checkpoint {real} {problem}. Load an earlier checkpoint of the run (with "
                              "autoresume, the newest whole one is found automatically).")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        allowed = {f"{g.__module__}.{g.__qualname__}" for g in SAFE_GLOBALS}
        needed = ", ".join(sorted(set(torch.serialization.get_unsafe_globals_in_checkpoint(path)) - allowed))
        if os.environ.get(TRUST_ENV) == "1":
            warnings.warn(f"{TRUST_ENV}=1: loading {real} with torch.load(weights_only=False), which runs the "
                          f"code it names ({needed or 'objects outside the allowlist'})")
            return torch.load(path, map_location=map_location, weights_only=False)
        raise CheckpointError(
            f"checkpoint {real} was not loaded: unpickling it needs {needed or 'objects outside the allowlist'}, "
            "and calling those can run any code (checkpoints written by this project need none of them). If "
            f"you trust the file, set {TRUST_ENV}=1."
        ) from error


def _atomic(write: Callable[[dict, str], None]) -> Callable[[dict, str], None]:
    def write_checkpoint_file(state_dict: dict, filename: str) -> None:
        folder, name = os.path.split(filename)
        partial = os.path.join(folder, f"{PARTIAL_PREFIX}{os.getpid()}-{name}")  # same suffix: same format
        try:
            write(state_dict, partial)
            with open(partial, "rb") as file:
                os.fsync(file.fileno())
            os.replace(partial, filename)
        except BaseException:
            if os.path.exists(partial):
                os.remove(partial)
            raise
        directory = os.open(folder or ".", os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a power cut
        finally:
            os.close(directory)

    write_checkpoint_file.atomic = True  # type: ignore[attr-defined]
    return write_checkpoint_file


def install() -> None:
    """Make Composer's checkpoint writes atomic and its loads checked and code-free (idempotent)."""
    if not getattr(checkpoint._write_checkpoint_file, "atomic", False):
        checkpoint._write_checkpoint_file = _atomic(checkpoint._write_checkpoint_file)

    def torch_load_with_validation(checkpoint_filepath, map_location):
        return load_checkpoint_file(checkpoint._ensure_valid_checkpoint(checkpoint_filepath), map_location)

    checkpoint._torch_load_with_validation = torch_load_with_validation


def _checkpoint_names(folder: Path, save_filename: str, run_name: str) -> list[Path]:
    """The checkpoints in `folder` named by the `save_filename` template, the most recently written first."""
    template = format_name_with_dist(save_filename, run_name)
    pattern = re.escape(template)
    for unit in ("epoch", "batch", "sample", "token", "batch_in_epoch", "sample_in_epoch", "token_in_epoch"):
        pattern = pattern.replace(re.escape(f"{{{unit}}}"), f"(?P<{unit}>\\d+)")
    regex = re.compile(f"^{pattern}$")
    found = []
    for path in folder.iterdir():
        match = regex.match(path.name)
        if match and path.is_file() and not path.is_symlink():
            found.append((path.stat().st_mtime, int(match.groupdict().get("batch") or 0), path))
    return [path for *_, path in sorted(found, reverse=True)]


def _point(link: Path, target: Path) -> None:
    """Point the symlink `link` to `target` atomically (a new link renamed over the old one)."""
    temporary = link.with_name(f"{PARTIAL_PREFIX}{os.getpid()}-{link.name}")
    if temporary.is_symlink() or temporary.exists():
        temporary.unlink()
    temporary.symlink_to(os.path.relpath(target, link.parent))
    os.replace(temporary, link)


def recover_latest_checkpoint(save_folder: str, run_name: str, save_filename: str,
                              latest_filename: Optional[str]) -> Optional[str]:
    """Before an autoresume: point the `latest` symlink to the most recently written whole checkpoint.

    That repairs a `latest` that is missing (a kill between Composer's removal and re-creation of the
    link), dangling, one checkpoint behind (a kill between the rename and the link), or pointing to a
    damaged file. Damaged checkpoints are renamed `*.corrupt` (kept, but out of Composer's way) and
    partial files of unfinished writes are deleted. Returns what `latest` points to afterwards, or None.
    Local folders only, on global rank 0 only (the other ranks wait for it inside the Trainer).
    """
    if not latest_filename or "://" in save_folder or dist.get_global_rank() != 0:
        return None
    folder = Path(format_name_with_dist(save_folder, run_name))
    if not folder.is_dir():
        return None
    for partial in folder.glob(f"{PARTIAL_PREFIX}*"):
        log.warning("removing %s, left by a checkpoint write that did not finish", partial)
        partial.unlink()
    latest = folder / format_name_with_dist(latest_filename, run_name)
    if latest.is_dir():  # a sharded checkpoint: a folder of files, not checked here
        return str(latest)
    newest = None
    for candidate in [] if "/" in save_filename else _checkpoint_names(folder, save_filename, run_name):
        problem = checkpoint_problem(candidate)
        if problem is None:
            newest = candidate
            break
        warnings.warn(f"checkpoint {candidate} {problem}; renamed it {candidate.name}.corrupt")
        candidate.rename(candidate.with_name(candidate.name + ".corrupt"))
    if latest.exists() and newest is not None and os.path.samefile(latest, newest):
        return str(newest)
    if newest is None:  # no checkpoint named like save_filename: keep a whole `latest`, drop a broken one
        problem = checkpoint_problem(latest) if latest.exists() else "does not exist"
        if problem is None:
            return str(os.path.realpath(latest))
        if latest.is_symlink() or latest.exists():
            warnings.warn(f"{latest} (-> {os.path.realpath(latest)}) {problem}: starting without it")
            latest.unlink()
        return None
    was = f"pointed to {os.readlink(latest)}" if latest.is_symlink() else "was missing"
    warnings.warn(f"autoresume: {latest} {was}; resuming from the newest whole checkpoint, {newest}")
    _point(latest, newest)
    return str(newest)


class RestoreRngState(Callback):
    """Loads a checkpoint's RNG states right after the first batch of a mid-epoch resume is fetched."""

    def __init__(self, rng_state: list[dict]):
        self.rng_state: Optional[list[dict]] = rng_state

    def after_dataloader(self, state: State, logger: Logger) -> None:
        if self.rng_state is not None:
            reproducibility.load_rng_state(self.rng_state)
            self.rng_state = None


def restore_rng_state_mid_epoch(trainer: Trainer) -> None:
    """Make a mid-epoch resume draw the same random numbers (dropout) as the uninterrupted run.

    Composer 0.32 restores a checkpoint's RNG states only at an epoch's first batch, or while it spins a
    dataloader forward; a StreamingDataset resumes by itself (no spinning), so mid-epoch the states were
    never restored and the losses after a resume differed from the uninterrupted run's. They are restored
    here instead, after the first batch is fetched (creating the dataloader iterator draws a seed).
    """
    rng_state = trainer._rng_state
    state = trainer.state
    if rng_state is None or int(state.timestamp.batch_in_epoch) == 0 or "train" not in state.dataset_resumption:
        return
    trainer._rng_state = None
    state.callbacks.append(RestoreRngState(rng_state))
