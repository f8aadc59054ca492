"""Fine-tune on the eight GLUE tasks (WNLI left out) from one pretraining checkpoint, and score them.

    python glue.py yamls/test/glue.yaml                                   # synthetic tasks, tiny model, CPU
    python glue.py yamls/finetuning/glue/mosaic-bert-base-uncased.yaml starting_checkpoint_load_path=CKPT

Launched with plain `python` (not `composer`): with `parallel: true` it runs one job per GPU itself.
Results go to `<results_folder>/glue_results.{json,md,png}`, the JSON rewritten as each job ends. The
exit status is 1 when any job failed.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

from composer.utils import get_file, reproducibility
from omegaconf import DictConfig

from src.builders import build_model
from src.classification_data import check_start_checkpoint
from src.config import ConfigError, format_config, leftover_keys, pop_typed, report_unused, run_cli, to_plain_dict
from src.glue.report import ResultsFile, write_report
from src.glue.sweep import GlueSweep, gpu_ids_for, run_sweep


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run the sweep; returns the results (as written to glue_results.json)."""
    print(format_config(cfg))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    config: dict[str, Any] = to_plain_dict(cfg)
    sweep = GlueSweep.pop_from(config)
    reproducibility.seed_all(sweep.default_seed)
    start_path = pop_typed(config, "starting_checkpoint_load_path", str, None)
    download_folder = pop_typed(config, "local_pretrain_checkpoint_folder", str, "./local-bert-checkpoints")
    results_folder = pop_typed(config, "results_folder", str, None) or local_results_folder(sweep)
    report_unused(leftover_keys(config))
    gpu_ids = gpu_ids_for(sweep.parallel)

    start_checkpoint = fetch_checkpoint(start_path, download_folder) if start_path else None
    if start_checkpoint:
        check_start_checkpoint(build_model(sweep.model, [], num_labels=2), start_checkpoint,
                               "starting_checkpoint_load_path")

    planned = sweep.planned()
    results = ResultsFile(results_folder, {"base_run_name": sweep.base_run_name, "model": sweep.model.get("name"),
                                           "starting_checkpoint": start_path, "parallel": sweep.parallel},
                          planned, [sweep.run_name(task, seed) for task, seed, _ in planned])
    print(f"[glue] {len(planned)} jobs on {f'GPUs {gpu_ids}' if gpu_ids else 'this process'}; "
          f"results in {results.path}", flush=True)
    started = time.time()
    run_sweep(sweep, start_checkpoint, lambda job, result: results.record(job.run_name, result), gpu_ids)
    results.content["wall_clock_seconds"] = round(time.time() - started, 1)
    results.write()
    print(write_report(results), flush=True)
    if results.failed:
        print(f"[glue] {len(results.failed)} job(s) failed: {', '.join(results.failed)}", file=sys.stderr)
    return results.content


def fetch_checkpoint(path: str, folder: str) -> str:
    """A local checkpoint as it is; a remote one (s3://, https://, ...) downloaded once into `folder`."""
    if "://" not in path:
        if not Path(path).expanduser().is_file():
            raise ConfigError(f"starting_checkpoint_load_path: the checkpoint {path} does not exist (for "
                              f"yamls/test/glue.yaml, `make demo` writes ./runs/test-main/ckpt/latest-rank0.pt)")
        return str(Path(path).expanduser().resolve())
    destination = Path(folder) / path.split("://", 1)[1].replace("/", "--")
    if not destination.is_file():
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            get_file(path, str(destination))
        except FileNotFoundError as error:
            raise ConfigError(f"starting_checkpoint_load_path: {path} could not be fetched: {error}") from error
    return str(destination.resolve())


def local_results_folder(sweep: GlueSweep) -> str:
    """The checkpoint folder, unless it is remote (the results files are written locally)."""
    if "://" in sweep.checkpoint_folder:
        return f"./glue-results/{sweep.base_run_name}"
    return sweep.checkpoint_folder


def exit_status(results: Optional[dict[str, Any]]) -> int:
    """1 when a job failed (or nothing ran), else 0."""
    if not results:
        return 1
    return int(any(job["status"] != "ok" for job in results["jobs"].values()))


if __name__ == "__main__":
    outcome: dict[str, Any] = {}
    status = run_cli(lambda cfg: outcome.update(train(cfg)), sys.argv[1:])
    sys.exit(status or exit_status(outcome))
