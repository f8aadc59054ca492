"""DecoupledAdamW: Composer's optimizer (the recipes' `decoupled_adamw`), computed by torch's fused AdamW.

Composer's `composer.optim.DecoupledAdamW` updates one parameter at a time in Python and reads each
parameter's step counter back from the GPU (`state_steps[i].item()`): about 140 host waits and 1,100
small kernels per BERT-base step, during which the GPU mostly idles, and after which the host can no longer
queue work ahead of the GPU (so any host-side work, such as feeding the next batch, lands on the step).

The update is the same as torch's AdamW with another weight decay. Composer multiplies each weight by
`1 - (lr / initial_lr) * weight_decay` (decoupled: the decay follows the schedule, not the rate's size);
torch multiplies by `1 - lr * weight_decay`. With torch's weight decay set to `weight_decay / initial_lr`
the two are the same update, bias corrections and order of operations included, so `step` hands torch's
fused kernel (one launch for all parameters, no host wait) that value and restores the decoupled one
after. Parameter groups and state keep Composer's names and meanings (`weight_decay` decoupled,
`initial_lr`, per-parameter `step`, `exp_avg`, `exp_avg_sq`), so checkpoints move between the two, and the
class name (which LRMonitor puts in its metric names, `lr-DecoupledAdamW/group0`) is the same.
`OptimizerMonitor`'s per-parameter metrics come from Composer's class unchanged.
"""
from __future__ import annotations

from typing import Iterable

import torch
from composer.optim import DecoupledAdamW as ComposerDecoupledAdamW


class DecoupledAdamW(torch.optim.AdamW):
    """`composer.optim.DecoupledAdamW`'s update (same defaults) in torch's fused AdamW kernel.

    `fused=False` gives torch's multi-tensor (foreach) implementation instead, same update.
    """

    metric_functions = ComposerDecoupledAdamW.metric_functions
    report_per_parameter_metrics = ComposerDecoupledAdamW.report_per_parameter_metrics
    pre_reduce_metrics = ComposerDecoupledAdamW.pre_reduce_metrics
    dist_reduce_metrics = ComposerDecoupledAdamW.dist_reduce_metrics

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-8,
        weight_decay: float = 1e-5,
        amsgrad: bool = False,
        fused: bool = True,
    ):
        # fused works on CUDA and on the CPU; the parameters are usually still on the CPU here (Composer
        # moves the model to the GPU later, keeping the same Parameter objects).
        super().__init__(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         fused=fused or None, foreach=None if fused else True)
        for group in self.param_groups:
            group.setdefault("initial_lr", group["lr"])

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:  # first, as torch and Composer do: the decay below needs the new gradients
            with torch.enable_grad():
                loss = closure()
        decoupled = [group["weight_decay"] for group in self.param_groups]
        try:
            for group in self.param_groups:
                group["weight_decay"] = self._decay_in_torch_terms(group)
            super().step()
        finally:
            for group, weight_decay in zip(self.param_groups, decoupled):
                group["weight_decay"] = weight_decay
        return loss

    @staticmethod
    def _decay_in_torch_terms(group: dict) -> float:
        """The weight decay that makes torch's `1 - lr * wd` equal Composer's `1 - (lr / initial_lr) * wd`.

        Composer decays by the full weight_decay when initial_lr is 0 (a run configured with lr 0); torch
        cannot express that at lr 0, so that one case is applied here and torch is given 0.
        """
        weight_decay, lr, initial_lr = group["weight_decay"], group["lr"], group.get("initial_lr")
        if weight_decay == 0:
            return 0.0
        if initial_lr:
            return weight_decay / initial_lr
        if lr:
            return weight_decay / lr
        params = [p for p in group["params"] if p.grad is not None]
        if params:
            torch._foreach_mul_(params, 1 - weight_decay)
        return 0.0
