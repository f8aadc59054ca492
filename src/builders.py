"""The one place that turns config sections into objects, shared by main.py,
sequence_classification.py and glue.py.

Each kind of object (model, optimizer, scheduler, algorithm, callback, logger) has a registry from the
name used in YAML to a constructor. An unknown name fails with the list of valid ones; keys that a
constructor does not take are reported as unused rather than silently dropped.
"""
from __future__ import annotations

import importlib
import inspect
import logging
import re
from typing import Any, Callable, Mapping, MutableMapping, Optional

import torch
from composer.utils import dist, reproducibility

from src import checkpointing
from src.config import ConfigError, format_config, pop_typed, to_plain_dict
from src.object_store import forget_autoresume_download
from src.trainer import Trainer

log = logging.getLogger(__name__)


def lazy(path: str) -> Callable[..., Any]:
    """`"package.module:attr"` -> a constructor imported on first use (optional packages stay optional)."""
    module_name, attr = path.split(":")

    def construct(*args, **kwargs):
        return getattr(importlib.import_module(module_name), attr)(*args, **kwargs)

    construct.target = path  # type: ignore[attr-defined]
    return construct


def start_run(cfg) -> dict[str, Any]:
    """What every entry script does first: print the config (rank 0, secrets redacted), seed every RNG
    with `seed` (default 17), and return the config as a plain dict to pop sections from (`seed` stays
    in it: the Trainer reads it too)."""
    if dist.get_global_rank() == 0:
        print(format_config(cfg))
    config: dict[str, Any] = to_plain_dict(cfg)
    config["seed"] = pop_typed(config, "seed", int, 17)
    reproducibility.seed_all(config["seed"])
    if dist.get_world_size() > 1:
        # The ranks' process group, made before any dataset, as the Trainer would make it (which then finds
        # it made). Otherwise streaming makes a temporary one on MASTER_PORT for each dataset it builds and
        # tears it down: a rank that reached the next dataset's while rank 0 still closed the last one's
        # store had its connection reset, and rank 0 then waited for it forever (CI, sessions 10 and 13).
        dist.initialize_dist(config.get("device", TRAINER_KEYS["device"][1]),
                             float(config.get("dist_timeout", TRAINER_KEYS["dist_timeout"][1])))
    return config


def constructor_of(factory: Callable[..., Any]) -> Callable[..., Any]:
    target = getattr(factory, "target", None)
    if target is None:
        return factory
    module_name, attr = target.split(":")
    return getattr(importlib.import_module(module_name), attr)


MLM_MODELS = {
    "hf_bert": lazy("src.hf_bert:create_hf_bert_mlm"),
    "mosaic_bert": lazy("src.mosaic_bert:create_mosaic_bert_mlm"),
}
CLASSIFICATION_MODELS = {
    "hf_bert": lazy("src.hf_bert:create_hf_bert_classification"),
    "mosaic_bert": lazy("src.mosaic_bert:create_mosaic_bert_classification"),
}


def adamw(params, **kwargs):
    """torch's AdamW, fused into one kernel on CUDA."""
    kwargs.setdefault("fused", torch.cuda.is_available())
    return torch.optim.AdamW(params, **kwargs)


OPTIMIZERS = {
    # Composer's update in torch's fused kernel (src/optimizers.py): Composer's own waits for the GPU
    # once per parameter; it stays available as composer_decoupled_adamw.
    "decoupled_adamw": lazy("src.optimizers:DecoupledAdamW"),
    "composer_decoupled_adamw": lazy("composer.optim:DecoupledAdamW"),
    "decoupled_sgdw": lazy("composer.optim:DecoupledSGDW"),
    "adamw": adamw,
}
SCHEDULERS = {
    "constant_with_warmup": lazy("composer.optim:ConstantWithWarmupScheduler"),
    "cosine_with_warmup": lazy("composer.optim:CosineAnnealingWithWarmupScheduler"),
    "linear_decay_with_warmup": lazy("composer.optim:LinearWithWarmupScheduler"),
    "constant": lazy("composer.optim:ConstantScheduler"),
}
ALGORITHMS = {
    "fused_layernorm": lazy("src.fused_layernorm:FusedLayerNorm"),
    "gradient_clipping": lazy("composer.algorithms:GradientClipping"),
    "ema": lazy("composer.algorithms:EMA"),
    "low_precision_layernorm": lazy("composer.algorithms:LowPrecisionLayerNorm"),
}
CALLBACKS = {
    "speed_monitor": lazy("composer.callbacks:SpeedMonitor"),
    "lr_monitor": lazy("composer.callbacks:LRMonitor"),
    "memory_monitor": lazy("composer.callbacks:MemoryMonitor"),
    "runtime_estimator": lazy("composer.callbacks:RuntimeEstimator"),
    "optimizer_monitor": lazy("composer.callbacks:OptimizerMonitor"),
    "nan_monitor": lazy("composer.callbacks:NaNMonitor"),
    "most_frequent_token_baseline": lazy("src.callbacks:MostFrequentTokenBaseline"),
    "batch_log": lazy("src.callbacks:BatchLog"),
}
LOGGERS = {
    "wandb": lazy("src.loggers:WandBLogger"),
    "tensorboard": lazy("composer.loggers:TensorboardLogger"),
    "file": lazy("composer.loggers:FileLogger"),
    "mlflow": lazy("composer.loggers:MLFlowLogger"),
    "comet_ml": lazy("composer.loggers:CometMLLogger"),
    "neptune": lazy("composer.loggers:NeptuneLogger"),
    "mosaicml": lazy("composer.loggers:MosaicMLLogger"),
    "jsonl": lazy("src.loggers:JSONLinesLogger"),
}


def accepted_kwargs(factory: Callable[..., Any], kwargs: Mapping[str, Any], section: str,
                    unused: list[str]) -> dict[str, Any]:
    """The kwargs the constructor takes; the others go to `unused` by their dotted config name."""
    parameters = inspect.signature(constructor_of(factory)).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return dict(kwargs)
    taken = {k: v for k, v in kwargs.items() if k in parameters}
    unused.extend(f"{section}.{k}" for k in kwargs if k not in parameters)
    return taken


def build_named(registry: Mapping[str, Callable[..., Any]], kind: str, name: str, kwargs: Mapping[str, Any],
                section: str, unused: list[str], *args: Any) -> Any:
    if name not in registry:
        raise ConfigError(f"unknown {kind} {name!r} in {section}; valid: {', '.join(sorted(registry))}")
    factory = registry[name]
    try:
        return factory(*args, **accepted_kwargs(factory, kwargs or {}, section, unused))
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{section}: {error}") from error


def build_each(registry, kind: str, section_cfg: Optional[Mapping[str, Any]], section: str,
               unused: list[str]) -> list[Any]:
    """`{name: {kwargs}}` sections (algorithms, callbacks, loggers) -> a list of objects."""
    return [build_named(registry, kind, name, kwargs, f"{section}.{name}", unused)
            for name, kwargs in (section_cfg or {}).items()]


def build_model(model_cfg: MutableMapping[str, Any], unused: list[str], num_labels: Optional[int] = None,
                **extra: Any):
    """`model: {name: hf_bert | mosaic_bert, ...}` -> a Composer model (MLM, or classification if num_labels)."""
    model_cfg = dict(model_cfg)
    name = pop_typed(model_cfg, "name", str, section="model")
    if num_labels is None:
        return build_named(MLM_MODELS, "model", name, {**model_cfg, **extra}, "model", unused)
    return build_named(CLASSIFICATION_MODELS, "model", name, {**model_cfg, **extra}, "model", unused, num_labels)


def build_optimizer(optimizer_cfg: MutableMapping[str, Any], model: torch.nn.Module, unused: list[str]):
    """The optimizer over the parameters that train (not those `freeze_parameters` froze)."""
    optimizer_cfg = dict(optimizer_cfg)
    name = pop_typed(optimizer_cfg, "name", str, section="optimizer")
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    return build_named(OPTIMIZERS, "optimizer", name, optimizer_cfg, "optimizer", unused, trainable)


def freeze_parameters(model: torch.nn.Module, patterns: list[Any]) -> list[str]:
    """Stop training the parameters whose names contain a match of one of `patterns` (regular
    expressions); returns their names. `frozen_parameters: [word_embeddings]` keeps the pretrained word
    embeddings, so that words the fine-tuning data lacks stay where pretraining put them, beside the
    words it has (docs/finetuning.md). A pattern that matches nothing is a mistake, not a no-op."""
    parameters = dict(model.named_parameters())
    frozen: dict[str, torch.nn.Parameter] = {}  # by name, in the order the patterns found them
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise ConfigError(f"frozen_parameters must be a list of regular expressions, got {pattern!r}")
        try:
            matched = [name for name in parameters if re.search(pattern, name)]
        except re.error as error:
            raise ConfigError(f"frozen_parameters: {pattern!r} is not a regular expression ({error})") from error
        if not matched:
            raise ConfigError(f"frozen_parameters: {pattern!r} matches no parameter of the model; its names "
                              f"look like {', '.join(list(parameters)[:3])}")
        frozen.update((name, parameters[name]) for name in matched)
    for parameter in frozen.values():
        parameter.requires_grad_(False)
    if frozen and dist.get_global_rank() == 0:
        count = sum(parameter.numel() for parameter in frozen.values())
        print(f"frozen_parameters: {len(frozen)} tensors ({count:,} weights) do not train: {', '.join(frozen)}",
              flush=True)
    return list(frozen)


def build_scheduler(scheduler_cfg: MutableMapping[str, Any], unused: list[str]):
    scheduler_cfg = dict(scheduler_cfg)
    name = pop_typed(scheduler_cfg, "name", str, section="scheduler")
    return build_named(SCHEDULERS, "scheduler", name, scheduler_cfg, "scheduler", unused)


def device_batch_size(global_batch_size: int, name: str = "global_train_batch_size") -> int:
    world_size = dist.get_world_size()
    if global_batch_size % world_size != 0:
        raise ConfigError(
            f"{name} ({global_batch_size}) is not divisible by the number of devices ({world_size}); "
            f"use a multiple of {world_size}"
        )
    return global_batch_size // world_size


def check_sequence_length(model, loader_cfg: Mapping[str, Any], section: str) -> None:
    """Learned position embeddings (HF BERT) bound the input length; ALiBi (Mosaic BERT) does not."""
    max_seq_len = (loader_cfg.get("dataset") or {}).get("max_seq_len")
    embeddings = getattr(getattr(getattr(model, "model", model), "bert", None), "embeddings", None)
    positions = getattr(embeddings, "position_embeddings", None)
    if isinstance(max_seq_len, int) and isinstance(positions, torch.nn.Embedding) \
            and max_seq_len > positions.num_embeddings:
        raise ConfigError(
            f"{section}.dataset.max_seq_len ({max_seq_len}) is longer than the model's {positions.num_embeddings} "
            f"position embeddings: use max_seq_len <= {positions.num_embeddings}, or (training from scratch) "
            f"model.model_config.max_position_embeddings >= {max_seq_len}, or model.name=mosaic_bert, whose ALiBi "
            "attention has no length limit"
        )


def microbatch_size(value: Any, device_batch: int) -> Any:
    if value in (None, ""):
        return device_batch
    if value == "auto":
        if not torch.cuda.is_available():
            log.warning("device_train_microbatch_size: auto needs a GPU; using the whole device batch (%d)",
                        device_batch)
            return device_batch
        return "auto"
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"device_train_microbatch_size must be a positive integer or auto, got {value!r}")
    return min(value, device_batch)


TRAINER_KEYS = {
    # key: (accepted types, default)
    "run_name": (str, None),
    "max_duration": ((str, int), ...),
    "eval_interval": ((str, int), 1),
    "eval_subset_num_batches": (int, -1),
    "precision": (str, None),
    "seed": (int, 17),
    "progress_bar": (bool, False),
    "log_to_console": (bool, True),
    "console_log_interval": ((str, int), "1ba"),
    "python_log_level": (str, None),
    "save_folder": (str, None),
    "save_interval": ((str, int), "1ep"),
    "save_num_checkpoints_to_keep": (int, -1),
    "save_overwrite": (bool, False),
    "save_filename": (str, "ep{epoch}-ba{batch}-rank{rank}.pt"),
    "save_latest_filename": (str, "latest-rank{rank}.pt"),
    "save_weights_only": (bool, False),
    "load_path": (str, None),
    "load_weights_only": (bool, False),
    "load_strict_model_weights": (bool, True),
    "load_ignore_keys": (list, None),
    "autoresume": (bool, False),
    "device": (str, None),
    "dist_timeout": ((int, float), 300.0),
    "compile_config": (dict, None),
    "step_schedulers_every_batch": (bool, None),
    "async_loss": ((bool, str), "auto"),  # src/trainer.py: read each batch's loss one batch late (GPUs: auto)
    "ddp_gradient_as_bucket_view": (bool, False),  # src/trainer.py: DDP's gradients as views of its buckets
}
# Keys build_trainer reads besides TRAINER_KEYS and the sections (optimizer, scheduler, ...).
TRAINING_KEYS = ("device_train_microbatch_size", "train_metrics", "frozen_parameters")


def build_trainer(cfg: MutableMapping[str, Any], model, train_dataloader, eval_dataloader, unused: list[str],
                  extra_callbacks: Optional[list[Any]] = None) -> Trainer:
    """Pop the trainer-level keys, optimizer, scheduler, algorithms, callbacks and loggers from `cfg`."""
    trainer_kwargs = {}
    for key, (types, default) in TRAINER_KEYS.items():
        trainer_kwargs[key] = pop_typed(cfg, key, types, default)
    if trainer_kwargs["async_loss"] not in (True, False, "auto"):
        raise ConfigError(f"async_loss must be true, false or auto, got {trainer_kwargs['async_loss']!r}")
    if trainer_kwargs["autoresume"] and not trainer_kwargs["save_folder"]:
        raise ConfigError("autoresume: true needs a save_folder to look for checkpoints in")
    if trainer_kwargs["autoresume"] and not trainer_kwargs["run_name"]:
        raise ConfigError("autoresume: true needs a fixed run_name, so that a restart finds the same run")
    checkpointing.install()
    if trainer_kwargs["autoresume"]:
        checkpointing.recover_latest_checkpoint(trainer_kwargs["save_folder"], trainer_kwargs["run_name"],
                                                trainer_kwargs["save_filename"], trainer_kwargs["save_latest_filename"])
        forget_autoresume_download(trainer_kwargs["save_folder"], trainer_kwargs["run_name"],
                                   trainer_kwargs["save_latest_filename"])

    freeze_parameters(model, pop_typed(cfg, "frozen_parameters", list, []))
    optimizer = build_optimizer(pop_typed(cfg, "optimizer", dict), model, unused)
    scheduler_cfg = pop_typed(cfg, "scheduler", dict, None)
    schedulers = build_scheduler(scheduler_cfg, unused) if scheduler_cfg else None
    algorithms = build_each(ALGORITHMS, "algorithm", pop_typed(cfg, "algorithms", dict, None), "algorithms", unused)
    callbacks = build_each(CALLBACKS, "callback", pop_typed(cfg, "callbacks", dict, None), "callbacks", unused)
    loggers = build_each(LOGGERS, "logger", pop_typed(cfg, "loggers", dict, None), "loggers", unused)
    microbatch = cfg.pop("device_train_microbatch_size", None)
    device_batch = getattr(train_dataloader, "batch_size", None) or 1
    if not pop_typed(cfg, "train_metrics", bool, True):
        # Composer computes and logs the training metrics after every batch, each a wait for the GPU;
        # without them the train loss is still logged. Evaluation metrics are unaffected.
        model.train_metrics = {}
    try:
        trainer = Trainer(
            model=model,
            train_dataloader=train_dataloader,
            eval_dataloader=eval_dataloader,
            optimizers=optimizer,
            schedulers=schedulers,
            algorithms=algorithms,
            callbacks=callbacks + list(extra_callbacks or []),
            loggers=loggers,
            device_train_microbatch_size=microbatch_size(microbatch, device_batch),
            **{k: v for k, v in trainer_kwargs.items() if v is not None},
        )
    except FileNotFoundError as error:
        raise ConfigError(f"{error} (check load_path)") from error
    checkpointing.restore_rng_state_mid_epoch(trainer)
    return trainer
