"""src/optimizers.py: Composer's DecoupledAdamW update, computed by torch's fused (or foreach) AdamW."""
import copy

import pytest
import torch
from composer.optim import DecoupledAdamW as ComposerDecoupledAdamW
from composer.optim import LinearWithWarmupScheduler
from composer.optim.scheduler import compile_composer_scheduler

from src.optimizers import DecoupledAdamW

HYPERPARAMETERS = dict(lr=5e-3, betas=(0.9, 0.98), eps=1e-6, weight_decay=1e-2)


def model_pair():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.LayerNorm(16), torch.nn.Linear(16, 3))
    return model, copy.deepcopy(model)


def train(model, optimizer, steps, schedule=None):
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(32, 8, generator=generator)
        loss = model(x).pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if schedule is not None:
            schedule.step()


def scheduled(optimizer):
    """Composer's warm-up + linear decay, as the recipes use it, driven per batch."""
    from composer.core import State

    state = State(model=torch.nn.Linear(1, 1), rank_zero_seed=0, run_name="t", device="cpu",
                  max_duration="20ba", optimizers=optimizer)
    schedule = compile_composer_scheduler(LinearWithWarmupScheduler(t_warmup="5ba", alpha_f=0.1), state)

    class PerBatch:
        def step(self):
            state.timestamp = state.timestamp.to_next_batch(samples=32, tokens=0)
            schedule.step()

    return PerBatch()


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("amsgrad", [False, True])
def test_same_weights_as_composers_optimizer(fused, amsgrad):
    ours, theirs = model_pair()
    optimizer = DecoupledAdamW(ours.parameters(), amsgrad=amsgrad, fused=fused, **HYPERPARAMETERS)
    reference = ComposerDecoupledAdamW(theirs.parameters(), amsgrad=amsgrad, **HYPERPARAMETERS)
    train(ours, optimizer, 20, scheduled(optimizer))
    train(theirs, reference, 20, scheduled(reference))
    # The learning rate moved (warm-up, then decay), so the decoupled decay followed lr / initial_lr.
    assert optimizer.param_groups[0]["lr"] == pytest.approx(reference.param_groups[0]["lr"])
    assert optimizer.param_groups[0]["lr"] != HYPERPARAMETERS["lr"]
    for (name, a), b in zip(ours.named_parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    # The group keeps the decoupled weight decay (what checkpoints and OptimizerMonitor read).
    assert optimizer.param_groups[0]["weight_decay"] == HYPERPARAMETERS["weight_decay"]


def test_weight_decay_is_decoupled_from_the_learning_rate():
    """With zero gradients a step only decays: by weight_decay * lr / initial_lr, not by lr * weight_decay."""
    weight = torch.nn.Parameter(torch.ones(4))
    optimizer = DecoupledAdamW([weight], lr=1e-3, weight_decay=0.1)
    optimizer.param_groups[0]["lr"] = 5e-4  # a scheduler halved the rate
    weight.grad = torch.zeros(4)
    optimizer.step()
    torch.testing.assert_close(weight.detach(), torch.full((4,), 1 - 0.1 * 0.5))


def test_checkpoints_move_between_composers_optimizer_and_this_one():
    ours, theirs = model_pair()
    reference = ComposerDecoupledAdamW(theirs.parameters(), **HYPERPARAMETERS)
    train(theirs, reference, 3)
    optimizer = DecoupledAdamW(ours.parameters(), **HYPERPARAMETERS)
    ours.load_state_dict(theirs.state_dict())
    optimizer.load_state_dict(copy.deepcopy(reference.state_dict()))  # a copy, as a checkpoint file gives
    train(ours, optimizer, 3)
    train(theirs, reference, 3)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    back = ComposerDecoupledAdamW(copy.deepcopy(ours).parameters(), **HYPERPARAMETERS)
    back.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    assert back.state_dict()["param_groups"][0]["weight_decay"] == HYPERPARAMETERS["weight_decay"]


def test_optimizer_monitor_metrics():
    ours, _ = model_pair()
    optimizer = DecoupledAdamW(ours.parameters(), **HYPERPARAMETERS)
    train(ours, optimizer, 2)
    ours(torch.randn(4, 8)).sum().backward()  # OptimizerMonitor reads the gradients before they are zeroed
    name, param = next(iter(ours.named_parameters()))
    metrics = optimizer.report_per_parameter_metrics(param, name, {})
    assert set(metrics) == {f"{m}/{name}" for m in DecoupledAdamW.metric_functions}
    assert all(torch.isfinite(v) and v > 0 for v in metrics.values())


def test_recipe_name_builds_it():
    from src.builders import build_optimizer

    unused = []
    optimizer = build_optimizer({"name": "decoupled_adamw", **HYPERPARAMETERS}, torch.nn.Linear(2, 2), unused)
    assert type(optimizer) is DecoupledAdamW and unused == []
    assert optimizer.param_groups[0]["fused"] is True
    composer = build_optimizer({"name": "composer_decoupled_adamw", **HYPERPARAMETERS}, torch.nn.Linear(2, 2), unused)
    assert type(composer) is ComposerDecoupledAdamW


def test_step_with_a_closure_as_composer_calls_it():
    """Composer passes a closure that runs forward + backward (every precision but fp16): the loss comes
    back and the update uses the gradients the closure computed."""
    ours, theirs = model_pair()
    optimizer = DecoupledAdamW(ours.parameters(), **HYPERPARAMETERS)
    reference = ComposerDecoupledAdamW(theirs.parameters(), **HYPERPARAMETERS)
    x = torch.randn(16, 8, generator=torch.Generator().manual_seed(2))
    for model, opt in ((ours, optimizer), (theirs, reference)):
        for _ in range(3):
            def closure(model=model):
                loss = model(x).pow(2).mean()
                loss.backward()
                return loss.item()

            returned = opt.step(closure)
            opt.zero_grad(set_to_none=True)
        assert isinstance(returned, float) and returned > 0
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
