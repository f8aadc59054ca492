"""GLUE results: the JSON file kept up to date as jobs end, the per-task tables and the GLUE average.

A task's score is the mean, over its scored metrics, of each metric's mean over the seeds that finished;
the GLUE average is the mean of the task scores (mosaicml/examples' glue.py), in percent.
"""
from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Any, Optional

from src.glue.data import GLUE_TASKS


class ResultsFile:
    """`glue_results.json`, rewritten (temp file + os.replace) whenever a job ends: never half-written."""

    def __init__(self, folder: str | Path, header: dict[str, Any], planned: list[tuple[str, int, int]],
                 run_names: list[str]):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / "glue_results.json"
        self.content: dict[str, Any] = {**header, "jobs": {
            name: {"task": task, "seed": seed, "round": round_number, "status": "pending"}
            for (task, seed, round_number), name in zip(planned, run_names)}}
        self.write()

    def record(self, run_name: str, result: dict[str, Any]) -> None:
        self.content["jobs"][run_name].update(result)
        self.write()

    def write(self) -> None:
        self.content.update(summarize(self.content["jobs"]))
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        temporary.write_text(json.dumps(self.content, indent=2) + "\n")
        os.replace(temporary, self.path)

    @property
    def failed(self) -> list[str]:
        return [name for name, job in self.content["jobs"].items() if job["status"] == "failed"]


def summarize(jobs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per task: each metric's mean and per-seed values, the failed seeds and the score; the GLUE average."""
    tasks: dict[str, Any] = {}
    for name, task in GLUE_TASKS.items():
        runs = [job for job in jobs.values() if job["task"] == name]
        if not runs:
            continue
        finished = [job for job in runs if job["status"] == "ok"]
        metrics = {key: {"mean": mean([job["metrics"][key] for job in finished]),
                         "seeds": {str(job["seed"]): job.get("metrics", {}).get(key) for job in runs}}
                   for key in task.metric_keys()}
        scored = [metrics[key]["mean"] for key in task.metric_keys(task.scored_metrics)]
        tasks[name] = {"score": None if None in scored else 100 * statistics.fmean(scored), "metrics": metrics,
                       "failed_seeds": [job["seed"] for job in runs if job["status"] == "failed"]}
    scores = [task["score"] for task in tasks.values() if task["score"] is not None]
    return {"tasks": tasks, "glue_average": statistics.fmean(scores) if scores else None,
            "glue_average_over": [name for name, task in tasks.items() if task["score"] is not None]}


def mean(values: list[float]) -> Optional[float]:
    return statistics.fmean(values) if values else None


def percent(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def markdown(content: dict[str, Any]) -> str:
    """A table per task (the mean over seeds and each seed's value, in percent), then the GLUE average."""
    lines = [f"# GLUE results: {content.get('base_run_name', '')}", ""]
    for name, task in content["tasks"].items():
        jobs = {str(job["seed"]): job for job in content["jobs"].values() if job["task"] == name}
        seeds = list(jobs)
        lines += [f"## {name.upper()}", "", "| metric | mean | " + " | ".join(f"seed {s}" for s in seeds) + " |",
                  "| --- | --- | " + " | ".join("---" for _ in seeds) + " |"]
        for key, metric in task["metrics"].items():
            cells = [cell(jobs[s], metric["seeds"][s]) for s in seeds]
            lines.append(f"| {key} | {percent(metric['mean'])} | " + " | ".join(cells) + " |")
        for seed in task["failed_seeds"]:
            lines.append(f"\nseed {seed} failed: {jobs[str(seed)].get('error', '')}")
        lines.append("")
    lines += ["## GLUE", "", "| task | score |", "| --- | --- |"]
    for name, task in content["tasks"].items():
        lines.append(f"| {name.upper()} | {score_text(task['score'], 'failed')} |")
    over = content["glue_average_over"]
    note = "" if len(over) == len(content["tasks"]) else f" (over {len(over)} of {len(content['tasks'])} tasks)"
    lines.append(f"| **GLUE average** | **{score_text(content['glue_average'], '-')}**{note} |")
    return "\n".join(lines) + "\n"


def score_text(score: Optional[float], missing: str) -> str:
    return missing if score is None else f"{score:.2f}"


def cell(job: dict[str, Any], value: Optional[float]) -> str:
    if job["status"] == "failed":
        return "failed"
    return "pending" if job["status"] == "pending" else percent(value)


def bar_chart(content: dict[str, Any], path: Path) -> None:
    """Each task's score and the GLUE average as bars (a PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [name.upper() for name in content["tasks"]] + ["GLUE"]
    scores = [task["score"] or 0.0 for task in content["tasks"].values()] + [content["glue_average"] or 0.0]
    figure, axes = plt.subplots(figsize=(1.0 + 0.9 * len(names), 4))
    bars = axes.bar(names, scores, color=["tab:blue"] * (len(names) - 1) + ["tab:orange"])
    axes.bar_label(bars, fmt="%.1f")
    axes.set_ylabel("score (%)")
    axes.set_title(f"GLUE: {content.get('base_run_name', '')}")
    axes.set_ylim(min(0.0, *scores), 100)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_report(results: ResultsFile) -> str:
    """glue_results.md and glue_results.png beside the JSON; returns the Markdown."""
    text = markdown(results.content)
    (results.folder / "glue_results.md").write_text(text)
    bar_chart(results.content, results.folder / "glue_results.png")
    return text
