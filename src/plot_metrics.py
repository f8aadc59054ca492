"""A picture of a run: loss, MaskedAccuracy, learning rate and throughput against steps, from its metrics
file.

    python -m src.plot_metrics runs/test-main/metrics.jsonl --out runs/test-main/metrics.png

The input is what the `jsonl` logger writes (`loggers: {jsonl: {path: ...}}`, see src/loggers.py): one JSON
object per line with a `step` and Composer's metric names. Train and eval curves share a panel; a panel
whose metrics the run did not log says so instead of staying blank.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Iterable, Optional

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

# Panel title -> [(curve label, regex of the metric names drawn with it)]
PANELS = {
    "Loss": [("train loss", r"loss/train/total"),
             ("eval cross entropy", r"metrics/eval/LanguageCrossEntropy")],
    "MaskedAccuracy": [("train", r"metrics/train/MaskedAccuracy"), ("eval", r"metrics/eval/MaskedAccuracy")],
    "Learning rate": [("{group}", r"lr-(?P<group>.+)")],
    "Throughput (samples/s)": [("all devices", r"throughput/samples_per_sec")],
}


def read_series(path: str | Path) -> dict[str, list[tuple[int, float]]]:
    """`{metric name: [(step, value), ...]}` from a metrics.jsonl file (hyperparameter lines are skipped)."""
    series: dict[str, list[tuple[int, float]]] = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number} is not JSON ({error.msg}); is it a jsonl logger's file?") \
                from error
        if record.get("step") is None:
            continue
        for name, value in record.items():
            if name != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                series.setdefault(name, []).append((int(record["step"]), float(value)))
    return series


def matching(series: dict[str, list[tuple[int, float]]], label: str,
             pattern: str) -> Iterable[tuple[str, list]]:
    for name in sorted(series):
        match = re.fullmatch(pattern, name)
        if match:
            yield label.format(**match.groupdict()), series[name]


def plot(series: dict[str, list[tuple[int, float]]], title: Optional[str] = None) -> Figure:
    """A 2x2 figure, one panel per entry of PANELS."""
    figure, axes = plt.subplots(2, 2, figsize=(11, 7), constrained_layout=True)
    for ax, (panel, curves) in zip(axes.flat, PANELS.items()):
        ax.set_title(panel)
        ax.set_xlabel("step (batches)")
        drawn = 0
        for label, pattern in curves:
            for name, points in matching(series, label, pattern):
                steps, values = zip(*sorted(points))
                ax.plot(steps, values, marker="o" if len(points) < 20 else None, markersize=3, label=name)
                drawn += 1
        if drawn:
            ax.legend(fontsize="small")
            ax.grid(alpha=0.3)
        else:
            ax.text(0.5, 0.5, "not logged in this run", ha="center", va="center", transform=ax.transAxes)
    if title:
        figure.suptitle(title)
    return figure


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("metrics", help="a metrics.jsonl file written by the jsonl logger")
    parser.add_argument("--out", default=None, help="the PNG to write (default: next to the metrics file)")
    args = parser.parse_args(argv)
    path = Path(args.metrics)
    if not path.is_file():
        print(f"error: {path} does not exist (add `loggers: {{jsonl: {{path: ...}}}}` to the run's YAML)",
              file=sys.stderr)
        return 2
    try:
        series = read_series(path)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else path.with_suffix(".png")
    figure = plot(series, title=str(path))
    figure.savefig(out, dpi=100)
    plt.close(figure)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
