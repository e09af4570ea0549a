"""Noise schedules: the forward (noising) process of a diffusion model, and conversions between predictions.

The forward process adds Gaussian noise in ``T`` small steps, ``q(x_t | x_{t-1}) = N(√(1-β_t) x_{t-1}, β_t I)``
(Ho et al. 2020, "Denoising Diffusion Probabilistic Models", eq. 2). With ``α_t = 1 - β_t`` and
``ᾱ_t = ∏_{s≤t} α_s`` any step can be reached from ``x_0`` in one jump (DDPM eq. 4)::

    x_t = √ᾱ_t · x_0 + √(1 - ᾱ_t) · ε,    ε ~ N(0, I)

and the step back, given ``x_0``, is Gaussian too (DDPM eqs. 6-7)::

    q(x_{t-1} | x_t, x_0) = N(μ̃_t, β̃_t I),
    μ̃_t = β_t √ᾱ_{t-1} / (1 - ᾱ_t) · x_0 + √α_t (1 - ᾱ_{t-1}) / (1 - ᾱ_t) · x_t,
    β̃_t = (1 - ᾱ_{t-1}) / (1 - ᾱ_t) · β_t.

**Indexing.** Timesteps are 0-based as in diffusers: index ``t`` in ``0 … T-1`` is the paper's step
``t + 1``, so ``betas[0]`` is the paper's β_1 and ``ᾱ_{-1} = 1`` (no noise) is the clean data. Every
method that looks ᾱ up accepts ``t = -1`` and returns 1 there, which is where DDIM's last step lands.

**Three ways to say what a network predicts**, all linear in ``(x_t, prediction)`` for a given ``t``:
the noise ε (DDPM), the clean data ``x_0``, or the velocity ``v = √ᾱ_t ε - √(1-ᾱ_t) x_0`` (Salimans & Ho
2022, "Progressive Distillation for Fast Sampling of Diffusion Models", Sec. 4). :meth:`NoiseSchedule.predict_x0`
and :meth:`NoiseSchedule.predict_noise` turn any of them into the other two.

**The σ view** (used by consistency models, Karras et al. 2022 and Song et al. 2023): dividing the
forward process by √ᾱ_t gives ``x_t / √ᾱ_t = x_0 + σ_t ε`` with ``σ_t = √((1 - ᾱ_t) / ᾱ_t)``, a
"variance exploding" process with noise level σ_t (:attr:`NoiseSchedule.sigmas`).

Notebooks: notebooks/07_ddpm.ipynb (forward process, schedules), 10_fast_sampling.ipynb (σ view).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from course_lib.errors import ConfigError

SCHEDULES = ("linear", "scaled_linear", "cosine")
PREDICTION_TYPES = ("epsilon", "x0", "v")


def linear_betas(num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """DDPM's schedule (Ho et al. 2020, Sec. 4): β rises linearly from 1e-4 to 0.02 over T = 1,000 steps.

    Returns:
        ``(num_timesteps,)`` float64 betas.
    """
    return torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)


def scaled_linear_betas(num_timesteps: int = 1000, beta_start: float = 0.0015, beta_end: float = 0.0195) -> Tensor:
    """AudioLDM's and Stable Diffusion's "scaled linear" schedule: √β linear from √0.0015 to √0.0195.

    Returns:
        ``(num_timesteps,)`` float64 betas.
    """
    return torch.linspace(beta_start**0.5, beta_end**0.5, num_timesteps, dtype=torch.float64) ** 2


def cosine_betas(num_timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """The cosine schedule (Nichol & Dhariwal 2021, "Improved DDPM", eq. 17).

    ``ᾱ(τ) = f(τ) / f(0)`` with ``f(τ) = cos²((τ + s) / (1 + s) · π/2)`` for ``τ = t / T``, and
    ``β_t = 1 - ᾱ((t+1)/T) / ᾱ(t/T)`` for 0-based ``t``, clipped at ``max_beta`` so the last steps
    do not divide by (nearly) zero. ᾱ falls slowly at both ends instead of linearly in log-SNR.

    Returns:
        ``(num_timesteps,)`` float64 betas.
    """
    tau = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps  # (T + 1,)
    f = torch.cos((tau + s) / (1 + s) * math.pi / 2) ** 2  # (T + 1,)
    return (1 - f[1:] / f[:-1]).clamp(max=max_beta)  # (T,)


class NoiseSchedule:
    """One β schedule and everything derived from it, as float32 tensors on one device.

    Build one with :meth:`linear`, :meth:`scaled_linear`, :meth:`cosine` or :meth:`from_name`; move it
    with :meth:`to`. The derived quantities are computed in float64 on the CPU before the cast, so a
    1,000-term product ᾱ keeps its digits (and MPS, which has no float64, works too).

    Attributes (all ``(T,)`` unless noted):
        betas, alphas, alphas_cumprod (ᾱ_t), alphas_cumprod_prev (ᾱ_{t-1}, with ᾱ_{-1} = 1),
        posterior_variance (β̃_t), posterior_mean_coef_x0, posterior_mean_coef_xt (μ̃_t's two factors),
        sigmas (σ_t = √((1 - ᾱ_t) / ᾱ_t), the σ view).

    Notebooks: notebooks/07_ddpm.ipynb, 08_latent_diffusion.ipynb, 09_controlnet.ipynb
    """

    def __init__(self, betas: Tensor, device: str | torch.device = "cpu") -> None:
        betas = torch.as_tensor(betas, dtype=torch.float64).cpu()
        if betas.ndim != 1 or len(betas) < 1 or not bool(((betas > 0) & (betas < 1)).all()):
            raise ConfigError("betas must be a non-empty 1-D tensor with every value in (0, 1).")
        self._betas64 = betas
        alphas = 1 - betas  # (T,)
        alphas_cumprod = torch.cumprod(alphas, 0)  # (T,)  ᾱ_t
        alphas_cumprod_prev = torch.cat([betas.new_ones(1), alphas_cumprod[:-1]])  # (T,)  ᾱ_{t-1}
        self.num_timesteps = len(betas)
        self.device = torch.device(device)
        values = {
            "betas": betas,
            "alphas": alphas,
            "alphas_cumprod": alphas_cumprod,
            "alphas_cumprod_prev": alphas_cumprod_prev,
            "posterior_variance": (1 - alphas_cumprod_prev) / (1 - alphas_cumprod) * betas,  # DDPM eq. 7
            "posterior_mean_coef_x0": betas * alphas_cumprod_prev.sqrt() / (1 - alphas_cumprod),  # DDPM eq. 7
            "posterior_mean_coef_xt": alphas.sqrt() * (1 - alphas_cumprod_prev) / (1 - alphas_cumprod),
            "sigmas": ((1 - alphas_cumprod) / alphas_cumprod).sqrt(),
            # ᾱ looked up at t + 1, so that t = -1 (clean data, ᾱ = 1) is a valid index
            "_alpha_bar_from_minus_one": torch.cat([betas.new_ones(1), alphas_cumprod]),  # (T + 1,)
        }
        for name, value in values.items():
            setattr(self, name, value.to(device=self.device, dtype=torch.float32))

    @classmethod
    def linear(
        cls,
        num_timesteps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        device: str | torch.device = "cpu",
    ) -> NoiseSchedule:
        """DDPM's linear schedule; see :func:`linear_betas`."""
        return cls(linear_betas(num_timesteps, beta_start, beta_end), device)

    @classmethod
    def scaled_linear(
        cls,
        num_timesteps: int = 1000,
        beta_start: float = 0.0015,
        beta_end: float = 0.0195,
        device: str | torch.device = "cpu",
    ) -> NoiseSchedule:
        """AudioLDM's scaled-linear schedule; see :func:`scaled_linear_betas`."""
        return cls(scaled_linear_betas(num_timesteps, beta_start, beta_end), device)

    @classmethod
    def cosine(cls, num_timesteps: int = 1000, s: float = 0.008, device: str | torch.device = "cpu") -> NoiseSchedule:
        """Nichol & Dhariwal's cosine schedule; see :func:`cosine_betas`."""
        return cls(cosine_betas(num_timesteps, s), device)

    @classmethod
    def from_name(cls, name: str, num_timesteps: int = 1000, device: str | torch.device = "cpu") -> NoiseSchedule:
        """``"linear"``, ``"scaled_linear"`` or ``"cosine"`` with each one's default parameters."""
        if name not in SCHEDULES:
            raise ConfigError(f"Unknown schedule {name!r}: use one of {', '.join(SCHEDULES)}.")
        return getattr(cls, name)(num_timesteps, device=device)

    def to(self, device: str | torch.device) -> NoiseSchedule:
        """The same schedule on ``device`` (``self`` if it is already there)."""
        device = torch.device(device)
        if device == self.device:
            return self
        return NoiseSchedule(self._betas64, device)

    def __repr__(self) -> str:
        return f"NoiseSchedule(T={self.num_timesteps}, beta {self.betas[0]:.4g} → {self.betas[-1]:.4g}, {self.device})"

    def alpha_bar(self, t: Tensor | int, like: Tensor | None = None) -> Tensor:
        """ᾱ_t, with ᾱ_{-1} = 1; shaped ``(B, 1, …, 1)`` to broadcast against ``like`` when given."""
        return _gather(self._alpha_bar_from_minus_one, torch.as_tensor(t, device=self.device) + 1, like)

    def sigma(self, t: Tensor | int, like: Tensor | None = None) -> Tensor:
        """σ_t = √((1-ᾱ_t)/ᾱ_t), the noise level of the σ view; shaped to broadcast against ``like`` when given."""
        return _gather(self.sigmas, t, like)

    def q_sample(self, x0: Tensor, t: Tensor | int, noise: Tensor) -> Tensor:
        """Sample ``x_t ~ q(x_t | x_0)``: ``√ᾱ_t x_0 + √(1-ᾱ_t) ε`` (DDPM eq. 4; Algorithm 1, line 5)."""
        alpha_bar = self.alpha_bar(t, x0)  # (B, 1, …, 1)
        return alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * noise  # (B, …)

    def posterior(self, x0: Tensor, x_t: Tensor, t: Tensor | int) -> tuple[Tensor, Tensor]:
        """Mean μ̃_t and variance β̃_t of ``q(x_{t-1} | x_t, x_0)`` (DDPM eqs. 6-7)."""
        coef_x0 = _gather(self.posterior_mean_coef_x0, t, x_t)  # (B, 1, …, 1)
        coef_xt = _gather(self.posterior_mean_coef_xt, t, x_t)  # (B, 1, …, 1)
        return coef_x0 * x0 + coef_xt * x_t, _gather(self.posterior_variance, t, x_t)

    def target(self, x0: Tensor, noise: Tensor, t: Tensor | int, prediction_type: str = "epsilon") -> Tensor:
        """What a network of ``prediction_type`` should output for ``x_t = q_sample(x0, t, noise)``.

        ε for ``"epsilon"``, ``x_0`` for ``"x0"``, and for ``"v"`` the velocity
        ``v = √ᾱ_t ε - √(1-ᾱ_t) x_0`` (Salimans & Ho 2022, Sec. 4).
        """
        check_prediction_type(prediction_type)
        if prediction_type == "epsilon":
            return noise
        if prediction_type == "x0":
            return x0
        alpha_bar = self.alpha_bar(t, x0)  # (B, 1, …, 1)
        return alpha_bar.sqrt() * noise - (1 - alpha_bar).sqrt() * x0  # (B, …)

    def predict_x0(self, x_t: Tensor, t: Tensor | int, prediction: Tensor, prediction_type: str = "epsilon") -> Tensor:
        """The clean data implied by a prediction of ``prediction_type`` at ``(x_t, t)``.

        From ε: ``(x_t - √(1-ᾱ_t) ε) / √ᾱ_t`` (DDPM eq. 4 solved for x_0; DDIM eq. 9).
        From v: ``√ᾱ_t x_t - √(1-ᾱ_t) v`` (Salimans & Ho 2022, Appendix D).
        """
        check_prediction_type(prediction_type)
        if prediction_type == "x0":
            return prediction
        alpha_bar = self.alpha_bar(t, x_t)  # (B, 1, …, 1)
        if prediction_type == "epsilon":
            return (x_t - (1 - alpha_bar).sqrt() * prediction) / alpha_bar.sqrt()  # (B, …)
        return alpha_bar.sqrt() * x_t - (1 - alpha_bar).sqrt() * prediction  # (B, …)

    def predict_noise(
        self, x_t: Tensor, t: Tensor | int, prediction: Tensor, prediction_type: str = "epsilon"
    ) -> Tensor:
        """The noise ε implied by a prediction of ``prediction_type`` at ``(x_t, t)``.

        From x_0: ``(x_t - √ᾱ_t x_0) / √(1-ᾱ_t)``; from v: ``√(1-ᾱ_t) x_t + √ᾱ_t v`` (Salimans & Ho 2022).
        """
        check_prediction_type(prediction_type)
        if prediction_type == "epsilon":
            return prediction
        alpha_bar = self.alpha_bar(t, x_t)  # (B, 1, …, 1)
        if prediction_type == "x0":
            return (x_t - alpha_bar.sqrt() * prediction) / (1 - alpha_bar).sqrt()  # (B, …)
        return (1 - alpha_bar).sqrt() * x_t + alpha_bar.sqrt() * prediction  # (B, …)


def check_prediction_type(prediction_type: str) -> None:
    """Raise :class:`ConfigError` unless ``prediction_type`` is ``"epsilon"``, ``"x0"`` or ``"v"``."""
    if prediction_type not in PREDICTION_TYPES:
        raise ConfigError(f"Unknown prediction_type {prediction_type!r}: use one of {', '.join(PREDICTION_TYPES)}.")


def _gather(values: Tensor, t: Tensor | int, like: Tensor | None) -> Tensor:
    """``values[t]`` for a scalar or ``(B,)`` index, reshaped to ``(B, 1, …, 1)`` to broadcast against ``like``."""
    picked = values[torch.as_tensor(t, device=values.device)]  # () or (B,)
    if like is None:
        return picked
    picked = picked.to(like.device)
    return picked.reshape(-1, *([1] * (like.ndim - 1))) if picked.ndim else picked  # (B, 1, …, 1) or ()
