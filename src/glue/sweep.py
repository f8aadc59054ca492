"""The GLUE sweep: its config, its jobs in two rounds, and running them serially or one per GPU.

Round 1 fine-tunes CoLA, SST-2, QQP, QNLI and MNLI from the pretraining checkpoint; round 2 fine-tunes
RTE, MRPC and STS-B from the final MNLI checkpoint of the same seed (of the first MNLI seed when MNLI did
not run with that seed). `parallel: true` runs one job per GPU at a time, each in a process of its own
that sees only its GPU; `parallel: false` runs them one after another in this process. A job that fails
is recorded with its error and the others go on.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any, Callable, Iterator, Optional

import torch

from src.config import ConfigError, pop_typed
from src.glue.data import GLUE_TASKS, check_glue_data_dir, glue_task
from src.glue.finetuning_jobs import TRAINER_KWARGS, GlueJob, job_settings, run_job_safely

ROUNDS = (("mnli", "qqp", "qnli", "sst2", "cola"), ("stsb", "mrpc", "rte"))  # longest first, for the GPU queue
DEFAULT_OPTIMIZER = {"name": "decoupled_adamw", "betas": [0.9, 0.98], "eps": 1.0e-6}
DEFAULT_SCHEDULER = {"name": "linear_decay_with_warmup", "t_warmup": "0.06dur", "alpha_f": 0.0}
# Trainer keys each job sets itself; at the top level of a GLUE config they would be ambiguous.
PER_JOB_KEYS = ("run_name", "seed", "save_folder", "load_path", "load_weights_only", "load_strict_model_weights",
                "load_ignore_keys", "autoresume")
TASK_KEYS = ("seeds", "trainer_kwargs")
KILLED_HINT = "; -9 is SIGKILL, e.g. out of host memory"

OnResult = Callable[[GlueJob, dict[str, Any]], None]


@dataclass
class GlueSweep:
    """A GLUE config, validated. `shared` holds trainer settings for every job (tasks may override them)."""

    tasks: dict[str, dict[str, Any]]
    model: dict[str, Any]
    shared: dict[str, Any]
    base_run_name: str
    default_seed: int
    parallel: bool
    max_seq_len: int
    checkpoint_folder: str
    data_dir: Optional[str]

    @classmethod
    def pop_from(cls, config: dict[str, Any]) -> GlueSweep:
        tasks = validate_tasks(pop_typed(config, "tasks", dict))
        data_dir = pop_typed(config, "glue_data_dir", str, None)
        if data_dir:
            check_glue_data_dir(data_dir, list(tasks))
        optimizer = {**DEFAULT_OPTIMIZER, **pop_typed(config, "optimizer", dict, {})}
        for key in ("lr", "weight_decay"):
            if key in optimizer:
                raise ConfigError(f"optimizer.{key}: each task has its own; set tasks.<task>.trainer_kwargs.{key} "
                                  f"(or {key} at the top level for every task)")
        shared = {
            "optimizer": optimizer,
            "scheduler": pop_typed(config, "scheduler", dict, DEFAULT_SCHEDULER),
            "algorithms": pop_typed(config, "algorithms", dict, {}),
            "callbacks": pop_typed(config, "callbacks", dict, {}),
            "loggers": pop_typed(config, "loggers", dict, {}),
            "progress_bar": False,
            "log_to_console": True,
            "console_log_interval": "50ba",
        }
        shared.update({key: config.pop(key) for key in TRAINER_KWARGS
                       if key in config and key != "max_seq_len" and key not in PER_JOB_KEYS})
        base_run_name = pop_typed(config, "base_run_name", str, os.environ.get("COMPOSER_RUN_NAME", "glue"))
        return cls(
            tasks=tasks,
            model=pop_typed(config, "model", dict),
            shared=shared,
            base_run_name=base_run_name,
            default_seed=pop_typed(config, "default_seed", int, 19),
            parallel=pop_typed(config, "parallel", bool, False),
            max_seq_len=pop_typed(config, "max_seq_len", int, 256, positive=True),
            checkpoint_folder=pop_typed(config, "save_finetune_checkpoint_folder", str)
            .replace("{base_run_name}", base_run_name),
            data_dir=data_dir,
        )

    def seeds(self) -> list[int]:
        return sorted({seed for task in self.tasks.values() for seed in task["seeds"] or [self.default_seed]})

    def planned(self) -> list[tuple[str, int, int]]:
        """(task, seed, round) of every job, in the order they run."""
        return [(task, seed, index + 1) for index, tasks in enumerate(ROUNDS) for task in tasks
                if task in self.tasks for seed in self.tasks[task]["seeds"] or [self.default_seed]]

    def run_name(self, task: str, seed: int) -> str:
        return f"{self.base_run_name}_task={task}_seed={seed}"

    def jobs(self, round_index: int, start_checkpoints: dict[int, Optional[str]]) -> list[GlueJob]:
        """The round's jobs, one per task and seed; `start_checkpoints` maps a seed to where it starts."""
        jobs = []
        for task in ROUNDS[round_index]:
            if task not in self.tasks:
                continue
            task_cfg = self.tasks[task]
            for seed in task_cfg.get("seeds") or [self.default_seed]:
                jobs.append(self.job(task, seed, start_checkpoints.get(seed)))
        return jobs

    def job(self, task: str, seed: int, start_checkpoint: Optional[str]) -> GlueJob:
        run_name = self.run_name(task, seed)
        settings = job_settings(task, {**self.shared, **self.tasks[task].get("trainer_kwargs", {})},
                                self.max_seq_len)
        optimizer = {**settings.pop("optimizer"), "lr": settings.pop("lr"),
                     "weight_decay": settings.pop("weight_decay")}
        loggers = {name: dict(kwargs or {}) for name, kwargs in settings.pop("loggers").items()}
        if "wandb" in loggers:
            loggers["wandb"].setdefault("group", self.base_run_name)
            loggers["wandb"].setdefault("name", run_name)
        batch_size = settings.pop("batch_size")
        max_seq_len = settings.pop("max_seq_len")
        keep = settings["save_num_checkpoints_to_keep"]
        settings.update(optimizer=optimizer, loggers=loggers, run_name=run_name, seed=seed,
                        save_folder=f"{self.checkpoint_folder}/task={task}/seed={seed}" if keep != 0 else None)
        return GlueJob(task=task, seed=seed, run_name=run_name, model=self.model, trainer=settings,
                       batch_size=batch_size, max_seq_len=max_seq_len, data_dir=self.data_dir,
                       start_checkpoint=start_checkpoint)


def validate_tasks(tasks: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Task names, their keys, seeds and trainer_kwargs, checked before anything runs."""
    if not tasks:
        raise ConfigError(f"tasks is empty; name some of {', '.join(GLUE_TASKS)}")
    checked = {}
    for name, task_cfg in tasks.items():
        glue_task(name)
        task_cfg = dict(task_cfg or {})
        unknown = sorted(set(task_cfg) - set(TASK_KEYS))
        if unknown:
            raise ConfigError(f"tasks.{name}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(TASK_KEYS)}")
        seeds = task_cfg.get("seeds")
        if seeds is not None and (not isinstance(seeds, list) or not seeds
                                  or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
            raise ConfigError(f"tasks.{name}.seeds must be a non-empty list of integers, got {seeds!r}")
        kwargs = task_cfg.get("trainer_kwargs") or {}
        unknown = sorted(set(kwargs) - set(TRAINER_KWARGS))
        if unknown:
            raise ConfigError(f"tasks.{name}.trainer_kwargs: unknown key(s) {', '.join(unknown)}; valid: "
                              f"{', '.join(sorted(set(TRAINER_KWARGS) - set(PER_JOB_KEYS)))}")
        per_job = sorted(set(kwargs) & set(PER_JOB_KEYS))
        if per_job:
            raise ConfigError(f"tasks.{name}.trainer_kwargs: {', '.join(per_job)} are set by glue.py for each job")
        checked[name] = {"seeds": seeds, "trainer_kwargs": kwargs}
    return checked


def round_2_start(seed: int, mnli_checkpoints: dict[int, str], mnli_seeds: list[int]) -> Optional[str]:
    """The final MNLI checkpoint of the same seed, else that of the first MNLI seed that has one."""
    if seed in mnli_checkpoints:
        return mnli_checkpoints[seed]
    return next((mnli_checkpoints[s] for s in mnli_seeds if s in mnli_checkpoints), None)


def run_sweep(sweep: GlueSweep, pretrain_checkpoint: Optional[str], on_result: OnResult,
              gpu_ids: Optional[list[str]] = None) -> None:
    """Both rounds, on `gpu_ids` (one job per GPU at a time) or, when None, in this process."""
    def run(jobs: list[GlueJob], on_end: OnResult) -> None:
        if gpu_ids:
            run_in_processes(jobs, gpu_ids, on_end)
        else:
            run_in_this_process(jobs, on_end)

    seeds = sweep.seeds()
    mnli_checkpoints: dict[int, str] = {}

    def collect(job: GlueJob, result: dict[str, Any]) -> None:
        if job.task == "mnli" and result.get("final_checkpoint"):
            mnli_checkpoints[job.seed] = result["final_checkpoint"]
        on_result(job, result)

    round_1 = sweep.jobs(0, dict.fromkeys(seeds, pretrain_checkpoint))
    run(round_1, collect)

    mnli_seeds = [job.seed for job in round_1 if job.task == "mnli"]
    if mnli_seeds:
        starts = {seed: round_2_start(seed, mnli_checkpoints, mnli_seeds) for seed in seeds}
    else:
        starts = dict.fromkeys(seeds, pretrain_checkpoint)
    round_2 = sweep.jobs(1, starts)
    blocked = [job for job in round_2 if mnli_seeds and not job.start_checkpoint]
    for job in blocked:
        on_result(job, {"status": "failed", "error": f"not run: {job.task} starts from the final MNLI checkpoint, "
                                                     f"and no MNLI job finished"})
    run([job for job in round_2 if job not in blocked], on_result)


def run_in_this_process(jobs: list[GlueJob], on_result: OnResult) -> None:
    for job in jobs:
        on_result(job, run_job_safely(job))


def run_in_processes(jobs: list[GlueJob], gpu_ids: list[str], on_result: OnResult) -> None:
    """One job per GPU at a time, each in a fresh (spawned) process that sees only its GPU.

    A process that dies without a result (killed for host memory, a segfault) is recorded as failed.
    """
    context = multiprocessing.get_context("spawn")
    free, pending, running = list(gpu_ids), list(jobs), {}
    while pending or running:
        while free and pending:
            job, gpu = pending.pop(0), free.pop(0)
            receiver, sender = context.Pipe(duplex=False)
            process = context.Process(target=job_process, args=(job, sender), name=job.run_name, daemon=False)
            with visible_devices(gpu):
                process.start()
            sender.close()
            running[process.sentinel] = (job, process, receiver, gpu)
        for sentinel in wait(list(running)):
            job, process, receiver, gpu = running.pop(sentinel)
            process.join()
            try:
                result = receiver.recv()
            except EOFError:
                result = {"status": "failed", "device": f"cuda (CUDA_VISIBLE_DEVICES={gpu})",
                          "error": f"the job's process died without a result (exit code {process.exitcode}"
                                   f"{KILLED_HINT if process.exitcode == -9 else ''})"}
            receiver.close()
            free.append(gpu)
            on_result(job, result)


def job_process(job: GlueJob, sender) -> None:
    sender.send(run_job_safely(job))
    sender.close()


@contextlib.contextmanager
def visible_devices(devices: str) -> Iterator[None]:
    """CUDA_VISIBLE_DEVICES for a process started inside the block (a spawned child copies the environment)."""
    before = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = devices
    try:
        yield
    finally:
        if before is None:
            del os.environ["CUDA_VISIBLE_DEVICES"]
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = before


def gpu_ids_for(parallel: bool) -> Optional[list[str]]:
    """The GPUs a parallel sweep spreads over (those CUDA_VISIBLE_DEVICES shows, if set); None: serial."""
    if not parallel:
        return None
    count = torch.cuda.device_count()
    if count == 0:
        raise ConfigError("parallel: true runs one job per GPU and this machine has none; set parallel: false")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return visible.split(",")[:count] if visible else [str(i) for i in range(count)]
