"""Train the course's spectrogram diffusion model and distil it: the commands behind the shipped checkpoints.

Three stages, each one command (run from the repository root; seeded, so a rerun on one machine gives
the same weights, and on another machine nearly the same)::

    # 1. the DDPM teacher (Algorithm 1 on SynthMusic log-mel patches)
    python -m course_lib.diffusion.train --scale tiny --out course_lib/checkpoints/ddpm_tiny.safetensors
    # 2. progressive distillation of the teacher down to 4 DDIM steps (Salimans & Ho 2022)
    python -m course_lib.diffusion.train --stage progressive --scale tiny \\
        --teacher course_lib/checkpoints/ddpm_tiny.safetensors --out course_lib/checkpoints/ddpm_tiny_distilled_4steps.safetensors
    # 3. consistency distillation of the teacher (Song et al. 2023)
    python -m course_lib.diffusion.train --stage consistency --scale tiny \\
        --teacher course_lib/checkpoints/ddpm_tiny.safetensors --out course_lib/checkpoints/ddpm_tiny_consistency.safetensors

**The teacher** (stage ``teacher``) is :class:`course_lib.diffusion.UNet` (``UNetConfig.for_scale``: 0.30 M
parameters at ``tiny``, AdaGN time features) trained with :class:`course_lib.diffusion.DiffusionLoss` on
64 × 64 log-mel patches of ``SynthMusic(seed=0)`` clips (:class:`course_lib.diffusion.pretrained.MelPatches`,
scaled to about [-1, 1] by :class:`~course_lib.diffusion.pretrained.SpectrogramScaling`), DDPM's linear
schedule with T = 1,000. It predicts **v** = √ᾱ_t ε - √(1-ᾱ_t) x_0 rather than ε: the same information
(the samplers convert, ε = √(1-ᾱ_t) x_t + √ᾱ_t v), but a network whose output stays usable at the
noisiest step, which both distillations need (Salimans & Ho 2022, Sec. 4). AdamW with a short warm-up
and a cosine decay; the weights saved are an exponential moving average (EMA) of the trained ones,
which gives visibly cleaner samples from a short run (Ho et al. 2020 used EMA 0.9999 over 800k steps).

**The students** start as copies of the teacher: ``progressive`` runs rounds of
:func:`course_lib.diffusion.progressive_distillation` from ``--teacher-steps`` (32) trailing DDIM steps
down to 4; ``consistency`` trains a :class:`course_lib.diffusion.ConsistencyModel` with
:class:`course_lib.diffusion.ConsistencyDistillationLoss` and saves its EMA target network θ⁻.

Each file is written with :func:`course_lib.train.save_weights`: the UNet's config and the training facts
(stage, steps, schedule, prediction type, scaling, wall time, the command) travel in its metadata, and
:func:`course_lib.diffusion.pretrained.load_pretrained_diffusion` rebuilds everything from it.
At ``--scale full`` the UNet is ``UNetConfig.full()`` (43.6 M parameters) and the runs are longer: a GPU job.

Notebooks: notebooks/07_ddpm.ipynb (the teacher), 10_fast_sampling.ipynb (the students).
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from course_lib.audio import MelConfig
from course_lib.config import seed_everything, stage_recipe
from course_lib.data.batches import GeneratorBatches
from course_lib.data.splits import TRAINING_SEED
from course_lib.diffusion.consistency import ConsistencyDistillationLoss, ConsistencyModel, consistency_sample
from course_lib.diffusion.distillation import ProgressiveDistillationLoss
from course_lib.diffusion.losses import DiffusionLoss
from course_lib.diffusion.mel_patches import PATCH_FRAMES, MelPatches, SpectrogramScaling, held_out_patches
from course_lib.diffusion.pretrained import PretrainedDiffusion, load_pretrained_diffusion
from course_lib.diffusion.samplers import ddim_sample
from course_lib.diffusion.schedules import NoiseSchedule
from course_lib.diffusion.unet import UNet, UNetConfig
from course_lib.metrics.frechet import frechet_mel_distance
from course_lib.train import EMALoss, TrainConfig, Trainer, save_weights, warmup_cosine_schedule
from course_lib.train.command import Run, TrainingCommand, positive_float, positive_int

STAGES = ("teacher", "progressive", "consistency")


@dataclasses.dataclass
class RecipeConfig:
    """One stage's recipe. Defaults: the ``tiny`` teacher; :func:`recipe` gives every stage and scale."""

    steps: int = 1500
    batch_size: int = 8
    lr: float = 2e-3
    warmup_steps: int = 50
    final_lr_fraction: float = 0.1
    ema_decay: float = 0.995
    train_clips: int = 512
    prediction_type: str = "v"
    schedule: str = "linear"
    num_timesteps: int = 1000
    teacher_steps: int = 32  # progressive: the teacher's DDIM steps in the first round
    final_steps: int = 4  # progressive: the last student's steps
    consistency_points: int = 18  # consistency: N of the σ grid (Song et al. 2023 used 18 on CIFAR-10)
    target_decay: float = 0.95  # consistency: μ of the target network
    eval_samples: int = 16
    seed: int = 0


TINY = {
    "teacher": {},
    "progressive": {"steps": 300, "lr": 2e-4, "warmup_steps": 0, "ema_decay": 0.0},  # steps per round
    "consistency": {"steps": 800, "lr": 2e-4, "warmup_steps": 0, "ema_decay": 0.0},
}
FULL = {
    "teacher": {"steps": 100_000, "batch_size": 64, "lr": 2e-4, "warmup_steps": 1000, "ema_decay": 0.9999, "train_clips": 8192},
    "progressive": {"steps": 8_000, "batch_size": 64, "lr": 1e-4, "warmup_steps": 0, "ema_decay": 0.0, "teacher_steps": 256, "train_clips": 8192},
    "consistency": {"steps": 50_000, "batch_size": 64, "lr": 1e-5, "warmup_steps": 0, "ema_decay": 0.0, "consistency_points": 40, "train_clips": 8192},
}  # fmt: skip


def recipe(stage: str, scale: str | None = None, **changes: Any) -> RecipeConfig:
    """The recipe of ``stage`` at ``scale`` (default ``$COURSE_SCALE``), with single fields overridden."""
    return stage_recipe(RecipeConfig, TINY, FULL, stage, scale, changes)


def train(
    model: nn.Module, loss_fn: Any, data: MelPatches, config: RecipeConfig, device: torch.device, **train_options: Any
) -> tuple[nn.Module, list]:
    """Train ``model`` with AdamW + warm-up/cosine on random patches; return the EMA (or the model) and the history.

    ``train_options`` are :class:`course_lib.train.TrainConfig` fields (checkpoint and resume options).
    """
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    wrapped = EMALoss(loss_fn, config.ema_decay) if config.ema_decay > 0 else loss_fn
    trainer = Trainer(
        model,
        wrapped,
        TrainConfig(
            steps=config.steps, lr=config.lr, log_every=25, seed=config.seed, weight_decay=0.0, **train_options
        ),
        optimizer=optimizer,
        scheduler=warmup_cosine_schedule(optimizer, config.steps, config.warmup_steps, config.final_lr_fraction),
        device=device,
    )
    batches = GeneratorBatches.seeded(lambda generator: data.random_batch(config.batch_size, generator), config.seed)
    history = trainer.fit(batches)
    if isinstance(wrapped, EMALoss):
        return wrapped.update(model), history  # one last update: the weights after the final step
    return model, history


def sample_quality(model: nn.Module, bundle: PretrainedDiffusion, sampler: Any, n: int, seed: int = 0) -> float:
    """FMD (:mod:`course_lib.metrics.frechet`) of ``n`` samples from ``sampler(model, shape, generator)`` against held-out clips."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        x = sampler(model, (n, *bundle.shape), generator)
    reference = held_out_patches(64).log_mels  # (64, M, 201): every frame of 64 held-out clips
    return frechet_mel_distance(bundle.to_log_mel(x), reference)


def metadata_for(stage: str, config: RecipeConfig, run: Run, history: list, extra: dict) -> dict:
    return {
        **run.facts(),
        "stage": stage,
        **dataclasses.asdict(config),
        "scaling": dataclasses.asdict(SpectrogramScaling()),
        "mel_config": dataclasses.asdict(MelConfig()),
        "patch_frames": PATCH_FRAMES,
        "train_seed": TRAINING_SEED,
        "final_loss": history[-1]["loss"] if history else None,
        **extra,
    }


def run_teacher(config: RecipeConfig, run: Run) -> dict:
    seed_everything(config.seed)
    data = MelPatches(config.train_clips, seed=TRAINING_SEED)
    model = UNet(UNetConfig.for_scale(run.scale))
    schedule = NoiseSchedule.from_name(config.schedule, config.num_timesteps)
    loss = DiffusionLoss(schedule, prediction_type=config.prediction_type)
    ema, history = train(model, loss, data, config, run.device, **run.train_options())
    metadata = metadata_for("teacher", config, run, history, {})
    save_weights(run.out, ema, metadata)
    bundle = load_pretrained_diffusion(run.out, run.device)
    metadata["fmd_ddim50"] = sample_quality(bundle.model, bundle, ddim_sampler(bundle, 50), config.eval_samples)
    save_weights(run.out, ema, metadata)
    return metadata


def run_progressive(config: RecipeConfig, run: Run, teacher_path: Path) -> dict:
    """Rounds of progressive distillation, each a phase with its own checkpoint (``OUT.round-16.ckpt``, ...)."""
    seed_everything(config.seed)
    bundle = load_pretrained_diffusion(teacher_path, run.device)
    data = MelPatches(config.train_clips, seed=TRAINING_SEED)
    teacher, history, rounds = bundle.model, [], {}
    steps = config.teacher_steps // 2
    while steps >= config.final_steps:
        student = copy.deepcopy(teacher).train()
        loss = ProgressiveDistillationLoss(teacher, bundle.schedule, steps, bundle.prediction_type)
        student, round_history = train(student, loss, data, config, run.device, **run.train_options(f"round-{steps}"))
        rounds[str(steps)] = round_history[-1]["loss"]
        history += round_history
        teacher = student.eval()
        steps //= 2
    extra = {
        "teacher": teacher_path.name,
        "sampling_steps": config.final_steps,
        "spacing": "trailing",
        "round_final_losses": rounds,
    }
    metadata = metadata_for("progressive", config, run, history, extra)
    metadata.update(schedule=bundle.metadata["schedule"], num_timesteps=bundle.metadata["num_timesteps"],
                    prediction_type=bundle.prediction_type)  # fmt: skip
    metadata["fmd"] = sample_quality(
        teacher, bundle, ddim_sampler(bundle, config.final_steps, "trailing"), config.eval_samples
    )
    save_weights(run.out, teacher, metadata)
    return metadata


def run_consistency(config: RecipeConfig, run: Run, teacher_path: Path) -> dict:
    seed_everything(config.seed)
    bundle = load_pretrained_diffusion(teacher_path, run.device)
    data = MelPatches(config.train_clips, seed=TRAINING_SEED)
    student = ConsistencyModel(copy.deepcopy(bundle.model).train(), bundle.schedule, bundle.prediction_type)
    loss = ConsistencyDistillationLoss(
        bundle.model, bundle.schedule, bundle.prediction_type, config.consistency_points, config.target_decay
    )
    _, history = train(student, loss, data, config, run.device, **run.train_options())
    target = loss.target.eval()  # θ⁻, the EMA target network: an average of the trained weights, steadier than the last
    extra = {"teacher": teacher_path.name, "sigma_data": target.sigma_data}
    metadata = metadata_for("consistency", config, run, history, extra)
    metadata.update(schedule=bundle.metadata["schedule"], num_timesteps=bundle.metadata["num_timesteps"],
                    prediction_type=bundle.prediction_type)  # fmt: skip
    for steps in (1, 2):
        metadata[f"fmd_{steps}step"] = sample_quality(
            target,
            bundle,
            lambda m, shape, g, k=steps: consistency_sample(
                m, bundle.schedule, shape, num_steps=k, generator=g, progress=False
            ),
            config.eval_samples,
        )
    save_weights(run.out, target.network, metadata)
    return metadata


def ddim_sampler(bundle: PretrainedDiffusion, num_steps: int, spacing: str = "leading") -> Any:
    def sample(model: nn.Module, shape: tuple, generator: torch.Generator) -> Tensor:
        return ddim_sample(model, bundle.schedule, shape, num_steps=num_steps, spacing=spacing,
                           prediction_type=bundle.prediction_type, generator=generator, progress=False)  # fmt: skip

    return sample


COMMAND = TrainingCommand("course_lib.diffusion.train", __doc__)
COMMAND.add_argument("--stage", choices=STAGES, default="teacher")
COMMAND.add_argument("--teacher", type=Path, help="the teacher's weights (stages progressive and consistency)")
COMMAND.add_argument("--lr", type=positive_float)
COMMAND.add_argument("--clips", type=positive_int, help="SynthMusic training clips to synthesize")
COMMAND.add_argument("--eval-samples", type=positive_int, help="samples drawn to score the result (FMD)")


def main(argv: list[str] | None = None) -> dict:
    """Train the stage of the command line (``--steps`` counts per round for progressive) and write its weights."""
    run = COMMAND.parse(argv)
    args = run.args
    config = recipe(
        args.stage,
        run.scale,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        train_clips=args.clips,
        eval_samples=args.eval_samples,
    )
    if args.stage != "teacher" and args.teacher is None:
        COMMAND.parser.error(f"--stage {args.stage} needs --teacher PATH (the teacher's .safetensors file)")
    if args.stage == "teacher":
        metadata = run_teacher(config, run)
    elif args.stage == "progressive":
        metadata = run_progressive(config, run, args.teacher)
    else:
        metadata = run_consistency(config, run, args.teacher)
    run.finish()
    size = run.out.stat().st_size / 1e6
    quality = {k: round(v, 1) for k, v in metadata.items() if k.startswith("fmd")}
    print(
        f"wrote {run.out} ({size:.2f} MB) in {metadata['train_seconds']:.0f} s; final loss {metadata['final_loss']:.4f}; {quality}"
    )
    return metadata


if __name__ == "__main__":
    COMMAND.exit(main)
