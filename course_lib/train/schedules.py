"""Learning-rate schedules and weight averaging shared by every training recipe in the course.

- :func:`warmup_cosine_schedule`: linear warm-up, then a cosine decay (Loshchilov & Hutter 2017,
  "SGDR", eq. 5, without restarts) to a fraction of the peak rate.
- :class:`EMALoss`: an exponential moving average of the weights, updated once per step; diffusion
  models (Ho et al. 2020, sec. 4) and GAN vocoders are evaluated with such averages.

Notebooks: every notebook that trains a model (through the recipes behind the shipped checkpoints).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from course_lib.train.distributed import unwrap_model


def warmup_cosine_schedule(
    optimizer: torch.optim.Optimizer, steps: int, warmup_steps: int = 0, final_fraction: float = 0.0
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup_steps``, then a cosine decay to ``final_fraction`` of the peak at ``steps``.

    The factor at step s after the warm-up is ``f + (1 - f) · ½ (1 + cos(π · min(1, p)))`` with
    ``p = (s - warmup) / (steps - warmup)``; it stays at ``f`` past ``steps``.
    """

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, steps - warmup_steps))
        return final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class EMALoss:
    """Wrap a ``loss_fn`` so that every call first moves an EMA copy of the model towards its weights.

    The Trainer calls ``loss_fn`` once per step, before the optimizer step, so the copy sees the
    weights after every previous step: ``ema ← d · ema + (1 - d) · θ`` with ``d = min(decay, (1 + n) / (10 + n))``
    (a warm-up, so the average is not dominated by the random initial weights). Buffers (e.g. EMA
    codebooks, batch-norm statistics) are copied, not averaged. Call :meth:`update` once more after
    training to include the last step.
    """

    def __init__(self, loss_fn: Callable[[nn.Module, Any], Tensor | Mapping[str, Tensor]], decay: float) -> None:
        self.loss_fn, self.decay, self.updates = loss_fn, decay, 0
        self.ema: nn.Module | None = None

    def __call__(self, model: nn.Module, batch: Any) -> Tensor | Mapping[str, Tensor]:
        self.update(model)
        return self.loss_fn(model, batch)

    @torch.no_grad()
    def update(self, model: nn.Module) -> nn.Module:
        """Move the average one step towards ``model`` (the first call copies it) and return the average."""
        model = unwrap_model(model)  # average the plain module, not a DDP or compiled wrapper
        if self.ema is None:
            self.ema = copy.deepcopy(model).requires_grad_(False).eval()
            return self.ema
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for averaged, current in zip(self.ema.parameters(), model.parameters(), strict=True):
            averaged.lerp_(current, 1 - decay)
        for averaged, current in zip(self.ema.buffers(), model.buffers(), strict=True):
            averaged.copy_(current)
        return self.ema
