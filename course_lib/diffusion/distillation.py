"""Progressive distillation: a student learns to do in one DDIM step what its teacher does in two.

Salimans & Ho 2022, "Progressive Distillation for Fast Sampling of Diffusion Models", Algorithm 2.
The student starts as a copy of the teacher. For a noisy ``z_t`` at one of the student's N timesteps,
the teacher takes two deterministic DDIM steps (η = 0), ``t → t' → t''``, where ``t''`` is the
student's next timestep. The student is trained so that *one* DDIM step from ``z_t`` lands on the same
``z_{t''}``. Solving the DDIM update ``z_{t''} = α_{t''} x̃ + (σ_{t''} / σ_t)(z_t - α_t x̃)`` for the
clean-data estimate gives the student's target (Algorithm 2, with α = √ᾱ, σ = √(1-ᾱ))::

    x̃ = (z_{t''} - (σ_{t''} / σ_t) z_t) / (α_{t''} - (σ_{t''} / σ_t) α_t)

which is turned into the target of the student's ``prediction_type``: ``x̃`` itself, the implied noise
``ε̃ = (z_t - α_t x̃) / σ_t``, or ``ṽ = α_t ε̃ - σ_t x̃``. Regressing v weights the x-error by
``1 + SNR`` ("SNR+1" weighting, Sec. 4), which stays finite where ᾱ → 0; the paper recommends v (or
x) because ε-prediction turns tiny errors into huge x-errors at the noisiest step. After a round the
student becomes the teacher and N halves: 2N → N → N/2 … → 1 (:func:`progressive_distillation`).

**Timesteps.** Rounds use diffusers' "trailing" spacing (:func:`course_lib.diffusion.samplers.ddim_timesteps`):
the N-step grid is exactly every other point of the 2N-step grid and starts at the noisiest step
T - 1, so the student is sampled afterwards with ``ddim_sample(student, ..., num_steps=N,
spacing="trailing")``. Each grid ends with a step to ᾱ = 1 (``t = -1``), where ``x̃ = z_{t''}``.

Notebook: notebooks/10_fast_sampling.ipynb
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from course_lib.diffusion.losses import split_batch
from course_lib.diffusion.samplers import ddim_step, ddim_timesteps
from course_lib.diffusion.schedules import NoiseSchedule, check_prediction_type
from course_lib.errors import ConfigError
from course_lib.train import TrainConfig, Trainer


class ProgressiveDistillationLoss:
    """One round's ``loss_fn(student, batch)``: the student's 1 DDIM step ≈ the teacher's 2 (Algorithm 2).

    Args:
        teacher: the trained model, ``teacher(x_t, t, cond=None)``; put in eval mode and moved to the
            batch's device, its weights are never updated.
        schedule: the teacher's noise schedule.
        student_steps: N, the student's number of sampling steps (the teacher runs 2N).
        prediction_type: what teacher and student predict (``"v"``, ``"epsilon"`` or ``"x0"``).

    Returns (when called):
        ``{"loss": mean squared error against the target of prediction_type}``.

    Notebook: notebooks/10_fast_sampling.ipynb
    """

    def __init__(
        self, teacher: nn.Module, schedule: NoiseSchedule, student_steps: int, prediction_type: str = "v"
    ) -> None:
        check_prediction_type(prediction_type)
        if 2 * student_steps > schedule.num_timesteps:
            raise ConfigError(
                f"student_steps={student_steps}: the teacher's 2N steps exceed T={schedule.num_timesteps}."
            )
        self.teacher = teacher.eval()
        self.schedule = schedule
        self.prediction_type = prediction_type
        self.student_steps = student_steps
        # teacher grid t_0 > t_1 > … > t_{2N-1} > -1; the student steps t_{2i} → t_{2i+2}
        self.teacher_timesteps = torch.tensor(
            ddim_timesteps(2 * student_steps, schedule.num_timesteps, "trailing") + [-1]
        )

    def __call__(self, student: nn.Module, batch: Any) -> dict[str, Tensor]:
        x0, cond = split_batch(batch)  # x0: (B, …)
        self.schedule = self.schedule.to(x0.device)
        self.teacher.to(x0.device)
        grid = self.teacher_timesteps.to(x0.device)  # (2N + 1,)
        i = torch.randint(0, self.student_steps, (x0.shape[0],), device=x0.device)  # (B,)
        t, t_mid, t_next = grid[2 * i], grid[2 * i + 1], grid[2 * i + 2]  # (B,) each
        z_t = self.schedule.q_sample(x0, t, torch.randn_like(x0))  # (B, …)
        kwargs = {} if cond is None else {"cond": cond}
        with torch.no_grad():
            z_mid = self._teacher_step(z_t, t, t_mid, kwargs)  # (B, …)
            z_next = self._teacher_step(z_mid, t_mid, t_next, kwargs)  # (B, …)
        alpha, sigma = self._alpha_sigma(t, x0)  # (B, 1, …, 1) each
        alpha_next, sigma_next = self._alpha_sigma(t_next, x0)  # (B, 1, …, 1) each
        ratio = sigma_next / sigma  # (B, 1, …, 1)
        x_target = (z_next - ratio * z_t) / (alpha_next - ratio * alpha)  # (B, …)  x̃, Algorithm 2
        eps_target = (z_t - alpha * x_target) / sigma  # (B, …)  ε̃
        target = self.schedule.target(x_target, eps_target, t, self.prediction_type)  # (B, …)
        prediction = student(z_t, t, **kwargs)  # (B, …)
        return {"loss": torch.mean((target - prediction.float()) ** 2)}

    def _teacher_step(self, z: Tensor, t: Tensor, t_prev: Tensor, kwargs: dict) -> Tensor:
        prediction = self.teacher(z, t, **kwargs).float()  # (B, …)
        return ddim_step(self.schedule, z, prediction, t, t_prev, prediction_type=self.prediction_type)

    def _alpha_sigma(self, t: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
        alpha_bar = self.schedule.alpha_bar(t, like)  # (B, 1, …, 1)
        return alpha_bar.sqrt(), (1 - alpha_bar).sqrt()


def progressive_distillation(
    teacher: nn.Module,
    schedule: NoiseSchedule,
    data: Any,
    teacher_steps: int,
    final_steps: int = 1,
    prediction_type: str = "v",
    config: TrainConfig | None = None,
    device: str | torch.device | None = None,
) -> dict[int, nn.Module]:
    """Halve the sampling steps round by round: ``teacher_steps`` → ``teacher_steps / 2`` → … → ``final_steps``.

    Each round copies the current teacher into a student, trains it with
    :class:`ProgressiveDistillationLoss` for ``config.steps`` steps, and makes it the next teacher.
    A ``config.checkpoint_path`` gets the round's step count in its name (``run_8steps.pt``).

    Args:
        teacher: a model trained with ``prediction_type`` that samples well with ``teacher_steps``
            trailing DDIM steps; it is not modified.
        data: as for :meth:`course_lib.train.Trainer.fit`.
        teacher_steps, final_steps: powers of two with ``final_steps < teacher_steps`` (e.g. 64 and 1).

    Returns:
        ``{N: student}`` for every round, each sampled with ``ddim_sample(..., num_steps=N, spacing="trailing")``.
    """
    if final_steps < 1 or teacher_steps <= final_steps or teacher_steps % final_steps:
        raise ConfigError(
            f"Need final_steps ≥ 1 and teacher_steps a larger multiple of it, got {teacher_steps} and {final_steps}."
        )
    config = config or TrainConfig()
    students: dict[int, nn.Module] = {}
    steps = teacher_steps // 2
    while steps >= final_steps:
        student = copy.deepcopy(teacher).train()
        round_config = config
        if config.checkpoint_path is not None:
            path = Path(config.checkpoint_path)
            round_config = dataclasses.replace(config, checkpoint_path=path.with_stem(f"{path.stem}_{steps}steps"))
        loss = ProgressiveDistillationLoss(teacher, schedule, steps, prediction_type)
        Trainer(student, loss, round_config, device=device).fit(data)
        students[steps] = teacher = student
        steps //= 2
    return students
