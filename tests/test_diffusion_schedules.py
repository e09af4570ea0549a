"""Tests of the forward process: schedules against hand computation, q_sample's moments, ε/x0/v conversions, the loss.

Reference values are computed here in plain Python floats (float64) from the papers' formulas; the
schedule stores float32, hence relative tolerances of 1e-6 (1e-5 for products of 1,000 terms).
"""

from __future__ import annotations

import math

import pytest
import torch

from course_lib.diffusion import DiffusionLoss, NoiseSchedule
from course_lib.diffusion.losses import split_batch
from course_lib.errors import ConfigError

T = 1000


def linear_beta(t: int) -> float:
    """DDPM's β for the 0-based step t: 1e-4 + t · (0.02 - 1e-4) / 999."""
    return 1e-4 + t * (0.02 - 1e-4) / (T - 1)


def alpha_bar(t: int) -> float:
    return math.prod(1 - linear_beta(s) for s in range(t + 1))


def test_linear_betas_and_alpha_bar_by_hand():
    schedule = NoiseSchedule.linear()
    assert schedule.num_timesteps == T
    assert schedule.betas[0].item() == pytest.approx(1e-4, rel=1e-6)
    assert schedule.betas[-1].item() == pytest.approx(0.02, rel=1e-6)
    assert schedule.betas[500].item() == pytest.approx(linear_beta(500), rel=1e-6)
    assert schedule.alphas_cumprod[0].item() == pytest.approx(0.9999, rel=1e-7)
    assert schedule.alphas_cumprod[1].item() == pytest.approx(0.9999 * (1 - linear_beta(1)), rel=1e-7)
    for t in (10, 500, T - 1):
        assert schedule.alphas_cumprod[t].item() == pytest.approx(alpha_bar(t), rel=1e-5)
    assert schedule.alphas_cumprod[-1].item() == pytest.approx(4.0358e-5, rel=1e-4)  # x_T is all but pure noise
    assert schedule.alphas_cumprod_prev[0].item() == 1.0
    assert schedule.alpha_bar(-1).item() == 1.0  # the clean data, where DDIM's last step lands
    assert schedule.alpha_bar(7).item() == schedule.alphas_cumprod[7].item()


def test_posterior_variance_and_mean_coefficients_by_hand():
    schedule = NoiseSchedule.linear()
    assert schedule.posterior_variance[0].item() == 0.0  # β̃_1 = 0: the last step adds no noise
    for t in (1, 300, T - 1):
        beta, ab, ab_prev = linear_beta(t), alpha_bar(t), alpha_bar(t - 1)
        assert schedule.posterior_variance[t].item() == pytest.approx((1 - ab_prev) / (1 - ab) * beta, rel=1e-5)
        assert schedule.posterior_mean_coef_x0[t].item() == pytest.approx(
            beta * math.sqrt(ab_prev) / (1 - ab), rel=1e-5
        )
        coef_xt = math.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab)
        assert schedule.posterior_mean_coef_xt[t].item() == pytest.approx(coef_xt, rel=1e-5)
    # at the last step the posterior mean is x0 itself
    assert schedule.posterior_mean_coef_x0[0].item() == pytest.approx(1.0, rel=1e-6)
    assert schedule.posterior_mean_coef_xt[0].item() == 0.0
    x0, x_t = torch.full((2, 3), 0.5), torch.full((2, 3), -1.0)
    mean, variance = schedule.posterior(x0, x_t, torch.tensor([300, 300]))
    expected = schedule.posterior_mean_coef_x0[300] * 0.5 - schedule.posterior_mean_coef_xt[300]
    torch.testing.assert_close(mean, expected.expand(2, 3))
    assert variance.shape == (2, 1)


def test_scaled_linear_and_cosine_by_hand():
    scaled = NoiseSchedule.scaled_linear()
    assert scaled.betas[0].item() == pytest.approx(0.0015, rel=1e-6)
    assert scaled.betas[-1].item() == pytest.approx(0.0195, rel=1e-6)
    root = math.sqrt(0.0015) + 500 / (T - 1) * (math.sqrt(0.0195) - math.sqrt(0.0015))  # linear in √β
    assert scaled.betas[500].item() == pytest.approx(root**2, rel=1e-6)

    cosine = NoiseSchedule.cosine()

    def f(tau: float) -> float:
        return math.cos((tau + 0.008) / 1.008 * math.pi / 2) ** 2

    assert cosine.alphas_cumprod[0].item() == pytest.approx(f(1 / T) / f(0), rel=1e-6)
    assert cosine.alphas_cumprod[499].item() == pytest.approx(f(500 / T) / f(0), rel=1e-5)
    assert cosine.betas[-1].item() == pytest.approx(0.999)  # f(1) = 0: β clipped at 0.999
    assert NoiseSchedule.from_name("cosine").betas.equal(cosine.betas)
    with pytest.raises(ConfigError, match="Unknown schedule"):
        NoiseSchedule.from_name("quadratic")
    with pytest.raises(ConfigError, match="betas"):
        NoiseSchedule(torch.tensor([0.1, 1.5]))


def test_sigmas_are_the_variance_exploding_view():
    schedule = NoiseSchedule.linear()
    for t in (0, 400, T - 1):
        assert schedule.sigmas[t].item() == pytest.approx(math.sqrt((1 - alpha_bar(t)) / alpha_bar(t)), rel=1e-5)
    assert schedule.sigmas[0].item() == pytest.approx(0.01, rel=1e-3)


def test_q_sample_moments():
    schedule = NoiseSchedule.linear()
    generator = torch.Generator().manual_seed(0)
    n, t = 200_000, 300
    x0 = torch.full((n,), 0.5)
    noise = torch.randn(n, generator=generator)
    x_t = schedule.q_sample(x0, t, noise)
    ab = alpha_bar(t)
    # tolerance: 5 standard errors of the mean and of the std (std·√(1/(2n)))
    assert x_t.mean().item() == pytest.approx(math.sqrt(ab) * 0.5, abs=5 * math.sqrt((1 - ab) / n))
    assert x_t.std().item() == pytest.approx(math.sqrt(1 - ab), abs=5 * math.sqrt((1 - ab) / (2 * n)))
    # per-sample timesteps broadcast over the other axes
    x0_batch = torch.ones(2, 1, 4, 4)
    both = schedule.q_sample(x0_batch, torch.tensor([0, T - 1]), torch.zeros_like(x0_batch))
    assert both[0].mean().item() == pytest.approx(math.sqrt(alpha_bar(0)), rel=1e-6)
    assert both[1].mean().item() == pytest.approx(math.sqrt(alpha_bar(T - 1)), rel=1e-4)


@pytest.mark.parametrize("prediction_type", ["epsilon", "x0", "v"])
def test_prediction_conversions_round_trip(prediction_type):
    schedule = NoiseSchedule.cosine()
    generator = torch.Generator().manual_seed(1)
    x0, noise = torch.randn(3, 1, 4, 4, generator=generator), torch.randn(3, 1, 4, 4, generator=generator)
    t = torch.tensor([0, 500, 990])
    x_t = schedule.q_sample(x0, t, noise)
    prediction = schedule.target(x0, noise, t, prediction_type)
    torch.testing.assert_close(schedule.predict_x0(x_t, t, prediction, prediction_type), x0, atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(schedule.predict_noise(x_t, t, prediction, prediction_type), noise, atol=2e-4, rtol=1e-4)


def test_v_target_by_hand():
    schedule = NoiseSchedule.linear()
    ab = alpha_bar(200)
    v = schedule.target(torch.tensor([2.0]), torch.tensor([-1.0]), 200, "v")
    assert v.item() == pytest.approx(math.sqrt(ab) * -1.0 - math.sqrt(1 - ab) * 2.0, rel=1e-6)
    with pytest.raises(ConfigError, match="prediction_type"):
        schedule.target(torch.zeros(1), torch.zeros(1), 0, "score")


def test_schedule_to_device_and_shapes():
    schedule = NoiseSchedule.linear(num_timesteps=10)
    assert schedule.to("cpu") is schedule
    assert schedule.alpha_bar(torch.tensor([1, 2]), torch.zeros(2, 3, 4, 5)).shape == (2, 1, 1, 1)
    assert "T=10" in repr(schedule)


class RecordingModel(torch.nn.Module):
    """Predicts zeros; remembers the keyword arguments it was called with."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.zeros(()))
        self.calls = []

    def forward(self, x_t, t, **kwargs):
        self.calls.append({"t": t, **kwargs})
        return self.scale * x_t


@pytest.mark.parametrize("prediction_type", ["epsilon", "x0", "v"])
def test_loss_is_algorithm_1_with_the_right_target(prediction_type):
    schedule = NoiseSchedule.linear()
    model = RecordingModel()
    torch.manual_seed(0)
    x0 = torch.randn(4096, 2)
    loss = DiffusionLoss(schedule, prediction_type)(model, x0)["loss"]
    # a zero prediction's loss is E‖target‖²: 1 for ε, E x0² = 1 for x0, and α² + σ² = 1 for v
    # (x0 and ε independent with unit variance); tolerance 0.05: 3 standard errors, √(2 / 8192) ≈ 0.016 each
    assert loss.item() == pytest.approx(1.0, abs=0.05)
    assert model.calls[0]["t"].shape == (4096,) and 0 <= model.calls[0]["t"].min() and model.calls[0]["t"].max() < T
    assert model.calls[0].keys() == {"t"}  # unconditional batch: model(x_t, t)


def test_condition_dropout_marks_rows():
    schedule = NoiseSchedule.linear()
    model = RecordingModel()
    torch.manual_seed(0)
    x0, cond = torch.randn(2000, 2), torch.randn(2000, 8)
    DiffusionLoss(schedule, cond_drop_prob=0.3)(model, (x0, cond))
    keep = model.calls[-1]["cond_mask"]
    assert keep.dtype == torch.bool and keep.shape == (2000,)
    assert (~keep).float().mean().item() == pytest.approx(0.3, abs=0.05)
    DiffusionLoss(schedule)(model, {"x0": x0, "cond": cond})
    assert model.calls[-1]["cond_mask"] is None and model.calls[-1]["cond"] is cond


def test_split_batch_forms_and_errors():
    x, c = torch.zeros(2, 3), torch.ones(2, 4)
    assert split_batch(x)[0] is x and split_batch(x)[1] is None
    assert split_batch([x])[1] is None and split_batch((x, c))[1] is c
    with pytest.raises(ConfigError, match="Cannot find the data"):
        split_batch({"mel": x})
    with pytest.raises(ConfigError, match="cond_drop_prob"):
        DiffusionLoss(NoiseSchedule.linear(), cond_drop_prob=1.5)
