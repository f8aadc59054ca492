"""src/trainer.py: Composer's loop without its per-batch GPU waits, and `async_loss` (the loss read one
batch late). On the CPU there is no GPU to wait for, so these tests check what must hold on any device:
the same losses, logged in order, the guard and the checkpoints as before, and which reads are left."""
import inspect
import json
import math
import sys
import time
from pathlib import Path

import composer
import pytest
import torch
from composer.trainer.trainer import Trainer as ComposerTrainer
from streaming.base.util import clean_stale_shared_memory

from main import main
from src import builders
from src.callbacks import NonFiniteLossError
from src.config import ConfigError, load_config
from src import trainer as trainer_module
from src.trainer import BatchLosses, LossReader, Trainer, own_gradients, stop_workers_at_exit
from tests.conftest import TEST_YAML
from tests.test_reliability import CHECKPOINT, FaultProbe, batch_log, listing, overrides


@pytest.fixture(autouse=True)
def fresh_shared_memory():
    clean_stale_shared_memory()
    yield
    clean_stale_shared_memory()


def test_the_overridden_composer_methods_are_those_of_0_32_1():
    assert composer.__version__ == "0.32.1"
    overridden = ("_train_batch", "_train_microbatches", "_iter_dataloader", "_accumulate_time_across_ranks",
                  "_use_closures")
    signatures = {name: list(inspect.signature(getattr(ComposerTrainer, name)).parameters)
                  for name in overridden}
    assert signatures == {
        "_train_batch": ["self", "use_grad_scaling"], "_iter_dataloader": ["self", "trainer_mode"],
        "_train_microbatches": ["self", "microbatches", "total_loss_dict", "ddp_sync"],
        "_accumulate_time_across_ranks": ["self", "num_samples", "num_tokens", "batch_time"],
        "_use_closures": ["self"]}
    # ddp_gradient_as_bucket_view swaps the function Composer wraps the model with, by its name there
    assert "self.state.model = prepare_ddp_module(self.state.model, self._find_unused_parameters)" in \
        inspect.getsource(ComposerTrainer.__init__)
    loop = inspect.getsource(ComposerTrainer._train_loop)
    # _train_batch returning None makes the loop skip its own read of the loss (what async_loss relies on)
    assert "total_loss_dict = self._train_batch(use_grad_scaling)" in loop
    assert "if total_loss_dict is not None:" in loop


def run(cfg_overrides, folder: Path, *extra: str) -> dict:
    metrics = folder / "metrics.jsonl"
    cfg = load_config(str(TEST_YAML), cfg_overrides(folder, f"loggers.jsonl.path={metrics}", *extra))
    trainer = main(cfg, return_trainer=True)
    lines = [line for line in map(json.loads, metrics.read_text().splitlines()) if "step" in line]
    return {"trainer": trainer, "lines": lines, "batch_log": batch_log(folder),
            "losses": [(line["step"], line["loss/train/total"])
                       for line in lines if "loss/train/total" in line]}


@pytest.fixture(scope="module")
def runs(synthetic_data, tmp_path_factory):
    """The same 8 batches with the loss read at once and one batch late."""
    def cfg_overrides(folder, *extra):
        return overrides(synthetic_data, folder, *extra)
    root = tmp_path_factory.mktemp("async_loss")
    return {setting: run(cfg_overrides, root / setting, f"async_loss={setting}")
            for setting in ("false", "true")}


def test_async_loss_logs_the_same_losses_one_step_later(runs):
    at_once, late = runs["false"]["losses"], runs["true"]["losses"]
    assert [step for step, _ in at_once] == list(range(8))
    assert [step for step, _ in late] == list(range(1, 9))  # the last one read at the end of training
    assert [loss for _, loss in late] == [loss for _, loss in at_once]
    assert runs["true"]["trainer"].async_loss and not runs["false"]["trainer"].async_loss
    losses = runs["true"]["trainer"].state.total_loss_dict
    assert isinstance(losses, BatchLosses) and losses.batch == 8
    assert losses["loss/train/total"] == at_once[-1][1]


def test_async_loss_logs_steps_in_order(runs):
    """W&B drops metrics logged at a step below one it has seen; the late losses never go back."""
    steps = [line["step"] for line in runs["true"]["lines"]]
    assert steps == sorted(steps)


def test_batch_log_holds_each_batch_with_its_own_loss(runs):
    at_once, late = runs["false"]["batch_log"], runs["true"]["batch_log"]
    assert [record["batch"] for record in late] == list(range(1, 9))
    assert late == at_once
    assert all(record["loss"] is not None for record in late)


def test_async_loss_is_off_on_the_cpu_by_default(pretrain_cfg):
    trainer = main(pretrain_cfg(), return_trainer=True, do_train=False)
    assert isinstance(trainer, Trainer) and trainer.async_loss is False
    assert not any(isinstance(cb, LossReader) for cb in trainer.state.callbacks)
    trainer.close()


def test_a_bad_async_loss_value_is_explained(pretrain_cfg):
    with pytest.raises(ConfigError, match=r"async_loss must be true, false or auto, got 'sometimes'"):
        main(pretrain_cfg("async_loss=sometimes"), do_train=False)


@pytest.mark.parametrize("nan_at", [3, 4])
def test_a_late_nan_loss_still_stops_before_its_checkpoint(synthetic_data, tmp_path, nan_at):
    """Batch 3's NaN is read while batch 4 runs and stops the run at batch 4's end, before its checkpoint;
    batch 4's NaN is read before the checkpoint due at batch 4 is written."""
    folder = tmp_path / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(builders.CALLBACKS, "fault_probe", FaultProbe)
        cfg = load_config(str(TEST_YAML), overrides(synthetic_data, folder, "async_loss=true",
                                                    f"callbacks.fault_probe.nan_at={nan_at}"))
        trainer = main(cfg, return_trainer=True, do_train=False)
        with pytest.raises(NonFiniteLossError) as raised:
            trainer.fit()
    error = str(raised.value)
    assert error.startswith(f"the training loss of batch {nan_at} (epoch 0) is not finite "
                            "(loss/train/total nan); training stopped before any checkpoint was written "
                            "from it")
    assert f"the last checkpoint, {folder / CHECKPOINT.format(2)}, is from before it" in error
    records = {record["batch"]: record for record in batch_log(folder)}
    assert f"Sample ids in this batch (on this rank): {records[nan_at - 1]['sample_ids']}" not in error
    if nan_at == 3:  # batch 3's line is written when its loss is read, at batch 4's end
        assert math.isnan(records[nan_at]["loss"])
        assert f"Sample ids in this batch (on this rank): {records[nan_at]['sample_ids']}" in error
    assert listing(folder) == {CHECKPOINT.format(2): "", "latest-rank0.pt": CHECKPOINT.format(2)}


def test_composers_loop_reads_no_tensor_with_async_loss(pretrain_cfg, monkeypatch):
    """Each `.item()` / `.cpu()` in Composer's trainer.py is a wait for the GPU on a GPU (seven per batch
    in Composer 0.32.1); with async_loss none is left in the loop."""
    trainer_file = inspect.getsourcefile(ComposerTrainer)
    reads: list[int] = []
    for method in ("item", "cpu"):
        original = getattr(torch.Tensor, method)

        def counting(self, *args, _original=original, **kwargs):
            caller = sys._getframe(1)
            if caller.f_code.co_filename == trainer_file:
                reads.append(caller.f_lineno)
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(torch.Tensor, method, counting)
    cfg = pretrain_cfg("async_loss=true", "train_metrics=false", "eval_loader=null", "eval_interval=1",
                       "save_folder=null", "max_duration=6ba")
    trainer = main(cfg, return_trainer=True, do_train=False)
    reads.clear()  # the Trainer's construction reads the seed once
    trainer.fit()
    assert int(trainer.state.timestamp.batch) == 6
    assert reads == []
    assert trainer.state.total_loss_dict.batch == 6


class TimesW(torch.autograd.Function):
    """x * w, whose backward returns w's gradient as a CUDA graph replay returns its outputs: a fresh tensor
    over the same memory every time (which autograd then keeps as w.grad rather than copying it)."""
    memory = torch.zeros(3)

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x)
        return x * w

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        TimesW.memory.copy_((grad_out * x).sum(0))
        return None, torch.empty(0).set_(TimesW.memory.untyped_storage(), 0, (3,), (1,))


def test_accumulated_gradients_survive_a_backward_that_reuses_its_output_memory():
    model = torch.nn.Module()
    model.w = torch.nn.Parameter(torch.ones(3))
    microbatches = [torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[10.0, 20.0, 30.0]])]

    def accumulated(own: bool) -> torch.Tensor:
        model.w.grad, owned = None, set()
        for index, x in enumerate(microbatches):
            TimesW.apply(x, model.w).sum().backward()
            if own and index + 1 < len(microbatches):
                own_gradients(model, owned)
        return model.w.grad.clone()

    # pytorch/pytorch#169545 in small: the second backward overwrote the first's gradient before adding to it
    assert torch.equal(accumulated(own=False), torch.tensor([20.0, 40.0, 60.0]))
    assert torch.equal(accumulated(own=True), torch.tensor([11.0, 22.0, 33.0]))


def test_own_gradients_copies_each_gradient_once_and_leaves_views_alone():
    model = torch.nn.Linear(2, 2)
    bucket = torch.arange(6.0)
    model.weight.grad = bucket[:4].view(2, 2)  # as DistributedDataParallel's gradient_as_bucket_view has it
    model.bias.grad = torch.tensor([7.0, 8.0])
    bias_grad, owned = model.bias.grad, set()
    own_gradients(model, owned)
    assert model.weight.grad._base is bucket
    assert torch.equal(model.bias.grad, bias_grad) and model.bias.grad.data_ptr() != bias_grad.data_ptr()
    copy = model.bias.grad
    own_gradients(model, owned)  # the batch's next microbatch: already its own
    assert model.bias.grad is copy


def test_a_batch_in_microbatches_owns_its_gradients_before_each_next_one(pretrain_cfg, monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr(trainer_module, "own_gradients", lambda model, owned: calls.append(len(owned)))
    cfg = pretrain_cfg("device_train_microbatch_size=4", "eval_loader=null", "eval_interval=1",
                       "save_folder=null", "max_duration=2ba")
    trainer = main(cfg, return_trainer=True)
    assert int(trainer.state.timestamp.batch) == 2
    assert len(calls) == 2 * 3  # 16 samples in microbatches of 4: before the 2nd, 3rd and 4th of each batch
    trainer.close()


def test_persistent_workers_are_told_to_stop_at_exit(monkeypatch):
    """torch < 2.14 waits 5 s per persistent worker at exit (with pin_memory) before killing it; the hook
    shuts the iterator down first, so its workers are gone at once."""
    hooks = []
    monkeypatch.setattr(trainer_module.atexit, "register", lambda function, *args: hooks.append((function, args)))
    loader = torch.utils.data.DataLoader(range(64), batch_size=4, num_workers=2, persistent_workers=True)
    batches = iter(loader)
    assert next(batches).tolist() == [0, 1, 2, 3]  # mid-epoch, as a run stopped by its duration leaves it
    workers = list(loader._iterator._workers)
    assert all(worker.is_alive() for worker in workers)
    stop_workers_at_exit(loader)
    stop_workers_at_exit(loader)  # the next epoch's iter() of the same loader: still one hook
    stop_workers_at_exit(torch.utils.data.DataLoader(range(8)))  # no workers: nothing to stop
    ours = [(function, args) for function, args in hooks if function is trainer_module._shut_down_workers]
    assert len(ours) == 1
    started = time.perf_counter()
    function, args = ours[0]
    function(*args)
    assert not any(worker.is_alive() for worker in workers)
    assert time.perf_counter() - started < 4  # torch's own hook: 5 s per worker


def test_the_trainer_registers_its_loaders_for_the_exit(pretrain_cfg):
    cfg = pretrain_cfg("max_duration=2ba", "eval_interval=2ba", "save_folder=null", "train_loader.num_workers=1",
                       "eval_loader.num_workers=1")
    trainer = main(cfg, return_trainer=True)
    loaders = [trainer.state.train_dataloader] + [e.dataloader.dataloader for e in trainer.state.evaluators]
    assert len(loaders) == 2 and all(loader.persistent_workers for loader in loaders)
    assert all(loader in trainer_module._loaders_stopped_at_exit for loader in loaders)
    for loader in loaders:  # this test's workers, stopped now rather than at the end of the test session
        trainer_module._shut_down_workers(lambda loader=loader: loader)
