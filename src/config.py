"""Configs: plain YAML read with OmegaConf, overridden from the command line with `key=value`.

The entry scripts turn the config into a plain dict and *pop* each key as they use it; whatever is
left at the end was read by nothing and is reported by name (a typo does not pass silently).
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping, MutableMapping, Sequence

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
    """A config that cannot work; the message names the key, the problem and the fix."""


class UnusedConfigWarning(UserWarning):
    pass


def load_config(yaml_path: str, overrides: Sequence[str] = ()) -> DictConfig:
    """Read a YAML file and apply `key=value` overrides (dotted keys, OmegaConf syntax)."""
    path = Path(yaml_path)
    if not path.is_file():
        raise ConfigError(f"config file {yaml_path} does not exist")
    text = path.read_text()
    try:
        yaml.safe_load(text)  # OmegaConf's own message hides the position; PyYAML's shows it
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        line = text.splitlines()[mark.line] if mark and mark.line < len(text.splitlines()) else ""
        raise ConfigError(f"{yaml_path} is not valid YAML{where}: {getattr(error, 'problem', error)}\n"
                          f"    {line}") from error
    cfg = OmegaConf.create(text)
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{yaml_path} must hold a mapping of keys to values at the top level")
    for override in overrides:
        if "=" not in override:
            raise ConfigError(f"command-line override {override!r} must look like key=value (e.g. max_duration=10ba)")
    return OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))


def interpolation_sources(cfg: DictConfig) -> set[str]:
    """Top-level keys that other keys refer to as ${key}: they are read through those references."""
    text = OmegaConf.to_yaml(cfg, resolve=False)
    return {match.split(".")[0] for match in re.findall(r"\$\{([A-Za-z_][\w.]*)\}", text)}


def to_plain_dict(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """Resolve interpolations and return plain Python containers (ready to be popped)."""
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(dict(cfg))
    try:
        plain = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as error:
        raise ConfigError(f"config interpolation failed: {error}") from error
    for key in interpolation_sources(cfg):
        plain.pop(key, None)
    return plain


def pop_typed(cfg: MutableMapping[str, Any], key: str, expected: type | tuple[type, ...], default: Any = ...,
              section: str = "", positive: bool = False) -> Any:
    """Pop `key`, checking its type (and sign); a missing key without default is an error."""
    name = f"{section}.{key}" if section else key
    if key not in cfg or cfg[key] is None and default is not ...:
        if default is ...:
            raise ConfigError(f"missing required config key {name!r}")
        cfg.pop(key, None)
        return default
    value = cfg.pop(key)
    if isinstance(value, bool) and bool not in (expected if isinstance(expected, tuple) else (expected,)):
        raise ConfigError(f"{name} must be {type_names(expected)}, got the boolean {value!r}")
    if not isinstance(value, expected):
        raise ConfigError(f"{name} must be {type_names(expected)}, got {value!r} ({type(value).__name__})")
    if positive and isinstance(value, (int, float)) and value <= 0:
        raise ConfigError(f"{name} must be positive, got {value}")
    return value


def type_names(expected: type | tuple[type, ...]) -> str:
    types = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join({"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false",
                        "dict": "a mapping", "list": "a list"}.get(t.__name__, t.__name__) for t in types)


def leftover_keys(cfg: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of every leaf still in `cfg` (empty mappings left by popping do not count)."""
    names = []
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            names.extend(leftover_keys(value, prefix=f"{name}."))
        else:
            names.append(name)
    return names


def report_unused(names: Iterable[str]) -> list[str]:
    names = sorted(set(names))
    if names:
        warnings.warn(f"config keys that nothing reads (check their spelling): {', '.join(names)}",
                      UnusedConfigWarning, stacklevel=2)
    return names


# Not `tokenizer*` (a name or folder) nor `*ignore_keys` (key paths): printing those is what helps.
SECRET_KEY = re.compile(r"(token(?!izer)|(?<!ignore_)key|secret|password|passwd|credential)", re.IGNORECASE)
URL_CREDENTIALS = re.compile(r"(\w+://)[^/@\s:]+(:[^/@\s]*)?@")


def redact(value: Any, key: str = "") -> Any:
    """A copy safe to print or log: values of secret-looking keys and credentials in URLs are masked."""
    if isinstance(value, Mapping):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v, key) for v in value]
    if key and SECRET_KEY.search(key) and value not in (None, "") and not isinstance(value, (bool, int, float)):
        return "***"
    if isinstance(value, str):
        return URL_CREDENTIALS.sub(r"\1***@", value)
    return value


def format_config(cfg: DictConfig | Mapping[str, Any]) -> str:
    plain = OmegaConf.to_container(cfg, resolve=False) if isinstance(cfg, DictConfig) else dict(cfg)
    return OmegaConf.to_yaml(OmegaConf.create(redact(plain)))


def run_cli(entry_point, argv: Sequence[str]) -> int:
    """`script.py CONFIG.yaml [key=value ...]`: load, run, and turn config errors into one clear line."""
    import sys

    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: {Path(sys.argv[0]).name} CONFIG.yaml [key=value ...]", file=sys.stderr)
        return 2
    try:
        entry_point(load_config(argv[0], argv[1:]))
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
