"""The denoising training loss: DDPM's Algorithm 1, with v- and x0-prediction and condition dropout.

Algorithm 1 (Ho et al. 2020) repeats: take data ``x_0``, a timestep ``t ~ Uniform({1, …, T})`` and noise
``ε ~ N(0, I)``, and step down the gradient of::

    ‖ε - ε_θ(√ᾱ_t x_0 + √(1-ᾱ_t) ε, t)‖²

(the "simple" loss, DDPM eq. 14, here averaged over every element). The network can instead predict
``x_0`` or ``v = √ᾱ_t ε - √(1-ᾱ_t) x_0`` (Salimans & Ho 2022); only the regression target changes,
and a sampler told the same ``prediction_type`` converts it back (:mod:`course_lib.diffusion.schedules`).

**Condition dropout** (Ho & Salimans 2022, "Classifier-Free Diffusion Guidance", Algorithm 1): with
probability ``cond_drop_prob`` a sample is shown without its condition, so one network learns both
``ε_θ(x_t, t, c)`` and ``ε_θ(x_t, t, ∅)``, the two terms that guidance mixes at sampling time. The
dropped rows are marked by ``cond_mask`` (False = use the null condition), which the network answers
with a learned "null" embedding (:class:`course_lib.diffusion.unet.UNet`).

Notebooks: notebooks/07_ddpm.ipynb (Algorithm 1), 08_latent_diffusion.ipynb (condition dropout).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from course_lib.diffusion.schedules import NoiseSchedule, check_prediction_type
from course_lib.errors import ConfigError


def split_batch(batch: Any) -> tuple[Tensor, Tensor | None]:
    """``(x0, cond)`` from a batch: a tensor, a ``(x0,)`` or ``(x0, cond)`` tuple/list, or a dict.

    A dict holds ``"x0"`` and optionally ``"cond"``; ``cond`` is None when the batch has none.
    """
    if isinstance(batch, Tensor):
        return batch, None
    if isinstance(batch, Mapping) and "x0" in batch:
        return batch["x0"], batch.get("cond")
    if isinstance(batch, list | tuple) and 1 <= len(batch) <= 2:
        return batch[0], (batch[1] if len(batch) == 2 else None)
    raise ConfigError(
        f"Cannot find the data in a batch of type {type(batch).__name__}: pass a tensor x0, a tuple (x0,) "
        "or (x0, cond), or a dict {'x0': ..., 'cond': ...}."
    )


class DiffusionLoss:
    """Algorithm 1 as a ``loss_fn(model, batch)`` for :class:`course_lib.train.Trainer`.

    The model is called as ``model(x_t, t, cond=cond, cond_mask=keep)`` when the batch has a condition
    (``keep`` is None when ``cond_drop_prob`` is 0), and ``model(x_t, t)`` otherwise.

    Args:
        schedule: the noise schedule (moved to the batch's device on first use).
        prediction_type: what the network predicts: ``"epsilon"`` (DDPM), ``"v"`` or ``"x0"``.
        cond_drop_prob: probability of replacing a sample's condition by the null condition.

    Returns (when called):
        ``{"loss": mean squared error}``.

    Notebooks: notebooks/07_ddpm.ipynb, 08_latent_diffusion.ipynb
    """

    def __init__(self, schedule: NoiseSchedule, prediction_type: str = "epsilon", cond_drop_prob: float = 0.0) -> None:
        check_prediction_type(prediction_type)
        if not 0.0 <= cond_drop_prob <= 1.0:
            raise ConfigError(f"cond_drop_prob must be in [0, 1], got {cond_drop_prob}.")
        self.schedule = schedule
        self.prediction_type = prediction_type
        self.cond_drop_prob = cond_drop_prob

    def __call__(self, model: nn.Module, batch: Any) -> dict[str, Tensor]:
        x0, cond = split_batch(batch)  # x0: (B, …)
        self.schedule = self.schedule.to(x0.device)
        t = torch.randint(0, self.schedule.num_timesteps, (x0.shape[0],), device=x0.device)  # (B,)  line 3
        noise = torch.randn_like(x0)  # (B, …)  line 4
        x_t = self.schedule.q_sample(x0, t, noise)  # (B, …)  √ᾱ_t x_0 + √(1-ᾱ_t) ε
        if cond is None:
            prediction = model(x_t, t)  # (B, …)
        else:
            keep = None
            if self.cond_drop_prob > 0:
                keep = torch.rand(x0.shape[0], device=x0.device) >= self.cond_drop_prob  # (B,)  False = dropped
            prediction = model(x_t, t, cond=cond, cond_mask=keep)  # (B, …)
        target = self.schedule.target(x0, noise, t, self.prediction_type)  # (B, …)
        return {"loss": torch.mean((target - prediction.float()) ** 2)}  # line 5: ‖target - prediction‖²
