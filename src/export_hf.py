"""Turn a Composer checkpoint into a Hugging Face model folder: config.json, model.safetensors, the tokenizer.

    python -m src.export_hf runs/test-main/ckpt/latest-rank0.pt --out_dir exported/test-main
    python -m src.export_hf s3://bucket/run/ckpt/ep0-ba70000-rank0.pt --out_dir exported/run \
        --push_to_hub me/my-bert
    python -m src.export_hf CKPT --out_dir DIR --config yamls/test/main.yaml model.name=mosaic_bert

    AutoModelForMaskedLM.from_pretrained(DIR, trust_remote_code=True)           # an MLM checkpoint
    AutoModelForSequenceClassification.from_pretrained(DIR, trust_remote_code=True)  # a classifier

The architecture comes from the checkpoint itself (Composer saves the Hugging Face config and the tokenizer
files in `state.integrations.huggingface`), or from a YAML given with `--config` (its `model` section, as
main.py / sequence_classification.py read it). Which model (`hf_bert` | `mosaic_bert`) and task (`mlm` |
`classification`) it is also comes from the checkpoint unless given. Every tensor of the checkpoint must
land in the exported model and every tensor of the model must come from the checkpoint (tied ones
aside): a mismatch is an error naming the keys, never a silently random layer.

A Mosaic BERT folder also gets this repository's modeling code (configuration_bert.py, bert_layers.py,
bert_padding.py, attention.py, flash_attn_triton.py) with `src.` imports made relative, and an `auto_map`
in config.json, so `trust_remote_code=True` loads it without this repository. An HF BERT folder is plain
`transformers` BERT.
"""
from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

import torch

from src.config import ConfigError

SRC = Path(__file__).resolve().parent
# The modeling code a Mosaic BERT folder carries (fused_layernorm.py is a training-time Composer
# algorithm: its module keeps nn.LayerNorm's weight names, so the exported model does not need it).
# Their Triton import is made optional.
TRITON_FILES = ("flash_attn_triton.py", "fused_geglu.py", "fused_dropout.py")
REMOTE_CODE_FILES = ("configuration_bert.py", "bert_layers.py", "bert_padding.py", "attention.py", *TRITON_FILES)
# Training-speed switches of Mosaic BERT that an exported model starts without: compiling costs a minute
# on first use and the fused kernels need Triton; the model computes the same either way (bf16 hidden
# states: up to rounding, and only under autocast; an exported model keeps its residual stream float32).
EXPORT_OFF = ("compile_regions", "compile_encoder", "cuda_graphs", "fused_geglu", "triton_hidden_dropout",
              "low_precision_hidden_states")
AUTO_MAP = {
    "AutoConfig": "configuration_bert.BertConfig",
    "AutoModel": "bert_layers.BertModel",
    "AutoModelForMaskedLM": "bert_layers.BertForMaskedLM",
    "AutoModelForSequenceClassification": "bert_layers.BertForSequenceClassification",
}
TASK_CLASSES = {"mlm": "BertForMaskedLM", "classification": "BertForSequenceClassification"}


class ExportError(ConfigError):
    """A checkpoint that cannot be exported as asked; the message says why and what to do."""


def model_classes(model_name: str):
    """(config class, {task: model class}) of `model_name`."""
    if model_name == "mosaic_bert":
        from src import bert_layers
        from src.configuration_bert import BertConfig
        return BertConfig, {task: getattr(bert_layers, name) for task, name in TASK_CLASSES.items()}
    if model_name == "hf_bert":
        import transformers
        return transformers.BertConfig, {task: getattr(transformers, name)
                                         for task, name in TASK_CLASSES.items()}
    raise ExportError(f"unknown --model_name {model_name!r}; valid: hf_bert, mosaic_bert")


def fetch(checkpoint: str, folder: str) -> str:
    """A local path as it is; a remote one (s3://, gs://, https://, ...) downloaded into `folder`."""
    if "://" not in checkpoint:
        if not Path(checkpoint).expanduser().is_file():
            raise ExportError(f"checkpoint {checkpoint} does not exist")
        return str(Path(checkpoint).expanduser())
    from composer.utils import get_file

    destination = str(Path(folder) / Path(checkpoint.split("://", 1)[1]).name)
    try:
        get_file(checkpoint, destination)
    except FileNotFoundError as error:
        raise ExportError(f"could not fetch {checkpoint}: {error}") from error
    return destination


def read_checkpoint(path: str) -> dict[str, Any]:
    """The checkpoint's `state` (weights, and what Composer saved about the Hugging Face model)."""
    from src.checkpointing import load_checkpoint_file

    loaded = load_checkpoint_file(path)
    if "state" not in loaded or "model" not in loaded["state"]:
        raise ExportError(f"{path} is not a Composer checkpoint (no state.model); export takes what main.py, "
                          "sequence_classification.py or glue.py save")
    return loaded["state"]


def infer(saved_class: Optional[str], weights: dict[str, torch.Tensor], model_name: Optional[str],
          task: Optional[str]) -> tuple[str, str]:
    """The model and task: as given, else from the class Composer saved, else from the weights' names."""
    found_model = found_task = None
    if saved_class:
        found_model = "mosaic_bert" if saved_class.startswith("src.") else "hf_bert"
        found_task = next((t for t, name in TASK_CLASSES.items() if saved_class.endswith(f".{name}")), None)
    else:
        found_model = "mosaic_bert" if any(".attention.Wqkv." in key for key in weights) else "hf_bert"
    if found_task is None:
        found_task = "classification" if "classifier.weight" in weights else "mlm"
    for given, found, flag in ((model_name, found_model, "--model_name"), (task, found_task, "--task")):
        if given and given != found:
            raise ExportError(f"{flag} {given} does not match the checkpoint, which holds a {found} model "
                              f"({saved_class or 'judged from its weight names'})")
    return found_model, found_task


def config_and_tokenizer_from_checkpoint(hf_state: dict[str, Any], config_class, folder: str):
    from composer.models import HuggingFaceModel

    content = {k: v for k, v in hf_state["model"]["config"]["content"].items() if k not in ("auto_map",)}
    config = config_class.from_dict(content)
    tokenizer = HuggingFaceModel.load_huggingface_tokenizer_from_saved_state(hf_state,
                                                                             tokenizer_save_dir=folder)
    return config, tokenizer


def config_and_tokenizer_from_yaml(config_args: list[str], model_name: str, weights: dict[str, torch.Tensor]):
    """Build the Composer model the YAML describes (as the entry scripts do): its config and tokenizer."""
    from src.builders import build_model
    from src.config import load_config, to_plain_dict

    config = to_plain_dict(load_config(config_args[0], config_args[1:]))
    model_cfg = dict(config.get("model") or {})
    if not model_cfg:
        raise ExportError(f"{config_args[0]} has no model section")
    if model_cfg.get("name") != model_name:
        raise ExportError(f"{config_args[0]} describes model.name {model_cfg.get('name')!r} but the "
                          f"checkpoint holds a {model_name} model")
    model_cfg.pop("pretrained_checkpoint", None)  # the weights come from the checkpoint being exported
    num_labels = weights["classifier.weight"].shape[0] if "classifier.weight" in weights else None
    composer_model = build_model(model_cfg, [], num_labels=num_labels)
    return composer_model.model.config, composer_model.tokenizer


def load_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor], checkpoint: str) -> None:
    """Every checkpoint tensor into the model, every model tensor from the checkpoint (tied ones aside)."""
    model_state = model.state_dict()
    wrong_shape = [f"{key} {tuple(weights[key].shape)} vs {tuple(value.shape)}"
                   for key, value in model_state.items()
                   if key in weights and weights[key].shape != value.shape]
    if wrong_shape:
        raise ExportError(f"{checkpoint} does not fit the {type(model).__name__} its config describes "
                          f"(checkpoint vs model): {'; '.join(wrong_shape)}")
    missing, unexpected = model.load_state_dict(weights, strict=False)
    tied = set((getattr(model, "_tied_weights_keys", None) or {}).keys())
    missing = [key for key in missing if key not in tied]
    if missing or unexpected:
        raise ExportError(f"{checkpoint} and {type(model).__name__} do not match: missing from the "
                          f"checkpoint: {', '.join(missing) or 'none'}; not in the model: "
                          f"{', '.join(unexpected) or 'none'}")


def relative_imports(source: str) -> str:
    """`from src.x import y` -> `from .x import y`; `import src.x as z` -> relative imports that
    transformers copies.

    transformers copies a remote-code module's relative imports into its module cache only when they are
    spelled `from .x import ...`, hence the extra line for `import src.x as z`.
    """
    source = re.sub(r"^(\s*)from src\.(\w+) import ", r"\1from .\2 import ", source, flags=re.MULTILINE)
    source = re.sub(r"^(\s*)import src\.(\w+) as (\w+)$",
                    r"\1from .\2 import __name__ as _\2_name  # noqa: F401 (makes transformers copy \2.py)\n"
                    r"\1from . import \2 as \3", source, flags=re.MULTILINE)
    if re.search(r"^\s*(from|import) src\b", source, flags=re.MULTILINE):
        raise ExportError("an import of src.* was left unrewritten in the modeling code; "
                          "extend relative_imports")
    return source


def optional_triton(source: str) -> str:
    """Hide a kernel file's Triton imports from transformers' import check (it looks only outside try
    blocks), so machines without Triton load the model; attention.py imports the attention kernel only on
    CUDA and falls back to SDPA when that import fails, and fused_geglu.py is imported only when
    `fused_geglu` is set."""
    imports = "import triton\nimport triton.language as tl\n"
    if imports not in source:
        raise ExportError("a kernel file no longer imports Triton as expected; update optional_triton")
    return source.replace(imports, "try:  # Triton is needed on CUDA only (attention.load_triton_kernel)\n"
                                   "    import triton\n    import triton.language as tl\n"
                                   "except ImportError:\n    raise\n", 1)


def write_remote_code(out_dir: Path) -> None:
    for name in REMOTE_CODE_FILES:
        source = relative_imports((SRC / name).read_text())
        if name in TRITON_FILES:
            source = optional_triton(source)
        (out_dir / name).write_text(source)


def export(checkpoint: str, out_dir: str | Path, model_name: Optional[str] = None, task: Optional[str] = None,
           config_args: Optional[list[str]] = None, push_to_hub: Optional[str] = None) -> Path:
    """Write the Hugging Face folder for `checkpoint` into `out_dir` (see the module doc); return it."""
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory() as scratch:
        state = read_checkpoint(fetch(checkpoint, scratch))
        weights = {key.removeprefix("model."): value for key, value in state["model"].items()}
        hf_state = (state.get("integrations") or {}).get("huggingface")
        saved_class = hf_state["model"]["config"]["class"] if hf_state else None
        model_name, task = infer(saved_class, weights, model_name, task)
        config_class, classes = model_classes(model_name)
        if config_args:
            config, tokenizer = config_and_tokenizer_from_yaml(config_args, model_name, weights)
        elif hf_state:
            config, tokenizer = config_and_tokenizer_from_checkpoint(hf_state, config_class, scratch)
        else:
            raise ExportError(f"{checkpoint} holds no Hugging Face config (integrations.huggingface): give "
                              "the YAML it was trained with, --config YAML [key=value ...]")
        model = classes[task](config)
        load_weights(model, weights, checkpoint)
        model.eval()

        out_dir.mkdir(parents=True, exist_ok=True)
        if model_name == "mosaic_bert":
            model.config.auto_map = AUTO_MAP
            for switch in EXPORT_OFF:
                setattr(model.config, switch, False)
            write_remote_code(out_dir)
        model.config.architectures = [TASK_CLASSES[task]]
        model.save_pretrained(out_dir)
        if tokenizer is not None:
            tokenizer.save_pretrained(out_dir)
    print(f"wrote {model_name} ({task}) to {out_dir}: {', '.join(sorted(p.name for p in out_dir.iterdir()))}")
    if push_to_hub:
        from huggingface_hub import HfApi

        api = HfApi()
        api.create_repo(push_to_hub, exist_ok=True)
        api.upload_folder(folder_path=str(out_dir), repo_id=push_to_hub)
        print(f"pushed {out_dir} to https://huggingface.co/{push_to_hub}")
    return out_dir


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a Composer checkpoint: a local file, s3://..., https://...")
    parser.add_argument("--out_dir", required=True, help="the folder to write")
    parser.add_argument("--model_name", choices=["hf_bert", "mosaic_bert"],
                        help="default: from the checkpoint")
    parser.add_argument("--task", choices=sorted(TASK_CLASSES), help="default: from the checkpoint")
    parser.add_argument("--config", nargs="+", metavar=("YAML", "KEY=VALUE"),
                        help="the architecture and tokenizer from this YAML's model section (with overrides)")
    parser.add_argument("--push_to_hub", metavar="REPO", help="also upload the folder to this hub repo")
    args = parser.parse_args(argv)
    try:
        export(args.checkpoint, args.out_dir, args.model_name, args.task, args.config, args.push_to_hub)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
