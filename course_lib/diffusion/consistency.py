"""Consistency distillation and one- or two-step sampling (Song, Dhariwal, Chen & Sutskever 2023, "Consistency Models").

A consistency model ``f_θ(x, σ)`` maps any point of a probability-flow ODE trajectory straight to its
start, the clean data, so one network evaluation is a sample. Distillation (the paper's Algorithm 2)
teaches it with a trained diffusion model: take ``x`` at noise level ``σ_{n+1}``, let the teacher take
one ODE step down to ``σ_n``, and ask the model for the same answer from both points,
``‖f_θ(x_{σ_{n+1}}, σ_{n+1}) - f_θ⁻(x̂_{σ_n}, σ_n)‖²``, where θ⁻ is an exponential moving average of θ
(the "target network", updated ``θ⁻ ← μ θ⁻ + (1 - μ) θ``, not trained by gradients).

**From the DDPM schedule to σ.** The paper works in the "variance exploding" picture
``x_σ = x_0 + σ ε``. A DDPM state is the same thing scaled: ``x_t = √ᾱ_t x_σ`` with
``σ_t = √((1 - ᾱ_t) / ᾱ_t)`` (:attr:`NoiseSchedule.sigmas`). So here

- the noise levels are the schedule's own: σ_min = σ_0 (≈ 0.01 for the linear schedule, the paper's
  0.002) and σ_max = σ_{T-1} (≈ 157, the paper's 80), and the N-point grid is Karras et al.'s ρ = 7
  spacing in σ rounded to the nearest DDPM timestep (:func:`consistency_timesteps`);
- the teacher's ODE step from σ_{n+1} to σ_n is one DDIM step with η = 0, which *is* Euler's method
  on the probability-flow ODE in σ (Song et al. 2021, DDIM, eq. 14);
- models keep the course-wide interface: they take DDPM states ``x_t`` and integer timesteps, and
  :class:`ConsistencyModel` returns the clean-data estimate.

**The boundary condition** ``f(x, σ_min) = x`` is built in (paper Sec. 3, Appendix C)::

    f_θ(x, σ) = c_skip(σ) x_σ + c_out(σ) F_θ(x, σ),
    c_skip(σ) = σ_d² / ((σ - σ_min)² + σ_d²),   c_out(σ) = σ_d (σ - σ_min) / √(σ² + σ_d²),   σ_d = 0.5

so ``c_skip(σ_min) = 1`` and ``c_out(σ_min) = 0``. The paper initialises F_θ with the weights of an EDM
teacher, whose denoiser is ``D = c_skip^EDM x_σ + c_out^EDM F`` (``c_skip^EDM = σ_d² / (σ² + σ_d²)``,
``c_out^EDM = σ σ_d / √(σ² + σ_d²)``). Our teachers are DDPM networks, so F_θ is defined as the EDM
output that reproduces the network's clean-data estimate x̂_0: ``F_θ = (x̂_0 - c_skip^EDM x_σ) / c_out^EDM``.
Initialised from the teacher, f_θ then equals the teacher's x̂_0 wherever σ ≫ σ_min, as in the paper.

Notebook: notebooks/10_fast_sampling.ipynb
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from course_lib.diffusion.losses import split_batch
from course_lib.diffusion.samplers import ddim_step, ddim_timesteps, sample_noise, sampling_device, sampling_loop
from course_lib.diffusion.schedules import NoiseSchedule, check_prediction_type
from course_lib.errors import ConfigError
from course_lib.train.schedules import WeightAverage

SIGMA_DATA = 0.5


def consistency_coefficients(sigma: Tensor, sigma_min: float, sigma_data: float = SIGMA_DATA) -> tuple[Tensor, Tensor]:
    """``(c_skip(σ), c_out(σ))`` of the consistency parameterisation (Song et al. 2023, Appendix C).

    Notebook: notebooks/10_fast_sampling.ipynb
    """
    c_skip = sigma_data**2 / ((sigma - sigma_min) ** 2 + sigma_data**2)
    c_out = sigma_data * (sigma - sigma_min) / (sigma**2 + sigma_data**2).sqrt()
    return c_skip, c_out


def consistency_timesteps(schedule: NoiseSchedule, num_points: int = 18, rho: float = 7.0) -> list[int]:
    """The N discretisation points as DDPM timesteps, from σ_min (t = 0) up to σ_max (t = T - 1).

    Karras et al. 2022, eq. 5: ``σ_i = (σ_min^(1/ρ) + i / (N-1) · (σ_max^(1/ρ) - σ_min^(1/ρ)))^ρ``, each
    rounded to the timestep with the nearest σ_t (duplicates dropped, so a short schedule may give fewer
    points). The paper used N = 18 on CIFAR-10 and 40 on ImageNet 64×64.

    Notebook: notebooks/10_fast_sampling.ipynb
    """
    if num_points < 2:
        raise ConfigError(f"num_points must be at least 2, got {num_points}.")
    sigmas = schedule.sigmas.double().cpu()  # (T,)
    ramp = torch.linspace(0, 1, num_points, dtype=torch.float64)  # (N,)
    wanted = (sigmas[0] ** (1 / rho) + ramp * (sigmas[-1] ** (1 / rho) - sigmas[0] ** (1 / rho))) ** rho  # (N,)
    nearest = (sigmas[None, :] - wanted[:, None]).abs().argmin(dim=1)  # (N,)
    return sorted(set(nearest.tolist()))


class ConsistencyModel(nn.Module):
    """The consistency function ``f_θ(x_t, t) -> x̂_0`` around a DDPM network (see the module docstring).

    Args:
        network: ``network(x_t, t, cond=None)`` predicting ``prediction_type``, usually a copy of the teacher.
        schedule: the noise schedule of the network.
        prediction_type: what ``network`` predicts.
        sigma_data: σ_d, the data's standard deviation assumed by the parameterisation.

    Notebook: notebooks/10_fast_sampling.ipynb
    """

    def __init__(
        self,
        network: nn.Module,
        schedule: NoiseSchedule,
        prediction_type: str = "epsilon",
        sigma_data: float = SIGMA_DATA,
    ) -> None:
        super().__init__()
        check_prediction_type(prediction_type)
        self.network = network
        self.schedule = schedule
        self.prediction_type = prediction_type
        self.sigma_data = sigma_data
        self.sigma_min = float(schedule.sigmas[0])

    def forward(self, x_t: Tensor, t: Tensor, cond: Tensor | None = None, cond_mask: Tensor | None = None) -> Tensor:
        self.schedule = self.schedule.to(x_t.device)
        kwargs = {} if cond is None else {"cond": cond, "cond_mask": cond_mask}
        prediction = self.network(x_t, t, **kwargs).float()  # (B, …)
        x0_network = self.schedule.predict_x0(x_t, t, prediction, self.prediction_type)  # (B, …)
        alpha_bar = self.schedule.alpha_bar(t, x_t)  # (B, 1, …, 1)
        x_sigma = x_t / alpha_bar.sqrt()  # (B, …)  x_0 + σ ε
        sigma = self.schedule.sigma(t, x_t)  # (B, 1, …, 1)
        d2 = self.sigma_data**2
        edm_skip = d2 / (sigma**2 + d2)  # (B, 1, …, 1)
        edm_out = sigma * self.sigma_data / (sigma**2 + d2).sqrt()  # (B, 1, …, 1)
        f_network = (x0_network - edm_skip * x_sigma) / edm_out  # (B, …)  F_θ
        c_skip, c_out = consistency_coefficients(sigma, self.sigma_min, self.sigma_data)  # (B, 1, …, 1) each
        return c_skip * x_sigma + c_out * f_network  # (B, …)  f_θ


class ConsistencyDistillationLoss:
    """``loss_fn(model, batch)`` for consistency distillation (Song et al. 2023, Algorithm 2, d = squared ℓ2, λ = 1).

    The target network θ⁻ is a copy of the model made on the first call; every call first moves it
    towards the model's current weights (``θ⁻ ← μ θ⁻ + (1 - μ) θ``, i.e. after the previous optimizer
    step, as in the algorithm), then computes the loss. Sample from ``self.target`` or from the model.

    Args:
        teacher: the trained diffusion model, ``teacher(x_t, t, cond=None)``; put in eval mode and moved
            to the batch's device.
        schedule: its noise schedule.
        teacher_prediction_type: what the teacher predicts.
        num_points: N of :func:`consistency_timesteps` (the paper used 18 on CIFAR-10, 40 on ImageNet 64×64).
        target_decay: μ, the target network's EMA decay (0.95, the official ImageNet 64×64 and LSUN
            distillation setting).

    Returns (when called):
        ``{"loss": ‖f_θ(x_{t_{n+1}}) - f_θ⁻(x̂_{t_n})‖² averaged over elements}``.

    Notebook: notebooks/10_fast_sampling.ipynb
    """

    def __init__(
        self,
        teacher: nn.Module,
        schedule: NoiseSchedule,
        teacher_prediction_type: str = "epsilon",
        num_points: int = 18,
        target_decay: float = 0.95,
    ) -> None:
        check_prediction_type(teacher_prediction_type)
        if not 0.0 <= target_decay < 1.0:
            raise ConfigError(f"target_decay must be in [0, 1), got {target_decay}.")
        self.teacher = teacher.eval()
        self.schedule = schedule
        self.teacher_prediction_type = teacher_prediction_type
        self.timesteps = torch.tensor(consistency_timesteps(schedule, num_points))  # (N,) ascending
        self.target_decay = target_decay
        self.average = WeightAverage()  # θ⁻, checkpointed with the run (state_dict)

    @property
    def target(self) -> nn.Module | None:
        """The target network θ⁻ (None before the first call)."""
        return self.average.module

    def state_dict(self) -> dict[str, Any]:
        """θ⁻, for a training checkpoint: a resumed run continues with the same target network."""
        return self.average.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.average.load_state_dict(state)

    def __call__(self, model: nn.Module, batch: Any) -> dict[str, Tensor]:
        self.average.update(model, lambda n: self.target_decay)
        x0, cond = split_batch(batch)  # x0: (B, …)
        self.schedule = self.schedule.to(x0.device)
        self.teacher.to(x0.device)
        grid = self.timesteps.to(x0.device)  # (N,)
        n = torch.randint(0, len(grid) - 1, (x0.shape[0],), device=x0.device)  # (B,)
        t_low, t_high = grid[n], grid[n + 1]  # (B,) each
        x_high = self.schedule.q_sample(x0, t_high, torch.randn_like(x0))  # (B, …)
        kwargs = {} if cond is None else {"cond": cond}
        with torch.no_grad():
            teacher_prediction = self.teacher(x_high, t_high, **kwargs).float()  # (B, …)
            x_low = ddim_step(
                self.schedule, x_high, teacher_prediction, t_high, t_low, prediction_type=self.teacher_prediction_type
            )  # (B, …)  one Euler step of the PF-ODE
            target = self.target(x_low, t_low, **kwargs)  # (B, …)  f_θ⁻
        online = model(x_high, t_high, **kwargs)  # (B, …)  f_θ
        return {"loss": torch.mean((online.float() - target.float()) ** 2)}


@torch.no_grad()
def consistency_sample(
    model: Callable[..., Tensor],
    schedule: NoiseSchedule,
    shape: Sequence[int],
    *,
    num_steps: int = 1,
    timesteps: Sequence[int] | None = None,
    cond: Tensor | None = None,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
    device: str | torch.device | None = None,
    return_trajectory: bool = False,
    progress: bool = True,
) -> Tensor | tuple[Tensor, Tensor]:
    """Multistep consistency sampling (Song et al. 2023, Algorithm 1), in DDPM coordinates.

    ``x = f(x_{τ_1}, τ_1)`` from pure noise at ``τ_1 = T - 1``; then for each further τ: re-noise,
    ``x_τ = √ᾱ_τ (x + √(σ_τ² - σ_min²) z)``, and ``x = f(x_τ, τ)``.

    Args:
        model: a consistency function returning x̂_0, e.g. a :class:`ConsistencyModel`.
        num_steps: 1 or more; the timesteps are then ``ddim_timesteps(num_steps, T, "trailing")``
            (1 step: [T-1]; 2 steps: [T-1, T/2-1]).
        timesteps: the τ's to use instead, decreasing, starting at T - 1.
        The other arguments are as in :func:`course_lib.diffusion.samplers.ddpm_sample`.

    Notebook: notebooks/10_fast_sampling.ipynb
    """
    device = sampling_device(model, noise, device)
    schedule = schedule.to(device)
    steps = list(timesteps) if timesteps is not None else ddim_timesteps(num_steps, schedule.num_timesteps, "trailing")
    if steps[0] != schedule.num_timesteps - 1 or any(a <= b for a, b in zip(steps, steps[1:], strict=False)):
        raise ConfigError(f"timesteps must decrease from T-1={schedule.num_timesteps - 1}, got {steps}.")
    sigma_min = schedule.sigmas[0]

    def update(x: Tensor, x0: Tensor, i: int) -> Tensor:
        if i + 1 == len(steps):
            return x0
        t_next = steps[i + 1]
        z = sample_noise(x0.shape, generator, device)  # (B, …)
        sigma = (schedule.sigmas[t_next] ** 2 - sigma_min**2).sqrt()  # ()
        return schedule.alpha_bar(t_next).sqrt() * (x0 + sigma * z)  # (B, …)  x_τ in DDPM scaling

    return sampling_loop(
        model,
        shape,
        steps,
        update,
        cond=cond,
        generator=generator,
        noise=noise,
        device=device,
        return_trajectory=return_trajectory,
        progress=progress,
        name="consistency",
    )
