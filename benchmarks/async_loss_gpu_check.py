"""src/trainer.py's `async_loss` on a GPU: the losses read one batch late are the losses read at once.

Trains yamls/test/main.yaml's tiny Mosaic BERT twice on the GPU, with `async_loss=false` and `true`
(same seed, checkpoints every 10 batches, an evaluation every 20), and checks that
- the late run logs every batch's loss one step later than the other, the last one at the end, with
  the same values (within GPU run-to-run noise);
- both runs write the same checkpoints and evaluate at the same steps;
- the late run waited for the GPU nowhere in Composer's trainer.py in batches 10-30 (torch's sync
  debug mode; the model's own waits, in evaluation, checkpoints and the eager tiny model, are listed but
  are not src/trainer.py's to remove).
Prints a JSON summary, writes benchmarks/results/async_loss_gpu_check.json, exits 1 if a check fails.

    python benchmarks/async_loss_gpu_check.py --data DIR   # DIR from `python -m src.synthetic.prepare`
"""
import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from main import main  # noqa: E402
from pretraining import HostWaitCounter  # noqa: E402  (benchmarks/, this script's folder)
from src import builders  # noqa: E402
from src.config import load_config  # noqa: E402

BATCHES = 40
LOSS_RTOL = 1e-2  # two GPU runs of the same seed differ by atomics' summation order, not by more


def train(data: Path, folder: Path, async_loss: bool) -> dict:
    counter = HostWaitCounter(start=10, window=20)
    builders.CALLBACKS["wait_counter"] = lambda: counter
    metrics = folder / "metrics.jsonl"
    cfg = load_config(str(REPO_ROOT / "yamls" / "test" / "main.yaml"), [
        f"data_local={data}/synthetic-c4", f"tokenizer_name={data}/tokenizer", "model.name=mosaic_bert",
        f"save_folder={folder}/ckpt", "save_interval=10ba", "save_num_checkpoints_to_keep=-1",
        f"max_duration={BATCHES}ba", "eval_interval=20ba", "eval_subset_num_batches=4", "progress_bar=false",
        "console_log_interval=100ba", "train_metrics=false", f"loggers.jsonl.path={metrics}",
        f"async_loss={str(async_loss).lower()}",
        "callbacks.wait_counter={}"])
    trainer = main(cfg, return_trainer=True)
    lines = [line for line in map(json.loads, metrics.read_text().splitlines()) if "step" in line]
    result = {
        "losses": [(line["step"], line["loss/train/total"]) for line in lines if "loss/train/total" in line],
        "eval_steps": [line["step"] for line in lines if "metrics/eval/MaskedAccuracy" in line],
        "checkpoints": sorted(path.name for path in (folder / "ckpt").glob("ep*-ba*-rank0.pt")),
        "waits_in_batches_10_to_30": counter.where,  # source line -> count
        "device": trainer.state.device.name,
    }
    trainer.close()
    return result


def composer_waits(run: dict) -> int:
    return sum(n for where, n in run["waits_in_batches_10_to_30"].items() if where.startswith("trainer.py:"))


def main_check(data: Path, out: Path) -> int:
    with tempfile.TemporaryDirectory() as scratch:
        at_once = train(data, Path(scratch) / "at_once", async_loss=False)
        late = train(data, Path(scratch) / "late", async_loss=True)
    checks = {
        "trained on the GPU": at_once["device"] == late["device"] == "gpu",
        "late losses logged one step later":
            [s for s, _ in late["losses"]] == [s + 1 for s, _ in at_once["losses"]],
        "every batch's loss logged": [s for s, _ in at_once["losses"]] == list(range(BATCHES)),
        "same loss values": all(abs(a - b) <= LOSS_RTOL * abs(a)
                                for (_, a), (_, b) in zip(at_once["losses"], late["losses"])),
        "same checkpoints": at_once["checkpoints"] == late["checkpoints"] and len(late["checkpoints"]) == 4,
        "same evaluation steps": at_once["eval_steps"] == late["eval_steps"] and late["eval_steps"],
        "no wait in Composer's loop in the late run": composer_waits(late) == 0 < composer_waits(at_once),
    }
    summary = {"gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "none",
               "checks": {k: bool(v) for k, v in checks.items()},
               "at_once": at_once, "late": late,
               "largest_relative_loss_difference": max(abs(a - b) / abs(a) for (_, a), (_, b)
                                                       in zip(at_once["losses"], late["losses"]))}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary["checks"], indent=1))
    print(f"largest relative loss difference: {summary['largest_relative_loss_difference']:.2e}; "
          f"waits in Composer's trainer.py in batches 10-30: {composer_waits(at_once)} (loss read at once), "
          f"{composer_waits(late)} (late)")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path,
                        default=REPO_ROOT / "benchmarks" / "results" / "async_loss_gpu_check.json")
    args = parser.parse_args()
    sys.exit(main_check(args.data, args.out))
