"""Learning-rate schedules and weight averaging shared by every training recipe in the course.

- :func:`warmup_cosine_schedule`: linear warm-up, then a cosine decay (Loshchilov & Hutter 2017,
  "SGDR", eq. 5, without restarts) to a fraction of the peak rate.
- :func:`fit_with_warmup_cosine`: the recipe of the course's small models (VQ-VAEs, the joint
  embedding, the attribute classifier): AdamW, a 5% warm-up, a cosine decay to zero.
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


def fit_with_warmup_cosine(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, Any], Tensor | Mapping[str, Tensor]],
    data: Any,
    steps: int,
    lr: float,
    seed: int = 0,
    device: str | torch.device | None = None,
    warmup_steps: int | None = None,
    log_every: int = 50,
    **train_options: Any,
) -> list[dict]:
    """Train ``model`` with AdamW (weight decay 0.01) at ``lr``, a linear warm-up over ``warmup_steps`` (default
    5% of the steps) and a cosine decay to zero (:func:`warmup_cosine_schedule`), through :class:`course_lib.train.Trainer`.

    ``train_options`` are :class:`course_lib.train.TrainConfig` fields (``progress``; the checkpoint and
    resume options of :meth:`course_lib.train.command.Run.train_options`). Returns the history.

    Notebooks: notebooks/02_vq_vae.ipynb, 03_hierarchical_vqvae.ipynb, 06_text_to_music.ipynb (their
    shipped models' recipes).
    """
    from course_lib.train.loop import TrainConfig, Trainer

    config = TrainConfig(steps=steps, lr=lr, log_every=log_every, seed=seed, **train_options)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=config.weight_decay)
    scheduler = warmup_cosine_schedule(
        optimizer, steps, warmup_steps=steps // 20 if warmup_steps is None else warmup_steps
    )
    trainer = Trainer(model, loss_fn, config, optimizer=optimizer, scheduler=scheduler, device=device)
    return list(trainer.fit(data))


class WeightAverage:
    """An exponential moving average of a model's weights, kept as a copy of the model.

    The first :meth:`update` copies the model; each later one moves the copy's parameters towards the
    model's, ``θ̄ ← d · θ̄ + (1 - d) · θ``, with ``d = decay(n)`` for the n-th such update, and copies its
    buffers (EMA codebooks, batch-norm statistics are states, not weights to average). The average is
    checkpointed with :meth:`state_dict`; after :meth:`load_state_dict` the copy is rebuilt from the
    model at the next update, so a resumed run averages exactly what an uninterrupted one does.
    """

    def __init__(self) -> None:
        self.module: nn.Module | None = None
        self.updates = 0
        self._saved: dict[str, Tensor] | None = None  # from load_state_dict, applied at the next update

    @torch.no_grad()
    def update(self, model: nn.Module, decay: Callable[[int], float]) -> nn.Module:
        """One step of the average towards ``model`` (the first call copies it); returns the average."""
        if self.module is None:
            self.module = copy.deepcopy(model).requires_grad_(False)
            if self._saved is None:
                return self.module
            self.module.load_state_dict(self._saved)  # resumed: the average as it was checkpointed, then this step
            self._saved = None
        self.updates += 1
        weight = 1 - decay(self.updates)
        for averaged, current in zip(self.module.parameters(), model.parameters(), strict=True):
            averaged.lerp_(current, weight)
        for averaged, current in zip(self.module.buffers(), model.buffers(), strict=True):
            averaged.copy_(current)
        return self.module

    def state_dict(self) -> dict[str, Any]:
        """The averaged weights (None before the first update) and the number of updates."""
        return {
            "updates": self.updates,
            "weights": self.module.state_dict() if self.module is not None else self._saved,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module, self.updates, self._saved = None, state["updates"], state["weights"]


class EMALoss:
    """Wrap a ``loss_fn`` so that every call first moves an EMA copy of the model towards its weights.

    The Trainer calls ``loss_fn`` once per step, before the optimizer step, so the copy sees the
    weights after every previous step: ``ema ← d · ema + (1 - d) · θ`` with ``d = min(decay, (1 + n) / (10 + n))``
    (a warm-up, so the average is not dominated by the random initial weights). Buffers (e.g. EMA
    codebooks, batch-norm statistics) are copied, not averaged. Call :meth:`update` once more after
    training to include the last step. The average (a :class:`WeightAverage`) and the wrapped loss's
    own state are part of a training checkpoint (:meth:`state_dict`).
    """

    def __init__(self, loss_fn: Callable[[nn.Module, Any], Tensor | Mapping[str, Tensor]], decay: float) -> None:
        self.loss_fn, self.decay = loss_fn, decay
        self.average = WeightAverage()

    @property
    def ema(self) -> nn.Module | None:
        """The averaged model (None before the first call)."""
        return self.average.module

    def __call__(self, model: nn.Module, batch: Any) -> Tensor | Mapping[str, Tensor]:
        self.update(model)
        return self.loss_fn(model, batch)

    def update(self, model: nn.Module) -> nn.Module:
        """Move the average one step towards ``model`` (the first call copies it) and return the average."""
        model = unwrap_model(model)  # average the plain module, not a DDP or compiled wrapper
        return self.average.update(model, lambda n: min(self.decay, (1 + n) / (10 + n))).eval()

    def state_dict(self) -> dict[str, Any]:
        """The average, and the wrapped loss's own state (if it has one)."""
        inner = self.loss_fn.state_dict() if hasattr(self.loss_fn, "state_dict") else None
        return {"average": self.average.state_dict(), "loss": inner}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.average.load_state_dict(state["average"])
        if state["loss"] is not None and hasattr(self.loss_fn, "load_state_dict"):
            self.loss_fn.load_state_dict(state["loss"])
