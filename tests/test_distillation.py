"""Tests of fast sampling: progressive distillation and consistency distillation / sampling."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from course_lib.diffusion import (
    ConsistencyDistillationLoss,
    ConsistencyModel,
    NoiseSchedule,
    ProgressiveDistillationLoss,
    UNet,
    UNetConfig,
    consistency_coefficients,
    consistency_sample,
    consistency_timesteps,
    ddim_step,
    ddim_timesteps,
    progressive_distillation,
)
from course_lib.errors import ConfigError
from course_lib.train import TrainConfig, Trainer


def tiny_unet(seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    return UNet(UNetConfig(base_channels=8, channel_mults=(1, 2), attention_levels=(1,), attention_heads=2))


def images(n: int = 64, seed: int = 0) -> torch.Tensor:
    """Smooth random 8×8 images in about [-1, 1]: a random 2×2 pattern upsampled."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 1, 2, 2, generator=generator) * 2 - 1
    return torch.nn.functional.interpolate(coarse, size=(8, 8), mode="bilinear", align_corners=True)


def point_mass_model(schedule: NoiseSchedule, x0: torch.Tensor, prediction_type: str):
    """A model that knows the data is x0 and answers in ``prediction_type`` (as in the sampler tests)."""

    def model(x_t, t, cond=None):
        alpha_bar = schedule.alpha_bar(t, x_t)
        noise = (x_t - alpha_bar.sqrt() * x0) / (1 - alpha_bar).sqrt()
        return schedule.target(x0.expand_as(x_t), noise, t, prediction_type)

    return model


class Wrap(torch.nn.Module):
    """Make a plain function a module (the losses call ``teacher.eval()`` and ``.to()``)."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *args, **kwargs):
        return self.fn(*args, **kwargs)


# ---- progressive distillation ----------------------------------------------------------------------


@pytest.mark.parametrize("prediction_type", ["v", "epsilon", "x0"])
def test_progressive_target_of_a_perfect_teacher_is_the_data(prediction_type):
    """Two exact DDIM steps stay on the line to x0, so x̃ = x0 and a perfect student has zero loss."""
    schedule = NoiseSchedule.linear()
    x0 = images(1)
    perfect = Wrap(point_mass_model(schedule, x0, prediction_type))
    loss = ProgressiveDistillationLoss(perfect, schedule, student_steps=4, prediction_type=prediction_type)
    torch.manual_seed(0)
    assert loss.teacher_timesteps.tolist() == ddim_timesteps(8, 1000, "trailing") + [-1]
    for n in (1, 3, 4, 64, 500):  # the student's trailing grid is every other point of the teacher's
        assert ddim_timesteps(n, 1000, "trailing") == ddim_timesteps(2 * n, 1000, "trailing")[::2]
    assert loss(perfect, x0.expand(16, 1, 8, 8))["loss"].item() < 1e-6


def student_vs_two_teacher_steps(student, teacher, schedule, x0, student_steps):
    """Mean squared gap between one student DDIM step and two teacher steps, over the student's grid."""
    grid = ddim_timesteps(2 * student_steps, 1000, "trailing") + [-1]
    generator = torch.Generator().manual_seed(7)
    gaps = []
    with torch.no_grad():
        for i in range(student_steps):
            t, t_mid, t_next = grid[2 * i], grid[2 * i + 1], grid[2 * i + 2]
            z = schedule.q_sample(x0, t, torch.randn(x0.shape, generator=generator))
            batch_t = torch.full((len(x0),), t)
            mid = ddim_step(schedule, z, teacher(z, batch_t), t, t_mid, prediction_type="v")
            two = ddim_step(
                schedule, mid, teacher(mid, torch.full((len(x0),), t_mid)), t_mid, t_next, prediction_type="v"
            )
            one = ddim_step(schedule, z, student(z, batch_t), t, t_next, prediction_type="v")
            gaps.append(((one - two) ** 2).mean())
    return torch.stack(gaps).mean().item()


def test_student_matches_two_teacher_steps_better_after_training():
    schedule = NoiseSchedule.linear()
    teacher = tiny_unet()
    data, held_out = images(256), images(32, seed=1)
    student = copy.deepcopy(teacher)
    before = student_vs_two_teacher_steps(student, teacher, schedule, held_out, student_steps=2)
    loss = ProgressiveDistillationLoss(teacher, schedule, student_steps=2, prediction_type="v")
    config = TrainConfig(steps=20, lr=2e-3, log_every=10, progress=False)
    Trainer(student, loss, config, device="cpu").fit(lambda step: data[(step * 16) % 256 :][:16])
    after = student_vs_two_teacher_steps(student, teacher, schedule, held_out, student_steps=2)
    assert after < 0.7 * before, (before, after)  # measured: 0.062 → 0.026


def test_progressive_distillation_halves_the_steps(tmp_path):
    schedule = NoiseSchedule.linear()
    teacher = tiny_unet()
    original = {name: p.clone() for name, p in teacher.state_dict().items()}
    data = images(32)
    config = TrainConfig(steps=2, log_every=1, progress=False, checkpoint_path=tmp_path / "run.pt")
    students = progressive_distillation(teacher, schedule, lambda step: data[:8], 4, 1, config=config, device="cpu")
    assert list(students) == [2, 1]
    assert students[2] is not teacher and students[1] is not students[2]
    assert all(torch.equal(original[name], p) for name, p in teacher.state_dict().items())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run_1steps.pt", "run_2steps.pt"]
    with pytest.raises(ConfigError):
        progressive_distillation(teacher, schedule, data, 4, 3)
    with pytest.raises(ConfigError):
        ProgressiveDistillationLoss(teacher, NoiseSchedule.linear(num_timesteps=10), student_steps=6)


# ---- consistency models ----------------------------------------------------------------------------


def test_boundary_condition_of_the_parameterisation():
    sigma_min = 0.002
    c_skip, c_out = consistency_coefficients(torch.tensor(sigma_min), sigma_min)
    assert c_skip.item() == 1.0 and c_out.item() == 0.0
    c_skip, c_out = consistency_coefficients(torch.tensor(80.0), sigma_min, sigma_data=0.5)
    assert c_skip.item() == pytest.approx(0.25 / (79.998**2 + 0.25), rel=1e-6)
    assert c_out.item() == pytest.approx(0.5 * 79.998 / math.sqrt(80.0**2 + 0.25), rel=1e-6)


def test_consistency_model_is_the_identity_at_sigma_min_and_the_teacher_at_high_noise():
    schedule = NoiseSchedule.linear()
    teacher = tiny_unet()
    model = ConsistencyModel(copy.deepcopy(teacher), schedule, prediction_type="epsilon")
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        at_min = model(x, torch.tensor([0, 0]))
        torch.testing.assert_close(at_min, x / schedule.alphas_cumprod[0].sqrt())  # x_σmin, whatever the network says
        t = torch.tensor([999, 999])
        teacher_x0 = schedule.predict_x0(x, t, teacher(x, t), "epsilon")
        torch.testing.assert_close(model(x, t), teacher_x0, rtol=1e-3, atol=1e-3)  # σ ≫ σ_min: c's ≈ EDM's


def test_consistency_timesteps():
    schedule = NoiseSchedule.linear()
    grid = consistency_timesteps(schedule, num_points=18)
    assert grid[0] == 0 and grid[-1] == 999 and grid == sorted(grid) and len(grid) == 18
    assert consistency_timesteps(schedule, num_points=2) == [0, 999]
    # the second point by hand: (σ_min^(1/7) + (σ_max^(1/7) - σ_min^(1/7)) / 17)^7 rounded to the nearest σ_t
    s_min, s_max = schedule.sigmas[0].item(), schedule.sigmas[-1].item()
    wanted = (s_min ** (1 / 7) + (s_max ** (1 / 7) - s_min ** (1 / 7)) / 17) ** 7
    assert grid[1] == int((schedule.sigmas - wanted).abs().argmin())
    with pytest.raises(ConfigError):
        consistency_timesteps(schedule, num_points=1)


@pytest.mark.parametrize("num_steps", [1, 2])
def test_consistency_sampling_in_one_and_two_steps(num_steps):
    schedule = NoiseSchedule.linear()
    x0 = images(1)
    calls = []

    def knows_the_answer(x_t, t, cond=None):
        calls.append(t[0].item())
        return x0.expand_as(x_t)

    sample, trajectory = consistency_sample(
        knows_the_answer,
        schedule,
        (3, 1, 8, 8),
        num_steps=num_steps,
        generator=torch.Generator().manual_seed(0),
        return_trajectory=True,
    )
    assert calls == [999, 499][:num_steps]
    torch.testing.assert_close(sample, x0.expand(3, 1, 8, 8))
    assert trajectory.shape == (num_steps + 1, 3, 1, 8, 8)
    model = ConsistencyModel(tiny_unet(), schedule)
    sample = consistency_sample(model, schedule, (2, 1, 8, 8), num_steps=num_steps)
    assert sample.shape == (2, 1, 8, 8) and torch.isfinite(sample).all()
    with pytest.raises(ConfigError, match="timesteps"):
        consistency_sample(model, schedule, (2, 1, 8, 8), timesteps=[500, 100])


def test_consistency_distillation_trains_with_an_ema_target():
    schedule = NoiseSchedule.linear()
    teacher = tiny_unet()
    model = ConsistencyModel(copy.deepcopy(teacher), schedule)
    loss = ConsistencyDistillationLoss(teacher, schedule, num_points=18, target_decay=0.9)
    data = images(64)
    config = TrainConfig(steps=6, lr=1e-3, log_every=1, progress=False)
    history = Trainer(model, loss, config, device="cpu").fit(lambda step: data[(step * 8) % 64 :][:8])
    assert all(math.isfinite(entry["loss"]) for entry in history)
    online, target = model.state_dict(), loss.target.state_dict()
    assert any(not torch.equal(online[name], target[name]) for name in online)  # the target lags behind
    assert not any(p.requires_grad for p in loss.target.parameters())

    # the EMA update, by hand: θ⁻ ← μ θ⁻ + (1 - μ) θ
    before = {name: value.clone() for name, value in loss.target.state_dict().items()}
    loss(model, data[:4])
    name = "network.out.2.weight"
    expected = 0.9 * before[name] + 0.1 * online[name]
    torch.testing.assert_close(loss.target.state_dict()[name], expected)
