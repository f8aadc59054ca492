"""Pretraining through Composer on a GPU: end-to-end speed, multi-GPU scaling and time to accuracy.

Every run goes through `main.main` with the real recipe YAML (yamls/main/*-bert-base-uncased.yaml), the
real data path (MDS shards streamed and tokenized on the fly by the YAML's workers) and Composer's
Trainer; only the data (the embedded synthetic corpus, `python -m src.synthetic.prepare`), the batch size
and the duration are overridden.

    # speed: the dataloader alone, a raw training loop on the same batches, and Composer's SpeedMonitor
    composer -n 1 benchmarks/pretraining.py speed --model mosaic_bert --data DIR --out results/speed_1gpu.json
    composer -n 2 benchmarks/pretraining.py speed --model mosaic_bert --data DIR --out results/speed_2gpu.json
    # time to accuracy: train for a fixed budget of training seconds (evaluation time excluded)
    python benchmarks/pretraining.py accuracy --model hf_bert --budget_s 180 --data DIR --out results/tta_hf.json
    # tables and the time-to-accuracy plot from the JSON files above
    python benchmarks/pretraining.py report --results benchmarks/results

DIR holds `synthetic-c4/{train,val}` and `tokenizer/` (what src.synthetic.prepare writes).
"""
from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

PROCESS_START = time.time()  # before torch's import, so the step's own time can be compared with it
import torch  # noqa: E402
from composer.core import Callback  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import throughput  # noqa: E402  (host-wait counting and host ms per step, shared with the step benchmark)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # the CPU only to try the plumbing with tiny models
RECIPES = {"hf_bert": "yamls/main/hf-bert-base-uncased.yaml", "mosaic_bert": "yamls/main/mosaic-bert-base-uncased.yaml"}


def recipe_config(model: str, data: str, batch_size: int, extra: list[str], global_batch: int | None = None):
    """The recipe YAML on the synthetic data: per-GPU microbatch `batch_size`, no checkpoints, metrics as JSON
    lines. The optimizer's batch is `global_batch` (all GPUs together; each GPU accumulates its share in
    microbatches and DDP all-reduces once per batch), by default one microbatch per GPU."""
    from composer.utils import dist

    from src.config import load_config

    world = dist.get_world_size()
    overrides = [
        f"data_local={data}/synthetic-c4", f"tokenizer_name={data}/tokenizer",
        "model.pretrained_model_name=null",  # BertConfig() defaults are BERT-base; no hub access needed
        f"global_train_batch_size={global_batch or batch_size * world}", f"device_train_microbatch_size={batch_size}",
        f"device_eval_batch_size={batch_size}", "save_folder=null", "progress_bar=false",
        "console_log_interval=50ba", "callbacks.speed_monitor.window_size=20", "eval_subset_num_batches=10",
    ]
    return load_config(str(REPO / RECIPES[model]), overrides + extra)


def synchronize() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def device_name() -> str:
    return torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu"


def jsonl_metrics(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


# ---------------------------------------------------------------------------------------------------- speed
def dataloader_rate(cfg, tokenizer, batch_size: int, batches: int) -> tuple[float, list[dict], Any]:
    """Samples/s of the train dataloader alone (workers as in the YAML), a few of its batches, and the
    running iterator (one dataset per process: a second one would race the first for shared memory)."""
    from omegaconf import OmegaConf

    from src.text_data import build_text_dataloader

    loader = build_text_dataloader(OmegaConf.to_container(cfg.train_loader, resolve=True), tokenizer,
                                   batch_size, seed=cfg.seed, unused=[])
    iterator = iter(loader)
    kept = [next(iterator) for _ in range(8)]  # the first batches include the workers' start
    started = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    rate = batches * batch_size / (time.perf_counter() - started)
    return rate, kept, iterator


def to_device(batch: dict) -> dict:
    """The batch's tensors on DEVICE (asynchronously from pinned memory); its Python lists as they are."""
    return {k: v.to(DEVICE, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def calling_frames(frames: list[traceback.FrameSummary], depth: int = 4) -> str:
    """`dir/file.py:line < dir/file.py:line < ...`: the innermost `depth` frames (the warnings machinery's
    own left out), each file by its last two path parts, so that torch's line that waited comes with the
    code that called it."""
    kept = [f for f in reversed(frames) if Path(f.filename).name != "warnings.py"][:depth]
    return " < ".join(f"{'/'.join(Path(f.filename).parts[-2:])}:{f.lineno}" for f in kept)


class HostWaitCounter(Callback):
    """Counts the times Composer's training loop makes the host wait for the GPU, over `window` batches
    from batch `start` (torch's sync debug mode warns at each wait), with the frames that led to each wait
    (`where`: calling chain -> count; the line that waits is often torch's own, e.g. inside
    `torch.cuda.synchronize`, so its callers are what names the culprit).

    A wait ends the host's lead over the GPU: the GPU then idles while the host queues the next kernels,
    and any host-side work (collating, copying the next batch) adds to the step instead of hiding behind it.
    It also times Composer's fetch of every batch (`loader_ms`, BEFORE_DATALOADER to AFTER_DATALOADER).
    """

    def __init__(self, start: int = 30, window: int = 5):
        self.start, self.window = start, window
        self.per_batch: float | None = None
        self.where: dict[str, int] = {}
        self.loader_ms: list[float] = []  # host ms in Composer's fetch of each batch (all batches)
        self._fetching = None
        self._recording = None
        self._waits: list[str] = []

    def before_dataloader(self, state, logger):
        self._fetching = time.perf_counter()

    def after_dataloader(self, state, logger):
        if self._fetching is not None:
            self.loader_ms.append((time.perf_counter() - self._fetching) * 1000)

    def record(self, message, category, filename, lineno, file=None, line=None):
        """`warnings.showwarning` while recording: it runs inside the call that warned, so the stack is the
        waiting code's."""
        if throughput.is_host_wait(message):
            self._waits.append(calling_frames(traceback.extract_stack()[:-1]))

    def start_recording(self):
        self._recording = warnings.catch_warnings()  # restores the filters and showwarning when done
        self._recording.__enter__()
        warnings.simplefilter("always")
        warnings.showwarning = self.record

    def stop_recording(self):
        self._recording.__exit__(None, None, None)
        self._recording = None
        self.per_batch = len(self._waits) / self.window
        for chain in self._waits:
            self.where[chain] = self.where.get(chain, 0) + 1

    def batch_start(self, state, logger):
        if DEVICE != "cuda":
            return
        batch = int(state.timestamp.batch)
        if batch == self.start:
            self.start_recording()
            torch.cuda.set_sync_debug_mode("warn")
        elif batch == self.start + self.window and self._recording is not None:
            torch.cuda.set_sync_debug_mode("default")
            self.stop_recording()


class FullCollections(Callback):
    """Python's full (generation-2) garbage collections in this process during training: the batch each
    began in and how long it held the host (`pauses`, [batch, ms]). After torch.compile the process holds
    ~1M objects that a full collection walks (0.5-0.8 s on the repo's CPU, session 16). Session 17's nine
    H200 runs had theirs all in batch 1, during compilation: the stalls in the SpeedMonitor's windows are
    neither collections nor new CUDA-graph shapes (benchmarks/token_buckets.py)."""

    def __init__(self):
        self.pauses: list[list[float]] = []
        self._batch = 0
        self._started: float | None = None

    def fit_start(self, state, logger):
        gc.callbacks.append(self._on_collection)

    def batch_start(self, state, logger):
        self._batch = int(state.timestamp.batch) + 1

    def fit_end(self, state, logger):
        if self._on_collection in gc.callbacks:
            gc.callbacks.remove(self._on_collection)

    def _on_collection(self, phase: str, info: dict) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started is not None:
            self.pauses.append([self._batch, round((time.perf_counter() - self._started) * 1000, 1)])
            self._started = None


class ComposerStepProfile(Callback):
    """Where the GPU's time goes over `steps` of Composer's own batches from batch `start`: GPU ms per batch
    by kernel category (NCCL's included, and how much of it ran beside other kernels or alone) and the
    GPU's idle stretches, each charged to the kernel the GPU then waited for (benchmarks/throughput.py's
    tables). torch.profiler records the GPU's activity only, so the host runs about as fast as unprofiled; the profiled batches and the wait that ends the window do
    slow the SpeedMonitor's windows around them, so `speed --profile_composer` puts them at the run's end."""

    def __init__(self, start: int, steps: int = 5):
        self.start, self.steps = start, steps
        self.summary: dict[str, Any] | None = None
        self._profiler = None
        self._started = 0.0

    def batch_start(self, state, logger):
        if DEVICE != "cuda":
            return
        batch = int(state.timestamp.batch)
        if batch == self.start:
            from torch.profiler import ProfilerActivity, profile

            self._profiler = profile(activities=[ProfilerActivity.CUDA])
            self._profiler.__enter__()
            self._started = time.perf_counter()
        elif batch == self.start + self.steps and self._profiler is not None:
            torch.cuda.synchronize()
            wall_ms = (time.perf_counter() - self._started) * 1000 / self.steps
            self._profiler.__exit__(None, None, None)
            self.summary = dict(batches=[self.start, self.start + self.steps - 1], wall_ms_per_batch=round(wall_ms, 2))
            try:  # the run and its speed figure stand without this
                spans = throughput.gpu_spans(self._profiler)
                idle_ms, waited_for = throughput.gpu_idle_gaps(spans, self.steps)
                by_category = throughput.gpu_ms_by_category(self._profiler, self.steps)
                self.summary.update(
                    gpu_idle_ms_per_batch=round(idle_ms, 2),
                    gpu_ms_per_batch_by_category={k: round(v, 2) for k, v in by_category.items()},
                    # what each category holds (under CUDA graphs too, where session 15's category sums
                    # exceeded the step: see which entries do)
                    top_kernels=throughput.top_kernels(self._profiler, self.steps),
                    communication=throughput.communication_overlap(spans, self.steps),  # NCCL beside / alone
                    idle_waiting_for=[dict(kernel=k[:120], idle_ms=round(ms, 3), gaps=n) for k, ms, n in waited_for[:10]])
            except Exception as error:  # noqa: BLE001 - a failed analysis must not end the measured run
                self.summary["error"] = f"{type(error).__name__}: {error}"
            self._profiler = None


def raw_loop_rate(cfg, batches: list[dict], steps: int, live=None, diagnostics: dict | None = None,
                  profile_to: str | None = None) -> float:
    """Samples/s of a plain PyTorch loop (the recipe's model, optimizer, bf16 autocast, fused LayerNorm as in
    the YAML) over batches already on the GPU: what the training step costs without Composer or data.
    With `live` (a dataloader iterator), each step instead takes its next batch and copies it to the GPU, as Composer
    does: the difference to the cached batches is the cost of feeding the GPU, without Composer.
    `diagnostics` (a dict) receives the loop's host waits and host ms per step, and for the fed loop where
    its host time goes; `profile_to` a torch.profiler summary of 5 more fed steps."""
    from omegaconf import OmegaConf

    from src.builders import build_model, build_optimizer
    from src.fused_layernorm import apply_fused_layernorm

    plain = OmegaConf.to_container(cfg, resolve=True)
    model = build_model(plain["model"], []).to(DEVICE).train()
    if "fused_layernorm" in (plain.get("algorithms") or {}):
        apply_fused_layernorm(model)
    optimizer = build_optimizer(plain["optimizer"], model, [])
    on_gpu = [to_device(b) for b in batches]

    bf16 = plain.get("precision") == "amp_bf16"

    def step(batch):
        with torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=bf16):
            loss = model.loss(model(batch), batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for i in range(10):
        step(on_gpu[i % len(on_gpu)])
    if diagnostics is not None and DEVICE == "cuda":
        diagnostics["raw_loop_host_waits_per_step"] = throughput.count_host_syncs(step, on_gpu[0])
        diagnostics["raw_loop_host_ms_per_step"] = throughput.host_enqueue_ms(step, on_gpu[0])
    synchronize()
    waiting_for_batch = queueing = 0.0
    started = time.perf_counter()
    for i in range(steps):
        if live is not None:
            fetch = time.perf_counter()
            batch = to_device(next(live))
            queue = time.perf_counter()
            waiting_for_batch += queue - fetch
            step(batch)
            queueing += time.perf_counter() - queue
        else:
            step(on_gpu[i % len(on_gpu)])
    synchronize()
    rate = steps * len(batches[0]["input_ids"]) / (time.perf_counter() - started)
    if live is not None and profile_to and DEVICE == "cuda":  # 5 more fed steps under torch.profiler
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(5):
                step(to_device(next(live)))
            synchronize()
        averages = prof.key_averages()
        Path(profile_to).write_text(
            "# 5 steps of the raw loop fed by the live dataloader, by host (self CPU) time\n\n"
            + averages.table(sort_by="self_cpu_time_total", row_limit=40)
            + "\n\n# by GPU time\n\n" + averages.table(sort_by="self_device_time_total", row_limit=25))
    if live is not None and diagnostics is not None:  # where the fed loop's host time goes, per step
        diagnostics["raw_loop_live_ms_getting_batch"] = waiting_for_batch * 1000 / steps
        diagnostics["raw_loop_live_ms_queueing_step"] = queueing * 1000 / steps
    del model, optimizer
    return rate


def without_ascii_path() -> None:
    """The tokenizer as it was before `text_data.AsciiFastPath` (session 15): every text through the whole
    `tokenizers` pipeline, its Rust normalizer included, to measure what the fast path is worth. Takes effect
    for the datasets made after it, in this process and in the loader workers they are handed to."""
    from src import text_data

    text_data.AsciiFastPath.of = classmethod(lambda cls, backend: None)


def speed(args) -> None:
    from composer.utils import dist

    import main as pretraining

    dist.initialize_dist("gpu" if DEVICE == "cuda" else "cpu")
    if args.without_ascii_path:
        without_ascii_path()
    rank0 = dist.get_global_rank() == 0
    out = Path(args.out)
    metrics_file = out.with_suffix(".metrics.jsonl")
    if rank0 and metrics_file.exists():
        metrics_file.unlink()
    cfg = recipe_config(args.model, args.data, args.batch_size, [f"max_duration={args.steps}ba"] + args.override,
                        global_batch=args.global_batch)
    cfg.eval_loader = None  # speed only
    cfg.loggers = {"jsonl": {"path": str(metrics_file)}}
    result: dict[str, Any] = dict(model=args.model, gpus=dist.get_world_size(), batch_per_gpu=args.batch_size,
                                  global_batch=cfg.global_train_batch_size,
                                  steps=args.steps, overrides=args.override, gpu=device_name(),
                                  trainer="composer.Trainer" if args.composer_trainer else "src.trainer.Trainer",
                                  ascii_tokenizer_path=not args.without_ascii_path)
    if not args.composer_only and rank0:
        from src.tokenization import load_tokenizer

        tokenizer = load_tokenizer(cfg.tokenizer_name)
        result["dataloader_samples_per_s"], batches, live = dataloader_rate(cfg, tokenizer, args.batch_size,
                                                                            args.loader_batches)
        result["real_tokens_per_sample"] = statistics.mean(b["attention_mask"].sum().item() / len(b["attention_mask"])
                                                           for b in batches)
        result["raw_loop_samples_per_s"] = raw_loop_rate(cfg, batches, args.raw_steps, diagnostics=result)
        result["raw_loop_live_loader_samples_per_s"] = raw_loop_rate(
            cfg, batches, args.raw_steps, live, diagnostics=result,
            profile_to=str(out.with_suffix(".live_profile.txt")) if args.profile_live else None)
        del live
        print(json.dumps(result), flush=True)
    dist.barrier()

    from src import builders

    if args.composer_trainer:  # the before of src/trainer.py's after
        import composer

        builders.Trainer = lambda *positional, async_loss, **named: composer.Trainer(*positional, **named)
    def attach(name: str, callback: Callback) -> Callback:  # the run's callback list gets this very object
        builders.CALLBACKS[name] = lambda: callback
        cfg.callbacks[name] = {}
        return callback

    counter = attach("host_wait_counter", HostWaitCounter(start=min(30, args.steps // 2), window=5))
    collections = attach("full_collections", FullCollections())
    step_profile = None
    if args.profile_composer:  # the run's last batches, after the SpeedMonitor's second half is mostly logged
        step_profile = attach("composer_step_profile", ComposerStepProfile(start=max(1, args.steps - 7), steps=5))
    started = time.perf_counter()
    pretraining.main(cfg)
    result["composer_wall_s"] = time.perf_counter() - started
    result["composer_host_waits_per_step"] = counter.per_batch
    result["composer_host_waits_where"] = counter.where
    result["gc_full_collections"] = collections.pauses  # [batch, ms] each
    if step_profile is not None:
        result["composer_profile"] = step_profile.summary
        print(json.dumps({"rank": dist.get_global_rank(), "composer_profile": step_profile.summary}), flush=True)
    steady = counter.loader_ms[len(counter.loader_ms) // 2:]
    result["composer_ms_getting_batch"] = statistics.mean(steady) if steady else None
    if rank0:
        logged = [m for m in jsonl_metrics(metrics_file) if "throughput/samples_per_sec" in m.get("metrics", m)]
        rates = [m.get("metrics", m)["throughput/samples_per_sec"] for m in logged]
        steady = rates[len(rates) // 2:]  # the second half: compilation and warm-up are over
        result["speed_monitor_samples_per_s"] = statistics.median(steady) if steady else None
        result["speed_monitor_windows"] = len(steady)
        if result.get("raw_loop_samples_per_s") and steady:
            result["composer_vs_raw"] = result["speed_monitor_samples_per_s"] / result["raw_loop_samples_per_s"]
            result["dataloader_vs_composer"] = result["dataloader_samples_per_s"] / result["speed_monitor_samples_per_s"]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1))
        print(json.dumps(result), flush=True)


# ------------------------------------------------------------------------------------------ time to accuracy
class TrainingTimeBudget(Callback):
    """Stops training once `budget_s` seconds of training (evaluation and the first batch excluded) have
    passed, and records each evaluation's MaskedAccuracy against the training seconds spent so far."""

    def __init__(self, budget_s: float, record: list):
        self.budget_s = budget_s
        self.record = record
        self.spent = 0.0
        self.resumed_at = None

    def fit_start(self, state, logger):
        synchronize()
        self.resumed_at = time.perf_counter()

    def _pause(self):
        synchronize()
        if self.resumed_at is not None:
            self.spent += time.perf_counter() - self.resumed_at
            self.resumed_at = None

    def batch_end(self, state, logger):
        if int(state.timestamp.batch) == 1:  # the clock starts after the first batch: compilation
            synchronize()                    # and kernel autotuning are not training
            self.resumed_at = time.perf_counter()
            return
        if self.spent + time.perf_counter() - self.resumed_at >= self.budget_s:
            self._pause()
            state.stop_training()
            self.resumed_at = time.perf_counter()

    def eval_start(self, state, logger):
        self._pause()

    def eval_end(self, state, logger):
        metrics = {k: v.compute().item() for k, v in state.eval_metrics.get("eval", {}).items()}
        self.record.append(dict(train_s=self.spent, batch=int(state.timestamp.batch),
                                samples=int(state.timestamp.sample), **metrics))
        print(f"[time to accuracy] {self.spent:7.1f} s  batch {int(state.timestamp.batch):6d}  "
              f"MaskedAccuracy {metrics.get('MaskedAccuracy', float('nan')):.4f}", flush=True)
        synchronize()
        self.resumed_at = time.perf_counter()


def accuracy(args) -> None:
    import main as pretraining
    from src import builders

    record: list[dict] = []
    builders.CALLBACKS["training_time_budget"] = lambda budget_s: TrainingTimeBudget(budget_s, record)
    extra = ["max_duration=1000000ba", f"eval_interval={args.eval_every}ba", "eval_subset_num_batches=20",
             f"optimizer.lr={args.lr}", f"callbacks.training_time_budget.budget_s={args.budget_s}"]
    cfg = recipe_config(args.model, args.data, args.batch_size, extra + args.override)
    # A constant rate after warm-up: both models see the same schedule whatever their speed.
    cfg.scheduler = {"name": "constant_with_warmup", "t_warmup": f"{args.warmup}ba"}
    if args.compile:
        cfg.compile_config = {}
    trainer = pretraining.main(cfg, return_trainer=True)
    if not record or record[-1]["batch"] != int(trainer.state.timestamp.batch):
        trainer.eval()  # the budget ended between two evaluations: one more at the last batch
    model_config = trainer.state.model.config.to_dict() if hasattr(trainer.state.model, "config") else None
    result = dict(model=args.model, compile=args.compile, budget_s=args.budget_s, batch_size=args.batch_size,
                  lr=args.lr, overrides=args.override, data=args.data, gpu=device_name(), model_config=model_config,
                  evals=record)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    # The process should end within seconds of this line (the log's step time tells): before src/trainer.py's
    # `stop_workers_at_exit`, torch's exit hooks held it ~80 s on the H200.
    print(f"[time to accuracy] results written {time.time() - PROCESS_START:.0f} s after start", flush=True)


# ---------------------------------------------------------------------------------------------------- report
def time_to_reach(evals: list[dict], target: float) -> float | None:
    """Training seconds at which the accuracy first reached `target` (linear between evaluations)."""
    previous = None
    for e in evals:
        if e["MaskedAccuracy"] >= target:
            if previous is None:
                return e["train_s"]
            fraction = (target - previous["MaskedAccuracy"]) / (e["MaskedAccuracy"] - previous["MaskedAccuracy"])
            return previous["train_s"] + fraction * (e["train_s"] - previous["train_s"])
        previous = e
    return None


def run_label(run: dict) -> str:
    """A time-to-accuracy run's curve label: the model, how it was compiled, the model-config switches set
    on (cuda_graphs, ...: they tell runs of one model apart) and its seed if set."""
    overrides = run.get("overrides", [])
    compiled_encoder = "model.model_config.compile_encoder=true" in overrides
    switched_on = [o.removeprefix("model.model_config.").removesuffix("=true") for o in overrides
                   if o.startswith("model.model_config.") and o.endswith("=true")]
    switches = [s for s in switched_on if s not in ("compile_encoder", "compile_regions")]
    return (f"{run['model']}{' + compile' if run.get('compile') else ''}"
            f"{' + compiled encoder' if compiled_encoder else ''}"
            + "".join(f" + {switch}" for switch in switches)
            + "".join(f", {o}" for o in overrides if o.startswith("seed=")))


def report(args) -> None:
    results = Path(args.results)
    lines = []
    default = args.tta_prefix == "time_to_accuracy_"  # another prefix: only its time-to-accuracy comparison
    speeds = {p.stem: json.loads(p.read_text()) for p in sorted(results.glob("pretraining_speed_*.json"))}
    if speeds and default:
        lines += ["| run | GPUs | dataloader samples/s | raw loop samples/s | Composer (SpeedMonitor) samples/s "
                  "| Composer / raw | dataloader / Composer |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for name, r in speeds.items():
            def fmt(key, spec=",.0f"):
                return format(r[key], spec) if r.get(key) is not None else ""
            lines.append(f"| {name} | {r['gpus']} | {fmt('dataloader_samples_per_s')} | {fmt('raw_loop_samples_per_s')} "
                         f"| {fmt('speed_monitor_samples_per_s')} | {fmt('composer_vs_raw', '.3f')} "
                         f"| {fmt('dataloader_vs_composer', '.2f')} |")
        # A multi-GPU run is compared with the one-GPU run of the same name (..._2gpu_x with ..._1gpu_x).
        for name, r in speeds.items():
            base_name = name.replace(f"_{r['gpus']}gpu", "_1gpu")
            base = speeds.get(base_name)
            if r["gpus"] > 1 and base and base.get("speed_monitor_samples_per_s") and r.get("speed_monitor_samples_per_s"):
                scaling = r["speed_monitor_samples_per_s"] / base["speed_monitor_samples_per_s"]
                settings = f" ({' '.join(r['overrides'])})" if r.get("overrides") else ""
                lines.append(f"\n{name} vs {base_name}: {r['model']}{settings}, {r['gpus']} GPUs give "
                             f"{scaling:.2f}x the samples/s of one ({scaling / r['gpus']:.0%} scaling efficiency).")
    runs = {p.stem: json.loads(p.read_text()) for p in sorted(results.glob(f"{args.tta_prefix}*.json"))}
    if runs:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.5))
        for name, r in runs.items():
            # A session's runs (another prefix): their file names tell them apart, as in the report's table.
            label = run_label(r) if default else name.removeprefix(args.tta_prefix)
            ax.plot([e["train_s"] for e in r["evals"]], [e["MaskedAccuracy"] for e in r["evals"]], marker=".", label=label)
        ax.set_xlabel("training seconds (evaluation excluded)")
        ax.set_ylabel("eval MaskedAccuracy")
        ax.set_title(f"Time to accuracy, BERT-base on the synthetic corpus, {next(iter(runs.values()))['gpu']}")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize="small")
        fig.tight_layout()
        fig.savefig(results / f"{args.tta_prefix.rstrip('_')}.png", dpi=120)
        lines += ["", "| run | training s | batches | final MaskedAccuracy |", "| --- | ---: | ---: | ---: |"]
        for name, r in runs.items():
            last = r["evals"][-1]
            lines.append(f"| {name} | {last['train_s']:.0f} | {last['batch']} | {last['MaskedAccuracy']:.4f} |")
        # Each Mosaic run against the HF run of its seed and data (another seed is another sample).
        def seed(run):
            return next((o for o in run.get("overrides", []) if o.startswith("seed=")), "the recipe's seed")
        for name, mosaic in runs.items():
            hf = next((r for r in runs.values() if r["model"] == "hf_bert" and seed(r) == seed(mosaic)
                       and r.get("data") == mosaic.get("data")), None)
            if mosaic["model"] != "mosaic_bert" or hf is None:
                continue
            target = hf["evals"][-1]["MaskedAccuracy"]
            reached = time_to_reach(mosaic["evals"], target)
            hf_time = hf["evals"][-1]["train_s"]
            lines.append(f"\n{name}: HF BERT's final accuracy ({seed(hf)}) {target:.4f} after {hf_time:.0f} s; "
                         "Mosaic BERT reaches it after "
                         + (f"{reached:.0f} s ({reached / hf_time:.2f} of the time)." if reached is not None
                            else "— not within its budget."))
    text = "\n".join(lines) + "\n"
    (results / ("pretraining.md" if default else f"{args.tta_prefix.rstrip('_')}.md")).write_text(text)
    print(text)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    s = commands.add_parser("speed")
    s.add_argument("--model", choices=RECIPES, default="mosaic_bert")
    s.add_argument("--data", required=True)
    s.add_argument("--batch_size", type=int, default=256, help="per GPU")
    s.add_argument("--steps", type=int, default=200, help="Composer training batches")
    s.add_argument("--global_batch", type=int, default=None,
                   help="Composer's batch over all GPUs (the recipe YAML's is 4096): each GPU accumulates its share in "
                        "microbatches of --batch_size; default one microbatch per GPU")
    s.add_argument("--raw_steps", type=int, default=50)
    s.add_argument("--loader_batches", type=int, default=100)
    s.add_argument("--composer_only", action="store_true", help="skip the dataloader and raw-loop measurements")
    s.add_argument("--composer_trainer", action="store_true",
                   help="Composer's own Trainer instead of src/trainer.py's (its per-batch GPU waits included)")
    s.add_argument("--profile_live", action="store_true",
                   help="also profile 5 steps of the raw loop fed by the live dataloader (OUT.live_profile.txt)")
    s.add_argument("--profile_composer", action="store_true",
                   help="profile 5 of Composer's last batches (GPU time by category, idle stretches): "
                        "`composer_profile` in OUT, each rank's printed")
    s.add_argument("--without_ascii_path", action="store_true",
                   help="tokenize every text with the whole tokenizers pipeline (the loader before session 15's "
                        "ASCII path)")
    s.add_argument("--out", required=True)
    s.add_argument("override", nargs="*", help="key=value overrides of the recipe YAML")
    a = commands.add_parser("accuracy")
    a.add_argument("--model", choices=RECIPES, required=True)
    a.add_argument("--data", required=True)
    a.add_argument("--budget_s", type=float, default=180)
    a.add_argument("--batch_size", type=int, default=256)
    a.add_argument("--lr", type=float, default=2e-4)
    a.add_argument("--warmup", type=int, default=300, help="warm-up batches")
    a.add_argument("--eval_every", type=int, default=200, help="batches")
    a.add_argument("--compile", action="store_true", help="torch.compile through Composer's compile_config")
    a.add_argument("--out", required=True)
    a.add_argument("override", nargs="*")
    r = commands.add_parser("report")
    r.add_argument("--results", default=str(REPO / "benchmarks" / "results"))
    r.add_argument("--tta_prefix", default="time_to_accuracy_",
                   help="the time-to-accuracy JSON files to plot and compare (the plot is PREFIX.png)")
    args = parser.parse_args()
    {"speed": speed, "accuracy": accuracy, "report": report}[args.command](args)


if __name__ == "__main__":
    cli()
