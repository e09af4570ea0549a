"""Samplers: DDPM's ancestral sampling (Algorithm 2), DDIM, and classifier-free guidance.

A sampler knows the schedule and the update rule; the model only predicts. Any callable
``model(x_t, t, cond=None) -> prediction`` works, with ``t`` a ``(B,)`` LongTensor of 0-based timesteps
(see :mod:`course_lib.diffusion.schedules` for the indexing) and the prediction of ``prediction_type``.

**Ancestral sampling** (Ho et al. 2020, Algorithm 2): start from ``x_T ~ N(0, I)`` and for t = T … 1::

    x_{t-1} = 1/√α_t · (x_t - (1 - α_t) / √(1 - ᾱ_t) · ε_θ(x_t, t)) + σ_t z,    z ~ N(0, I)

with ``σ_t² = β_t`` or the posterior variance ``β̃_t`` (the paper tried both, Sec. 3.2) and no noise
on the last step (``z = 0`` for t = 1 in the paper).

**DDIM** (Song et al. 2021, "Denoising Diffusion Implicit Models", eq. 12) jumps from ``t`` to any
earlier ``t_prev`` through the predicted clean data::

    x̂_0 = (x_t - √(1-ᾱ_t) ε̂) / √ᾱ_t
    x_{t_prev} = √ᾱ_{t_prev} x̂_0 + √(1 - ᾱ_{t_prev} - σ²) ε̂ + σ z,
    σ = η √((1 - ᾱ_{t_prev}) / (1 - ᾱ_t)) √(1 - ᾱ_t / ᾱ_{t_prev})          (DDIM eq. 16)

η = 0 is deterministic (an ODE solver: the same x_T always gives the same sample); η = 1 with every
step is DDPM with σ_t² = β̃_t. The run visits a few of the training timesteps (:func:`ddim_timesteps`)
and its last step lands on ᾱ = 1, i.e. returns x̂_0 (diffusers' ``set_alpha_to_one=True``).

**Classifier-free guidance** (Ho & Salimans 2022) mixes the conditional and unconditional predictions,
``ε̃ = ε_uncond + w (ε_cond - ε_uncond)``: w = 1 is the plain conditional model, w > 1 follows the
condition more closely at the cost of variety (:class:`ClassifierFreeGuidance`).

Notebooks: notebooks/07_ddpm.ipynb (Algorithm 2), 10_fast_sampling.ipynb (DDIM), 08_latent_diffusion.ipynb (guidance).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from course_lib.diffusion.schedules import NoiseSchedule, check_prediction_type
from course_lib.errors import ConfigError

SPACINGS = ("leading", "trailing", "linspace")
VARIANCES = ("posterior", "beta")


def ddim_timesteps(
    num_steps: int, num_train_timesteps: int = 1000, spacing: str = "leading", steps_offset: int = 0
) -> list[int]:
    """The training timesteps a ``num_steps`` sampler visits, from noisiest to cleanest (diffusers' definitions).

    - ``"leading"``: ``k · (T // n)`` for k = n-1 … 0, plus ``steps_offset``; 50 of 1,000 → 980, 960, …, 0.
    - ``"trailing"``: ``round(T - k · T / n) - 1`` for k = 0 … n-1; 50 of 1,000 → 999, 979, …, 19.
      It starts at the noisiest step T-1, which matters for few steps (Lin et al. 2024).
    - ``"linspace"``: ``round(linspace(0, T-1, n))`` reversed; 50 of 1,000 → 999, 979, …, 0.

    Rounding is NumPy's (half to even), as in diffusers.

    Notebook: notebooks/10_fast_sampling.ipynb
    """
    if spacing not in SPACINGS:
        raise ConfigError(f"Unknown timestep spacing {spacing!r}: use one of {', '.join(SPACINGS)}.")
    if not 1 <= num_steps <= num_train_timesteps:
        raise ConfigError(f"num_steps must be between 1 and {num_train_timesteps}, got {num_steps}.")
    if spacing == "leading":
        steps = np.arange(num_steps)[::-1] * (num_train_timesteps // num_steps) + steps_offset
    elif spacing == "trailing":
        steps = np.round(num_train_timesteps - np.arange(num_steps) * (num_train_timesteps / num_steps)) - 1
    else:
        steps = np.round(np.linspace(0, num_train_timesteps - 1, num_steps))[::-1]
    if steps.max() >= num_train_timesteps:
        raise ConfigError(f"steps_offset={steps_offset} pushes the first timestep past T-1={num_train_timesteps - 1}.")
    return [int(step) for step in steps]


def check_variance(variance: str) -> None:
    """Raise :class:`ConfigError` unless ``variance`` is ``"posterior"`` or ``"beta"``."""
    if variance not in VARIANCES:
        raise ConfigError(f"Unknown variance {variance!r}: use one of {', '.join(VARIANCES)}.")


def ddpm_step(
    schedule: NoiseSchedule,
    x_t: Tensor,
    noise_prediction: Tensor,
    t: int,
    noise: Tensor | None,
    variance: str = "posterior",
) -> Tensor:
    """One step of Algorithm 2 (line 4): ``x_{t-1}`` from ``x_t`` and ``ε_θ(x_t, t)``.

    Args:
        t: 0-based timestep (the paper's t + 1); at ``t = 0`` no noise is added.
        noise: ``z ~ N(0, I)`` shaped like ``x_t``; may be None when ``t = 0``.
        variance: ``"posterior"`` (σ_t² = β̃_t) or ``"beta"`` (σ_t² = β_t).

    Notebook: notebooks/07_ddpm.ipynb
    """
    check_variance(variance)
    beta, alpha, alpha_bar = schedule.betas[t], schedule.alphas[t], schedule.alphas_cumprod[t]  # ()
    mean = (x_t - beta / (1 - alpha_bar).sqrt() * noise_prediction) / alpha.sqrt()  # (B, …)
    if t == 0:
        return mean
    sigma_sq = schedule.posterior_variance[t] if variance == "posterior" else beta  # ()
    return mean + sigma_sq.sqrt() * noise  # (B, …)


def ddim_step(
    schedule: NoiseSchedule,
    x_t: Tensor,
    prediction: Tensor,
    t: int | Tensor,
    t_prev: int | Tensor,
    *,
    eta: float = 0.0,
    noise: Tensor | None = None,
    prediction_type: str = "epsilon",
    clip_x0: float | None = None,
) -> Tensor:
    """One DDIM update (Song et al. 2021, eqs. 12 and 16) from ``t`` to ``t_prev < t`` (``-1`` = clean data).

    Args:
        t, t_prev: one timestep each, or ``(B,)`` tensors (one per sample, as distillation uses).
        noise: ``z ~ N(0, I)`` shaped like ``x_t``, added as ``σ z``; None adds nothing, which is only
            right for η = 0 or ``t_prev = -1`` (where σ = 0).
        clip_x0: clamp x̂_0 to ``[-clip_x0, clip_x0]`` (diffusers clips to [-1, 1] by default; leave it
            None for latents or unnormalised spectrograms). ε̂ is then recomputed from the clipped x̂_0,
            so the update stays on the line through x_t and x̂_0 (diffusers' ``use_clipped_model_output``).

    Notebook: notebooks/10_fast_sampling.ipynb
    """
    alpha_bar, alpha_bar_prev = schedule.alpha_bar(t, x_t), schedule.alpha_bar(t_prev, x_t)  # (B, 1, …, 1) or ()
    x0 = schedule.predict_x0(x_t, t, prediction, prediction_type)  # (B, …)  DDIM eq. 9
    eps = schedule.predict_noise(x_t, t, prediction, prediction_type)  # (B, …)
    if clip_x0 is not None:
        x0 = x0.clamp(-clip_x0, clip_x0)  # (B, …)
        eps = (x_t - alpha_bar.sqrt() * x0) / (1 - alpha_bar).sqrt()  # (B, …)
    sigma = eta * ((1 - alpha_bar_prev) / (1 - alpha_bar) * (1 - alpha_bar / alpha_bar_prev)).sqrt()  # eq. 16
    direction = (1 - alpha_bar_prev - sigma**2).clamp(min=0).sqrt() * eps  # (B, …)  "direction pointing to x_t"
    x_prev = alpha_bar_prev.sqrt() * x0 + direction  # (B, …)  eq. 12
    return x_prev if noise is None else x_prev + sigma * noise  # (B, …)


class ClassifierFreeGuidance(nn.Module):
    """Wrap a conditional model so that it returns the guided prediction (Ho & Salimans 2022, eq. 6).

    ``ε̃ = ε_θ(x_t, ∅) + w · (ε_θ(x_t, c) - ε_θ(x_t, ∅))``, computed in one forward pass over a doubled
    batch (the first half with the condition, the second with ``cond_mask`` False, i.e. the model's null
    condition). ``w = guidance_scale``: 1 is the conditional prediction, 0 the unconditional one
    (the paper's w is this w - 1). The mix is linear, so it is equally valid for v- and x0-predictions.
    With ``cond=None`` the wrapped model is called unconditionally.
    """

    def __init__(self, model: nn.Module, guidance_scale: float) -> None:
        super().__init__()
        self.model = model
        self.guidance_scale = guidance_scale

    def forward(self, x_t: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        if cond is None:
            return self.model(x_t, t)
        batch = x_t.shape[0]
        keep = torch.arange(2 * batch, device=x_t.device) < batch  # (2B,)  True: conditional half
        both = self.model(
            torch.cat([x_t, x_t]), torch.cat([t, t]), cond=torch.cat([cond, cond]), cond_mask=keep
        )  # (2B, …)
        conditional, unconditional = both.chunk(2)  # (B, …) each
        return unconditional + self.guidance_scale * (conditional - unconditional)  # (B, …)


@torch.no_grad()
def ddpm_sample(
    model: Callable[..., Tensor],
    schedule: NoiseSchedule,
    shape: Sequence[int],
    *,
    cond: Tensor | None = None,
    variance: str = "posterior",
    prediction_type: str = "epsilon",
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
    device: str | torch.device | None = None,
    return_trajectory: bool = False,
    progress: bool = True,
) -> Tensor | tuple[Tensor, Tensor]:
    """Algorithm 2: ancestral sampling through all T steps.

    Args:
        model: ``model(x_t, t, cond=None)`` predicting ``prediction_type`` (converted to ε for line 4).
        shape: ``(B, C, H, W)`` (or any shape) of the samples.
        variance: ``"posterior"`` (σ_t² = β̃_t) or ``"beta"`` (σ_t² = β_t).
        generator: seeds x_T and every z; noise is drawn on the generator's device and moved, so a
            seed gives the same samples on every device.
        noise: x_T to start from instead of drawing it.
        device: default: ``noise``'s device, else the model's, else the CPU.
        return_trajectory: also return every x_t, ``(T + 1, *shape)`` on the CPU (x_T first).
        progress: show a tqdm progress bar.

    Returns:
        x_0, or ``(x_0, trajectory)``.
    """
    check_variance(variance)
    check_prediction_type(prediction_type)
    device = sampling_device(model, noise, device)
    schedule = schedule.to(device)
    timesteps = list(range(schedule.num_timesteps - 1, -1, -1))

    def update(x: Tensor, prediction: Tensor, i: int) -> Tensor:
        t = timesteps[i]
        eps = schedule.predict_noise(x, t, prediction, prediction_type)  # (B, …)
        z = sample_noise(x.shape, generator, device) if t > 0 else None  # (B, …)  line 3
        return ddpm_step(schedule, x, eps, t, z, variance)

    return sampling_loop(
        model,
        shape,
        timesteps,
        update,
        cond=cond,
        generator=generator,
        noise=noise,
        device=device,
        return_trajectory=return_trajectory,
        progress=progress,
        name="DDPM",
    )


@torch.no_grad()
def ddim_sample(
    model: Callable[..., Tensor],
    schedule: NoiseSchedule,
    shape: Sequence[int],
    *,
    num_steps: int = 50,
    eta: float = 0.0,
    spacing: str = "leading",
    steps_offset: int = 0,
    clip_x0: float | None = None,
    cond: Tensor | None = None,
    prediction_type: str = "epsilon",
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
    device: str | torch.device | None = None,
    return_trajectory: bool = False,
    progress: bool = True,
) -> Tensor | tuple[Tensor, Tensor]:
    """DDIM sampling in ``num_steps`` steps (Song et al. 2021); see :func:`ddim_step` and :func:`ddim_timesteps`.

    Args:
        eta: 0 (deterministic) … 1 (DDPM-like noise).
        spacing, steps_offset: which timesteps to visit (:func:`ddim_timesteps`).
        clip_x0: clamp the predicted x_0 to ``[-clip_x0, clip_x0]``; None (default) does not clip.
        The other arguments are as in :func:`ddpm_sample`; the trajectory is ``(num_steps + 1, *shape)``.

    Notebooks: notebooks/08_latent_diffusion.ipynb, 10_fast_sampling.ipynb
    """
    if not 0.0 <= eta <= 1.0:
        raise ConfigError(f"eta must be in [0, 1], got {eta}.")
    check_prediction_type(prediction_type)
    device = sampling_device(model, noise, device)
    schedule = schedule.to(device)
    timesteps = ddim_timesteps(num_steps, schedule.num_timesteps, spacing, steps_offset)
    previous = timesteps[1:] + [-1]  # the last step lands on ᾱ = 1

    def update(x: Tensor, prediction: Tensor, i: int) -> Tensor:
        z = sample_noise(x.shape, generator, device) if eta > 0 and previous[i] >= 0 else None  # (B, …)
        return ddim_step(
            schedule,
            x,
            prediction,
            timesteps[i],
            previous[i],
            eta=eta,
            noise=z,
            prediction_type=prediction_type,
            clip_x0=clip_x0,
        )

    return sampling_loop(
        model,
        shape,
        timesteps,
        update,
        cond=cond,
        generator=generator,
        noise=noise,
        device=device,
        return_trajectory=return_trajectory,
        progress=progress,
        name="DDIM",
    )


def sampling_loop(
    model: Callable[..., Tensor],
    shape: Sequence[int],
    timesteps: list[int],
    update: Callable[[Tensor, Tensor, int], Tensor],
    *,
    cond: Tensor | None,
    generator: torch.Generator | None,
    noise: Tensor | None,
    device: torch.device,
    return_trajectory: bool,
    progress: bool,
    name: str,
) -> Tensor | tuple[Tensor, Tensor]:
    """The loop every sampler shares: x_T, then ``x = update(x, model(x, t), i)`` for each timestep.

    ``noise`` (x_T) is drawn from ``generator`` when not given. Returns x, or ``(x, trajectory)`` with
    the trajectory ``(len(timesteps) + 1, *shape)`` on the CPU, x_T first.
    """
    x = noise.to(device) if noise is not None else sample_noise(tuple(shape), generator, device)  # (B, …)  x_T
    trajectory = [x.cpu()] if return_trajectory else []
    for i, t in enumerate(tqdm(timesteps, desc=f"{name} sampling", disable=not progress, leave=False)):
        t_batch = torch.full((x.shape[0],), t, device=device, dtype=torch.long)  # (B,)
        prediction = model(x, t_batch) if cond is None else model(x, t_batch, cond=cond)  # (B, …)
        x = update(x, prediction, i)  # (B, …)
        if return_trajectory:
            trajectory.append(x.cpu())
    return (x, torch.stack(trajectory)) if return_trajectory else x


def sample_noise(shape: Sequence[int], generator: torch.Generator | None, device: torch.device) -> Tensor:
    """Standard normal noise; drawn on the generator's device and moved, so one seed means one result."""
    if generator is None:
        return torch.randn(tuple(shape), device=device)
    return torch.randn(tuple(shape), generator=generator, device=generator.device).to(device)


def sampling_device(
    model: Callable[..., Tensor], noise: Tensor | None, device: str | torch.device | None
) -> torch.device:
    """``device`` if given, else ``noise``'s device, else the device of the model's first parameter, else the CPU."""
    if device is not None:
        return torch.device(device)
    if noise is not None:
        return noise.device
    parameter = next(model.parameters(), None) if isinstance(model, nn.Module) else None
    return parameter.device if parameter is not None else torch.device("cpu")
