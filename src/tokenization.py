"""Loading tokenizers with errors that say what to do, and what a tokenizer's pipeline guarantees."""
from __future__ import annotations

import json
import os
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, Callable, Optional

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


# Pre-tokenizers that split the text at whitespace, and those that only split the pieces further.
WHITESPACE_SPLITTERS = {"BertPreTokenizer", "Whitespace", "WhitespaceSplit"}
FURTHER_SPLITTERS = {"Digits", "Punctuation"}
# Normalizers that map each character on its own (none joins or moves text across a space).
PER_CHARACTER_NORMALIZERS = {"BertNormalizer", "Lowercase", "NFC", "NFD", "NFKC", "NFKD", "StripAccents"}


def _component_types(component: object, members: str) -> list[str]:
    """The types in a `tokenizers` normalizer or pre-tokenizer, a Sequence's members included."""
    if component is None:
        return []

    def types(state: dict) -> list[str]:
        if state["type"] == "Sequence":
            return [t for member in state[members] for t in types(member)]
        return [state["type"]]

    return types(json.loads(component.__getstate__()))


# What BertNormalizer does to ASCII text (tokenizers' normalizers/bert.rs), done by str methods: with
# clean_text it drops NUL and the other control characters (DEL and the C0 controls, vertical tab and form
# feed included) but keeps tab, newline and carriage return as spaces; with lowercase it lowercases.
# handle_chinese_chars and strip_accents (which follows lowercase when unset) change nothing in ASCII.
_ASCII_CLEAN_TEXT = str.maketrans({**{c: None for c in [*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F]},
                                   **{c: " " for c in (0x09, 0x0A, 0x0D)}})


def _normalize_ascii(text: str, clean_text: bool, lowercase: bool) -> str:
    if clean_text:
        text = text.translate(_ASCII_CLEAN_TEXT)
    return text.lower() if lowercase else text


def ascii_normalizer(backend: Any) -> Optional[Callable[[str], str]]:
    """For a fast tokenizer's Rust pipeline (`backend_tokenizer`) whose normalizer is one BertNormalizer (or
    none): a function that normalizes ASCII text as it does (picklable, for spawned dataloader workers).
    None for any other normalizer."""
    if backend.normalizer is None:
        return partial(_normalize_ascii, clean_text=False, lowercase=False)
    state = json.loads(backend.normalizer.__getstate__())
    if state["type"] != "BertNormalizer":
        return None
    return partial(_normalize_ascii, clean_text=state["clean_text"], lowercase=state["lowercase"])


def starts_are_tokenized_alike(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether tokenizing a text cut at an ASCII space, tab or newline gives the first tokens of the whole
    text: true when the tokenizer splits words at whitespace before anything else and normalizes each
    character on its own (BERT's WordPiece tokenizers, among others). Then the start of a long document
    is all that needs tokenizing for its first max_seq_len tokens."""
    backend = getattr(tokenizer, "backend_tokenizer", None)  # the Rust pipeline of a fast tokenizer
    if backend is None:
        return False
    splitters = _component_types(backend.pre_tokenizer, "pretokenizers")
    normalizers = _component_types(backend.normalizer, "normalizers")
    return (any(t in WHITESPACE_SPLITTERS for t in splitters)
            and all(t in WHITESPACE_SPLITTERS | FURTHER_SPLITTERS for t in splitters)
            and all(t in PER_CHARACTER_NORMALIZERS for t in normalizers))
