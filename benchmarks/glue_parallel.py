"""GLUE's task parallelism on one machine: the same sweep with `parallel: true` (one job per GPU at a
time, each in its own process) and with `parallel: false` (one job after another), wall-clock each.

The tasks are the synthetic ones (src/synthetic), sized like GLUE's CoLA, STS-B, MRPC and RTE (train
and validation rows); the model is BERT-base-sized and starts from scratch (the timing does not depend on
the weights); batch sizes and learning rates are the recipe's (src/glue/finetuning_jobs.py).

    python benchmarks/glue_parallel.py                          # all GPUs, 1 epoch per job, seeds 19 and 8364
    python benchmarks/glue_parallel.py --max_duration recipe    # the recipe's epochs (10, 10, 10, 3)
    python benchmarks/glue_parallel.py --model hf_bert --seeds 19 8364 717
    python benchmarks/glue_parallel.py --modes serial parallel  # the serial sweep first
    python benchmarks/glue_parallel.py --quick                  # tiny model and data: plumbing only (CPU: serial)

Prints a table and writes benchmarks/results/glue_parallel.json (with --quick, into --work_dir), and each
sweep's glue_results.* under --work_dir. Needs only the project's requirements; the data is generated offline.
"""
import argparse
import json
import multiprocessing
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
import glue  # noqa: E402
from src.config import load_config  # noqa: E402
from src.synthetic.glue_tasks import write_glue_tasks  # noqa: E402
from src.synthetic.language import World  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
GLUE_ROWS = {"cola": (8551, 1043), "stsb": (5749, 1500), "mrpc": (3668, 408), "rte": (2490, 277)}
BASE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
        "max_position_embeddings": 512}
TINY = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128,
        "max_position_embeddings": 512}


def prepare_data(work_dir: Path, quick: bool) -> tuple[Path, Path]:
    """The synthetic tokenizer (and corpus), and the four tasks at GLUE's sizes (tiny with --quick)."""
    subprocess.run([sys.executable, "-m", "src.synthetic.prepare", "--out_dir", str(work_dir / "data"),
                    "--train_docs", "2000", "--val_docs", "200", "--glue_train_rows", "100"], cwd=REPO, check=True)
    glue_dir = work_dir / "glue-sized"
    rows = {task: (200, 100) if quick else sizes for task, sizes in GLUE_ROWS.items()}
    write_glue_tasks(World(0), glue_dir, 0, train_rows={t: r[0] for t, r in rows.items()},
                     validation_rows={t: r[1] for t, r in rows.items()}, tasks=list(GLUE_ROWS))
    return work_dir / "data" / "tokenizer", glue_dir


def sweep_config(args, tokenizer: Path, glue_dir: Path, parallel: bool):
    mode = "parallel" if parallel else "serial"
    architecture = TINY if args.quick else BASE
    overrides = [f"tokenizer_name={tokenizer}", f"glue_data_dir={glue_dir}", f"model.name={args.model}",
                 f"parallel={str(parallel).lower()}", f"base_run_name=glue-{mode}",
                 f"save_finetune_checkpoint_folder={args.work_dir / mode}", "starting_checkpoint_load_path=",
                 f"max_seq_len={args.max_seq_len}", f"precision={'fp32' if args.quick else 'amp_bf16'}",
                 "console_log_interval=200ba"]
    cfg = load_config(str(REPO / "yamls" / "test" / "glue.yaml"), overrides)
    cfg.model.model_config = OmegaConf.create(
        {**architecture, **({"attention_probs_dropout_prob": 0.0} if args.model == "mosaic_bert" else {})})
    kwargs = {} if args.max_duration == "recipe" else {"max_duration": args.max_duration}
    cfg.tasks = OmegaConf.create({task: {"seeds": args.seeds, "trainer_kwargs": kwargs} for task in GLUE_ROWS})
    return cfg


def timed_sweep(args, tokenizer: Path, glue_dir: Path, parallel: bool, gpus: int) -> dict:
    started = time.perf_counter()
    results = glue.train(sweep_config(args, tokenizer, glue_dir, parallel))
    wall = time.perf_counter() - started
    jobs = list(results["jobs"].values())
    return {"mode": "parallel" if parallel else "serial", "gpus": gpus if parallel else min(gpus, 1),
            "jobs": len(jobs), "failed": sum(job["status"] != "ok" for job in jobs), "wall_clock_s": round(wall, 1),
            "sum_of_job_s": round(sum(job.get("seconds", 0) for job in jobs), 1),
            "glue_average": results["glue_average"]}


def sweep_in_fresh_process(args, tokenizer: Path, glue_dir: Path, parallel: bool, gpus: int) -> dict:
    """Each sweep in a process of its own, as `python glue.py` would run it: on two H200s, a serial sweep
    run in the process that had just run the parallel one stalled at its first job's second batch
    (docs/finetuning.md), while the same serial sweep in a fresh process ran normally."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(timed_sweep, args, tokenizer, glue_dir, parallel, gpus).result()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mosaic_bert", choices=["mosaic_bert", "hf_bert"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[19, 8364])
    parser.add_argument("--max_duration", default="1ep",
                        help="per job, e.g. 1ep or 200ba; 'recipe': the recipe's")
    parser.add_argument("--max_seq_len", type=int, default=256)
    parser.add_argument("--work_dir", type=Path, default=Path("/tmp/glue-parallel-benchmark"))
    parser.add_argument("--modes", nargs="+", choices=["parallel", "serial"], default=["parallel", "serial"],
                        help="which sweeps to run, in this order")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.max_duration = "2ba"

    gpus = torch.cuda.device_count()
    modes = [mode == "parallel" for mode in args.modes]
    if not gpus and True in modes:
        print("no GPU: only the serial sweep runs (parallel: true needs GPUs)")
        modes = [False]
    tokenizer, glue_dir = prepare_data(args.work_dir, args.quick)
    rows = [sweep_in_fresh_process(args, tokenizer, glue_dir, parallel, gpus) for parallel in modes]
    by_mode = {row["mode"]: row for row in rows}
    if len(by_mode) == 2:
        by_mode["parallel"]["speedup_vs_serial"] = round(
            by_mode["serial"]["wall_clock_s"] / by_mode["parallel"]["wall_clock_s"], 2)

    print(f"\nGLUE sweep ({args.model}, tasks {', '.join(GLUE_ROWS)}, seeds {args.seeds}, "
          f"max_duration {args.max_duration}, max_seq_len {args.max_seq_len})")
    print(f"{'mode':10}{'GPUs':>6}{'jobs':>6}{'failed':>8}{'wall-clock s':>14}{'sum of job s':>14}{'speedup':>9}")
    for row in rows:
        print(f"{row['mode']:10}{row['gpus']:>6}{row['jobs']:>6}{row['failed']:>8}{row['wall_clock_s']:>14}"
              f"{row['sum_of_job_s']:>14}{row.get('speedup_vs_serial', ''):>9}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    device = torch.cuda.get_device_name() if gpus else "cpu"
    output = args.work_dir / "glue_parallel_quick.json" if args.quick else RESULTS / "glue_parallel.json"
    output.write_text(json.dumps({"device": device, "gpus": gpus, "model": args.model, "seeds": args.seeds,
                                  "max_duration": args.max_duration, "max_seq_len": args.max_seq_len,
                                  "task_rows": GLUE_ROWS, "rows": rows}, indent=2) + "\n")
    print(f"wrote {output}")
    return int(any(row["failed"] for row in rows))


if __name__ == "__main__":
    sys.exit(main())
