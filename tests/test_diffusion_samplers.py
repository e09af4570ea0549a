"""Tests of the samplers: Algorithm 2, DDIM and classifier-free guidance, against hand-computed updates.

A *perfect* noise predictor for a point mass at x0 knows the answer, ε̂ = (x_t - √ᾱ_t x0) / √(1-ᾱ_t),
so every correct sampler must return x0 from any starting noise (to float32 precision, atol 1e-4).
"""

from __future__ import annotations

import math

import pytest
import torch

from course_lib.diffusion import (
    ClassifierFreeGuidance,
    NoiseSchedule,
    UNet,
    UNetConfig,
    ddim_sample,
    ddim_step,
    ddim_timesteps,
    ddpm_sample,
    ddpm_step,
)
from course_lib.errors import ConfigError

POINT = torch.tensor([0.3, -0.7])


def perfect_predictor(schedule: NoiseSchedule, x0: torch.Tensor, prediction_type: str = "epsilon"):
    """A model that knows the data is the point x0 and answers in the given parameterisation."""

    def model(x_t, t, cond=None):
        alpha_bar = schedule.alpha_bar(t, x_t)
        noise = (x_t - alpha_bar.sqrt() * x0) / (1 - alpha_bar).sqrt()
        return schedule.target(x0.expand_as(x_t), noise, t, prediction_type)

    return model


def linear_beta(t: int, num_timesteps: int = 1000) -> float:
    return 1e-4 + t * (0.02 - 1e-4) / (num_timesteps - 1)


def alpha_bar(t: int) -> float:
    return math.prod(1 - linear_beta(s) for s in range(t + 1)) if t >= 0 else 1.0


def test_timestep_spacings_by_hand():
    assert ddim_timesteps(50, 1000, "leading") == list(range(980, -1, -20))  # 980, 960, …, 0
    assert ddim_timesteps(50, 1000, "leading", steps_offset=1) == list(range(981, 0, -20))  # Stable Diffusion's
    assert ddim_timesteps(50, 1000, "trailing") == list(range(999, 18, -20))  # 999, 979, …, 19
    # linspace(0, 999, 5) = 0, 249.75, 499.5, 749.25, 999; 499.5 rounds half to even → 500
    assert ddim_timesteps(5, 1000, "linspace") == [999, 749, 500, 250, 0]
    assert ddim_timesteps(3, 10, "leading") == [6, 3, 0]  # 10 // 3 = 3
    assert ddim_timesteps(3, 10, "trailing") == [9, 6, 2]  # round(10, 6.67, 3.33) - 1
    assert ddim_timesteps(1000, 1000, "leading") == list(range(999, -1, -1))
    assert ddim_timesteps(2, 1000, "trailing") == [999, 499]
    for bad in ({"num_steps": 0}, {"num_steps": 1001}, {"num_steps": 5, "spacing": "uniform"}):
        with pytest.raises(ConfigError):
            ddim_timesteps(**{"num_train_timesteps": 1000, **bad})


def test_ddpm_step_by_hand():
    schedule = NoiseSchedule.linear()
    t, x_t, eps, z = 10, torch.tensor([1.0]), torch.tensor([0.5]), torch.tensor([0.3])
    beta, ab, ab_prev = linear_beta(t), alpha_bar(t), alpha_bar(t - 1)
    mean = (1.0 - beta / math.sqrt(1 - ab) * 0.5) / math.sqrt(1 - beta)  # Algorithm 2, line 4
    posterior_std = math.sqrt((1 - ab_prev) / (1 - ab) * beta)
    got = ddpm_step(schedule, x_t, eps, t, z, "posterior").item()
    assert got == pytest.approx(mean + posterior_std * 0.3, rel=1e-5)
    assert ddpm_step(schedule, x_t, eps, t, z, "beta").item() == pytest.approx(mean + math.sqrt(beta) * 0.3, rel=1e-5)
    # t = 0 (the paper's t = 1) adds no noise
    mean_0 = (1.0 - 1e-4 / math.sqrt(1e-4) * 0.5) / math.sqrt(1 - 1e-4)
    assert ddpm_step(schedule, x_t, eps, 0, None, "beta").item() == pytest.approx(mean_0, rel=1e-5)


def test_ddim_step_by_hand():
    schedule = NoiseSchedule.linear()
    t, t_prev, eta, x_t, eps, z = 500, 480, 0.5, 0.8, -0.2, 1.1
    ab, ab_prev = alpha_bar(t), alpha_bar(t_prev)
    x0 = (x_t - math.sqrt(1 - ab) * eps) / math.sqrt(ab)  # DDIM eq. 9
    sigma = eta * math.sqrt((1 - ab_prev) / (1 - ab)) * math.sqrt(1 - ab / ab_prev)  # eq. 16
    expected = math.sqrt(ab_prev) * x0 + math.sqrt(1 - ab_prev - sigma**2) * eps + sigma * z  # eq. 12
    got = ddim_step(
        schedule, torch.tensor([x_t]), torch.tensor([eps]), t, t_prev, eta=eta, noise=torch.tensor([z])
    ).item()
    assert got == pytest.approx(expected, rel=1e-5)
    # the last step (to ᾱ = 1) returns x̂0
    last = ddim_step(schedule, torch.tensor([x_t]), torch.tensor([eps]), t, -1, eta=1.0, noise=torch.tensor([z]))
    assert last.item() == pytest.approx(x0, rel=1e-5)


def test_ddim_eta_one_single_step_is_the_posterior_variance_update():
    schedule = NoiseSchedule.linear()
    generator = torch.Generator().manual_seed(0)
    x_t, eps, z = (torch.randn(4, 3, generator=generator) for _ in range(3))
    for t in (0, 1, 250, 999):
        ancestral = ddpm_step(schedule, x_t, eps, t, z, "posterior")
        implicit = ddim_step(schedule, x_t, eps, t, t - 1, eta=1.0, noise=z)
        torch.testing.assert_close(implicit, ancestral, atol=2e-5, rtol=1e-4)


def test_ddim_eta_one_all_steps_matches_ancestral_sampling():
    schedule = NoiseSchedule.linear(num_timesteps=100)

    def model(x, t, cond=None):  # any deterministic predictor
        return 0.3 * x + 0.01 * t.float()[:, None]

    ancestral = ddpm_sample(model, schedule, (4, 2), generator=torch.Generator().manual_seed(3), progress=False)
    implicit = ddim_sample(
        model, schedule, (4, 2), num_steps=100, eta=1.0, generator=torch.Generator().manual_seed(3), progress=False
    )
    torch.testing.assert_close(implicit, ancestral, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("variance", ["posterior", "beta"])
def test_ancestral_sampling_with_a_perfect_predictor_returns_the_point(variance):
    schedule = NoiseSchedule.linear()
    samples = ddpm_sample(
        perfect_predictor(schedule, POINT),
        schedule,
        (8, 2),
        variance=variance,
        generator=torch.Generator().manual_seed(0),
        progress=False,
    )
    torch.testing.assert_close(samples, POINT.expand(8, 2), atol=1e-4, rtol=0)


@pytest.mark.parametrize("prediction_type", ["epsilon", "x0", "v"])
@pytest.mark.parametrize("num_steps,spacing", [(1, "trailing"), (3, "leading"), (10, "linspace"), (50, "leading")])
def test_ddim_with_a_perfect_predictor_returns_the_point(prediction_type, num_steps, spacing):
    schedule = NoiseSchedule.linear()
    samples = ddim_sample(
        perfect_predictor(schedule, POINT, prediction_type),
        schedule,
        (8, 2),
        num_steps=num_steps,
        spacing=spacing,
        prediction_type=prediction_type,
        generator=torch.Generator().manual_seed(0),
        progress=False,
    )
    torch.testing.assert_close(samples, POINT.expand(8, 2), atol=1e-4, rtol=0)


def test_ddim_eta_zero_is_deterministic_and_eta_positive_is_not():
    schedule = NoiseSchedule.linear(num_timesteps=200)

    def model(x, t, cond=None):
        return torch.tanh(x) * (t.float()[:, None] / 200)

    x_T = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    runs = [
        ddim_sample(
            model, schedule, (4, 2), num_steps=20, noise=x_T, generator=torch.Generator().manual_seed(s), progress=False
        )
        for s in (1, 2)
    ]
    assert torch.equal(runs[0], runs[1])
    noisy = [
        ddim_sample(
            model,
            schedule,
            (4, 2),
            num_steps=20,
            eta=1.0,
            noise=x_T,
            generator=torch.Generator().manual_seed(s),
            progress=False,
        )
        for s in (1, 2)
    ]
    assert not torch.allclose(noisy[0], noisy[1])


def test_seed_trajectory_and_clipping():
    schedule = NoiseSchedule.linear(num_timesteps=50)
    model = perfect_predictor(schedule, POINT)
    first, trajectory = ddpm_sample(
        model, schedule, (3, 2), generator=torch.Generator().manual_seed(5), return_trajectory=True, progress=False
    )
    again = ddpm_sample(model, schedule, (3, 2), generator=torch.Generator().manual_seed(5), progress=False)
    assert torch.equal(first, again)
    assert trajectory.shape == (51, 3, 2) and torch.equal(trajectory[-1], first)
    x_T = torch.randn(3, 2, generator=torch.Generator().manual_seed(5))
    assert torch.equal(trajectory[0], x_T)  # x_T is the generator's first draw
    _, ddim_trajectory = ddim_sample(model, schedule, (3, 2), num_steps=5, return_trajectory=True, progress=False)
    assert ddim_trajectory.shape == (6, 3, 2)

    far = torch.tensor([3.0, -3.0])  # outside [-1, 1]: clipping x̂0 makes the sampler return the clipped point
    clipped = ddim_sample(perfect_predictor(schedule, far), schedule, (2, 2), num_steps=5, clip_x0=1.0, progress=False)
    torch.testing.assert_close(clipped, torch.tensor([1.0, -1.0]).expand(2, 2), atol=1e-5, rtol=0)


def test_sampler_argument_errors():
    schedule = NoiseSchedule.linear(num_timesteps=10)
    model = perfect_predictor(schedule, POINT)
    with pytest.raises(ConfigError, match="eta"):
        ddim_sample(model, schedule, (1, 2), num_steps=2, eta=1.5, progress=False)
    with pytest.raises(ConfigError, match="variance"):
        ddpm_sample(model, schedule, (1, 2), variance="learned", progress=False)


class ToyConditional(torch.nn.Module):
    """Predicts the condition's first entry where cond_mask is True, -1 elsewhere; counts its calls."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x_t, t, cond=None, cond_mask=None):
        self.calls += 1
        conditional = cond[:, :1].expand_as(x_t) if cond is not None else torch.full_like(x_t, -1.0)
        if cond_mask is None:
            return conditional
        return torch.where(cond_mask[:, None], conditional, torch.full_like(x_t, -1.0))


def test_guidance_formula_in_one_forward_pass():
    model = ToyConditional()
    x, t, cond = torch.zeros(3, 2), torch.tensor([5, 5, 5]), torch.full((3, 4), 2.0)
    for w, expected in ((1.0, 2.0), (0.0, -1.0), (3.0, -1.0 + 3.0 * (2.0 - -1.0))):
        calls = model.calls
        guided = ClassifierFreeGuidance(model, w)(x, t, cond)
        assert model.calls == calls + 1  # conditional and unconditional halves in one batch
        torch.testing.assert_close(guided, torch.full((3, 2), expected))


def test_guidance_on_a_conditional_unet():
    torch.manual_seed(0)
    unet = UNet(UNetConfig(base_channels=8, channel_mults=(1, 2), attention_levels=(1,), attention_heads=2, cond_dim=4))
    with torch.no_grad():
        unet.null_cond.normal_()  # a trained null embedding differs from zero
    x, t, cond = torch.randn(2, 1, 8, 8), torch.tensor([10, 500]), torch.randn(2, 4)
    with torch.no_grad():
        conditional, unconditional = unet(x, t, cond=cond), unet(x, t)
        torch.testing.assert_close(ClassifierFreeGuidance(unet, 1.0)(x, t, cond), conditional, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(ClassifierFreeGuidance(unet, 0.0)(x, t, cond), unconditional, atol=1e-5, rtol=1e-4)
        assert not torch.allclose(conditional, unconditional)
    schedule = NoiseSchedule.linear(num_timesteps=20)
    guided = ClassifierFreeGuidance(unet, 3.0)
    sample = ddim_sample(guided, schedule, (2, 1, 8, 8), num_steps=4, cond=cond, progress=False)
    assert sample.shape == (2, 1, 8, 8) and torch.isfinite(sample).all()
