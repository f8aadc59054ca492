"""Loading tokenizers with errors that say what to do."""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from src.config import ConfigError


class TokenizerNotFoundError(ConfigError):
    pass


def looks_like_path(name: str) -> bool:
    """Hub names are `name` or `org/name`; anything else is meant as a folder."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1


@lru_cache(maxsize=8)
def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """A hub name (e.g. bert-base-uncased) or a local tokenizer folder."""
    path = Path(os.path.expanduser(name_or_path))
    if not path.is_dir() and looks_like_path(name_or_path):
        raise TokenizerNotFoundError(
            f"tokenizer folder {name_or_path} does not exist. For the embedded default run `make data` "
            f"(it writes data/tokenizer); otherwise give a hub name such as bert-base-uncased."
        )
    try:
        return AutoTokenizer.from_pretrained(str(path) if path.is_dir() else name_or_path)
    except OSError as error:
        raise TokenizerNotFoundError(
            f"could not load tokenizer {name_or_path!r}: it is not a local folder and the hub gave: {error}\n"
            f"Offline, point tokenizer_name to a local tokenizer folder (e.g. data/tokenizer after `make data`)."
        ) from error
