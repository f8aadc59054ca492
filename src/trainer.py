"""Composer's Trainer, without the waits for the GPU in every batch of its training loop.

Composer 0.32.1 (its last release) reads numbers back from the GPU seven times per batch: whether any
rank has run out of data, the batch size for gradient accumulation, the loss inside the optimizer's
closure, the loss again for logging, and the samples, tokens and time of the batch (all-reduced in GPU
tensors so the ranks agree). Each read waits until the GPU has run everything queued so far, and the GPU
then idles while the host runs Composer's Python up to the next batch's first kernel: on one H200 that
made Composer train Mosaic BERT at 0.85x the rate of a plain loop (docs/performance.md,
`composer_host_waits_where` in benchmarks/results/pretraining_speed_session8_default.json).

This subclass keeps Composer's loop (events, callbacks, evaluation, checkpoints) and removes the waits:

- the numbers the ranks agree on (has any rank run out of data, the batch size, samples, tokens, time)
  are Python numbers, reduced on the CPU through a gloo process group (`host_group`); with one process
  there is nothing to agree on;
- the optimizer steps without a closure (the closure path reads the loss with `.item()` between the
  backward pass and the update);
- with `async_loss` (on by default when training on a GPU) a batch's loss is copied to the host without
  waiting and read once the next batch has been queued: it is logged, put in `state.total_loss_dict` and
  checked by the non-finite-loss guard one batch late (at the step after its own, where Composer also
  logs the batch's `BATCH_END` metrics), and read at once, waiting, before a checkpoint is written and
  at the end of training, so no checkpoint is ever written from a batch whose loss went unchecked.

It also lets a DataLoader's persistent workers leave at once when the program exits
(`stop_workers_at_exit`), and, with `ddp_gradient_as_bucket_view`, builds the DistributedDataParallel
wrapper with each gradient a view into its all-reduce bucket (Composer makes the wrapper itself, with no
way to pass DDP's options). When a batch is trained in several microbatches, it copies any gradient that
is still a CUDA graph's output before the next microbatch (`own_gradients`), so that accumulating into it
works with `cuda_graphs`.

With `async_loss` no wait is left in a batch: the read of batch N's loss, after batch N+1 has been queued,
keeps the host at most one batch ahead of the GPU, and the GPU always has work queued. Without it the
loss is read at the end of its own batch, as in Composer. `device_train_microbatch_size: auto` keeps
Composer's agreement between ranks on out-of-memory errors, three GPU reads per batch: a fixed
microbatch size has none.

The overridden methods are private to Composer; requirements-nodeps.txt pins composer==0.32.1, and
tests/test_trainer.py fails if their signatures change.
"""
from __future__ import annotations

import atexit
import contextlib
import datetime
import itertools
import weakref
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import torch
import torch.distributed as torch_dist
from composer import Trainer as ComposerTrainer
from composer.callbacks import CheckpointSaver
from composer.core import Callback, Event, State
from composer.devices import DeviceGPU
from composer.loggers import Logger
from composer.trainer.trainer import TrainerMode
from composer.utils import dist
from torch.nn.parallel import DistributedDataParallel

_host_group: Optional[Any] = None


def host_group():
    """A process group whose collectives run on the CPU (gloo), so ranks agree on host-side numbers
    without waiting for their GPUs; the default group when that is gloo already. Every rank must make
    its first call at the same point (Trainer.__init__ does)."""
    global _host_group
    if torch_dist.get_backend() == "gloo":
        return None
    if _host_group is None:
        _host_group = torch_dist.new_group(backend="gloo")
    return _host_group


def host_all_reduce(values: list[float], op: str = "sum") -> list[float]:
    """`values` reduced over the ranks on the CPU: a wait for the other ranks' hosts, never for a GPU."""
    if dist.get_world_size() == 1:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64)
    torch_dist.all_reduce(tensor, op=getattr(torch_dist.ReduceOp, op.upper()), group=host_group())
    return tensor.tolist()


class BatchLosses(dict):
    """`state.total_loss_dict` as this trainer sets it: loss name -> float for one batch, averaged over the
    ranks, and which batch that is (`batch`, counted from 1 as `state.timestamp.batch` after it) with the
    sample ids it held on this rank (for the non-finite-loss guard's message)."""

    def __init__(self, values: dict[str, float], batch: int, sample_ids: Optional[torch.Tensor]):
        super().__init__(values)
        self.batch = batch
        self.sample_ids = sample_ids


class LossesInFlight:
    """A batch's losses on their way to the host: averaged over the ranks and copied, neither waited for."""

    def __init__(self, losses: dict[str, torch.Tensor], batch: int, sample_ids: Optional[torch.Tensor]):
        self.names = list(losses)
        self.batch, self.sample_ids = batch, sample_ids
        stacked = torch.cat([losses[name].detach().float().reshape(1) for name in self.names])
        if dist.get_world_size() > 1:
            dist.all_reduce(stacked)  # queued on the GPU like the rest of the step
            stacked /= dist.get_world_size()
        self.values = stacked.to("cpu", non_blocking=True)  # into pinned memory, when on a GPU
        self.copied = None
        if stacked.is_cuda:
            self.copied = torch.cuda.Event()
            self.copied.record()

    def read(self) -> BatchLosses:
        if self.copied is not None:
            self.copied.synchronize()
        return BatchLosses(dict(zip(self.names, self.values.tolist())), self.batch, self.sample_ids)


class LossReader(Callback):
    """The trainer's handle for callbacks: `read_now()` reads the newest batch's losses (PreemptionCheckpoint
    calls it before its own save). First in the callback list, so at `FIT_END` the last batch's losses are
    read and logged before any other callback or logger sees the end, and at `FIT_START` every callback
    finds `state.total_loss_dict` saying that no batch of this fit has been read yet."""

    def __init__(self, trainer: "Trainer"):
        self.read_now = trainer.read_losses_in_flight

    def fit_start(self, state: State, logger: Logger) -> None:
        state.total_loss_dict = BatchLosses({}, int(state.timestamp.batch), None)  # none read yet

    def fit_end(self, state: State, logger: Logger) -> None:
        self.read_now()


_loaders_stopped_at_exit: "weakref.WeakSet[torch.utils.data.DataLoader]" = weakref.WeakSet()


def stop_workers_at_exit(loader: Any) -> None:
    """Shut `loader`'s persistent worker processes down, properly, when the program exits.

    torch before 2.14 registers, for a DataLoader with both `persistent_workers` and `pin_memory` (ours on
    a GPU), an exit hook per worker that waits 5 s for the worker to finish without ever telling it to,
    then kills it: with 8 workers per loader, a training or evaluation loader each, a run sat ~80 s after
    its last line (H200, torch 2.11, sessions 11-13). The iterator's own shutdown tells the workers to stop
    and they leave within milliseconds; this hook, registered after torch's, runs before them (atexit runs
    last-registered first), so theirs find the workers gone."""
    if not isinstance(loader, torch.utils.data.DataLoader) or not loader.persistent_workers:
        return
    if loader in _loaders_stopped_at_exit:
        return
    _loaders_stopped_at_exit.add(loader)
    atexit.register(_shut_down_workers, weakref.ref(loader))


def _shut_down_workers(loader_ref: "weakref.ref[torch.utils.data.DataLoader]") -> None:
    loader = loader_ref()
    iterator = getattr(loader, "_iterator", None)
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):  # the multiprocessing iterator
        iterator._shutdown_workers()


def own_gradients(model: torch.nn.Module, owned: set[int]) -> None:
    """Give every parameter's gradient storage of its own before the batch's next microbatch.

    When a parameter has no gradient yet, autograd hands it the very tensor the backward returned; with the
    compiled encoder replaying CUDA graphs (`cuda_graphs`) that tensor lives in the graphs' memory pool, and
    the next microbatch's replay overwrites it before its gradient is added in: PyTorch then stops with
    "accessing tensor output of CUDAGraphs that has been overwritten by a subsequent run" (pytorch/pytorch
    #169545; the recipe's batch of 4096 in microbatches of 128 hit it on the second microbatch). Each such
    gradient is copied once per batch, which later microbatches add into; `owned` holds the copies'
    addresses. A gradient that is a view (DistributedDataParallel's buckets) is its owner's already."""
    for parameter in model.parameters():
        grad = parameter.grad
        if grad is None or grad._base is not None or grad.data_ptr() in owned:
            continue
        parameter.grad = grad.clone()
        owned.add(parameter.grad.data_ptr())


@contextlib.contextmanager
def ddp_gradients_in_buckets(enabled: bool):
    """While Composer's Trainer is made: its DistributedDataParallel wrapper (several ranks) with
    `gradient_as_bucket_view`, so that the backward writes each gradient into the bucket the all-reduce
    sends, instead of DDP copying it there and back every step (and keeping a second copy of all
    gradients). Composer's `prepare_ddp_module`, otherwise unchanged."""
    if not enabled:
        yield
        return
    import composer.trainer.trainer as composer_trainer

    def prepare_ddp_module(module: torch.nn.Module, find_unused_parameters: bool) -> torch.nn.Module:
        if not any(p.requires_grad for p in module.parameters()):
            return module
        return DistributedDataParallel(module, find_unused_parameters=find_unused_parameters,
                                       gradient_as_bucket_view=True)

    original = composer_trainer.prepare_ddp_module
    composer_trainer.prepare_ddp_module = prepare_ddp_module
    try:
        yield
    finally:
        composer_trainer.prepare_ddp_module = original


class Trainer(ComposerTrainer):
    """`composer.Trainer` with the same arguments, plus `async_loss`: True, False or "auto" (on GPUs), and
    `ddp_gradient_as_bucket_view` (see `ddp_gradients_in_buckets`)."""

    def __init__(self, *args: Any, async_loss: Union[bool, str] = "auto", ddp_gradient_as_bucket_view: bool = False,
                 **kwargs: Any):
        if async_loss not in (True, False, "auto"):
            raise ValueError(f"async_loss must be true, false or auto, got {async_loss!r}")
        with ddp_gradients_in_buckets(ddp_gradient_as_bucket_view):
            super().__init__(*args, **kwargs)
        self.async_loss = isinstance(self.state.device, DeviceGPU) if async_loss == "auto" else async_loss
        self._losses_in_flight: Optional[LossesInFlight] = None
        if dist.get_world_size() > 1:
            host_group()  # made here, where every rank is
        if self.async_loss:
            self.state.callbacks.insert(0, LossReader(self))
            for saver in self.state.callbacks:
                if isinstance(saver, CheckpointSaver):
                    saver.save_interval = self._reading_losses_when_due(saver.save_interval)

    # -- the loss, read one batch late -------------------------------------------------------------------
    def _train_batch(self, use_grad_scaling: bool):
        losses = super()._train_batch(use_grad_scaling)
        if not self.async_loss or losses is None:  # None: fp16 loss scaling skipped the step
            return losses
        batch = self.state.batch
        sample_ids = batch.get("sample_id") if isinstance(batch, Mapping) else None
        previous = self._losses_in_flight
        self._losses_in_flight = LossesInFlight(losses, int(self.state.timestamp.batch) + 1, sample_ids)
        if previous is not None:  # its batch finished on the GPU before this one started: no wait
            self._publish(previous.read())
        return None  # what Composer would read (and wait for) now, it finds already read

    def read_losses_in_flight(self, check: bool = False) -> None:
        """Read the newest batch's losses now (a wait for the GPU); with `check`, run the non-finite-loss
        guards on them at once."""
        if self._losses_in_flight is None:
            return
        losses, self._losses_in_flight = self._losses_in_flight.read(), None
        self._publish(losses)
        if check:
            from src.callbacks import NonFiniteLossGuard

            for guard in self.state.callbacks:
                if isinstance(guard, NonFiniteLossGuard):
                    guard.check_losses(self.state)

    def _publish(self, losses: BatchLosses) -> None:
        self.state.total_loss_dict = losses
        self.logger.log_metrics(dict(losses))

    def _reading_losses_when_due(self, save_interval: Callable[[State, Event], bool]):
        def due(state: State, event: Event) -> bool:
            if not save_interval(state, event):
                return False
            self.read_losses_in_flight(check=True)  # raises, before the save, on a non-finite loss
            return True

        return due

    # -- the numbers the ranks agree on, on the CPU ------------------------------------------------------
    def _use_closures(self) -> bool:
        return False  # no optimizer here needs one; Composer's closure reads the loss with .item()

    def _train_microbatches(self, microbatches: Sequence[Any], total_loss_dict: dict[str, torch.Tensor],
                            ddp_sync: bool = True) -> torch.Tensor:
        """Composer 0.32.1's, line for line, except that the batch size the gradients are divided by is
        summed over the ranks on the CPU (Composer's `.item()` of it was the last wait of the batch), and
        that gradients being accumulated get storage of their own (`own_gradients`)."""
        if ddp_sync or not isinstance(self.state.model, DistributedDataParallel):
            context = contextlib.nullcontext
        elif self.state.auto_microbatching and not self.first_train_batch_complete:
            context = contextlib.nullcontext  # Composer: no deadlock when only some ranks run out of memory
        else:
            context = self.state.model.no_sync
        assert self._train_data_spec is not None and self.state.optimizers is not None
        with context():
            self.engine.run_event(Event.BEFORE_TRAIN_BATCH)
            use_grad_scaling = self._use_grad_scaling(self.state.precision, self.state.scaler)
            for optimizer in self.state.optimizers:
                try:
                    optimizer.zero_grad(set_to_none=True)
                except TypeError:
                    optimizer.zero_grad()
            if self.accumulate_train_batch_on_tokens:
                size = sum(self._train_data_spec.get_num_tokens_in_batch(b, token_type="loss_generating")
                           for b in microbatches)
            else:
                size = sum(self._train_data_spec.get_num_samples_in_batch(b) for b in microbatches)
            current_batch_size = host_all_reduce([size])[0] / dist.get_world_size()

            current_batch = self.state.batch  # the microbatches overwrite it
            owned: set[int] = set()
            for index, self.state.batch in enumerate(microbatches):
                self.state.batch = self.state.device.batch_to_device(self.state.batch)
                self.state.batch = self._train_data_spec.microbatch_transforms(self.state.batch)
                is_final_microbatch = index + 1 == len(microbatches)
                losses = self._train_microbatch(use_grad_scaling, current_batch_size, is_final_microbatch)
                if not is_final_microbatch:  # gradients accumulate: none may stay a CUDA graph's output
                    own_gradients(self.state.model, owned)
                for name, loss in losses.items():
                    key = f"loss/train/{name}"
                    if key not in total_loss_dict:
                        total_loss_dict[key] = self.state.device.tensor_to_device(torch.zeros(size=(1,)))
                    total_loss_dict[key] += loss
            self.state.batch = current_batch

            if use_grad_scaling:  # unscaled before AFTER_TRAIN_BATCH
                for optimizer in self.state.optimizers:
                    self.state.scaler.unscale_(optimizer)
            self.engine.run_event(Event.AFTER_TRAIN_BATCH)
            return total_loss_dict["loss/train/total"]

    def _iter_dataloader(self, trainer_mode: TrainerMode):
        """Composer's, with "has any rank run out of data" agreed on the CPU."""
        assert self.state.dataloader is not None, "the dataloader should be set before calling this method"
        if self.state.dataloader_len is None:
            batches = iter(self.state.dataloader)
        else:
            batches = itertools.islice(self.state.dataloader, int(self.state.dataloader_len))
        stop_workers_at_exit(self.state.dataloader)  # its iterator, and workers, exist now
        while True:
            finished = 0
            try:
                if trainer_mode == TrainerMode.TRAIN:
                    self.engine.run_event(Event.BEFORE_DATALOADER)
                batch = next(batches)
            except StopIteration:
                if trainer_mode == TrainerMode.TRAIN:  # closes the dataloader marker, as Composer does
                    self.engine.run_marker_only_event(Event.AFTER_DATALOADER)
                batch, finished = None, 1
            if host_all_reduce([finished], op="max")[0]:
                break
            yield batch

    def _accumulate_time_across_ranks(self, num_samples: Union[int, float], num_tokens: int,
                                      batch_time: datetime.timedelta) -> tuple[int, int, datetime.timedelta]:
        """Composer's: samples and tokens summed over the ranks, the batch time of rank 0; on the CPU."""
        if dist.get_world_size() == 1:
            return int(num_samples), int(num_tokens), batch_time
        samples, tokens = host_all_reduce([num_samples, num_tokens])
        if abs(samples - round(samples)) > 1e-4 or abs(tokens - round(tokens)) > 1e-4:
            raise ValueError("The sums of samples and tokens across ranks should each be integers.")
        seconds = torch.tensor([batch_time.total_seconds()], dtype=torch.float64)
        torch_dist.broadcast(seconds, src=0, group=host_group())
        return round(samples), round(tokens), datetime.timedelta(seconds=seconds.item())
