"""Diffusion: noise schedules, the training loss, samplers, the UNet, and fast sampling by distillation.

Schedules and samplers are kept apart from the networks (as in diffusers): a sampler takes any
``model(x_t, t, cond=None) -> prediction`` and a :class:`NoiseSchedule`.

- ``schedules``: linear / scaled-linear / cosine β, ᾱ, posterior, ``q_sample``, ε ↔ x0 ↔ v.
- ``losses``: DDPM's Algorithm 1 as a Trainer ``loss_fn``, with v/x0 targets and condition dropout.
- ``samplers``: Algorithm 2 (ancestral), DDIM, classifier-free guidance.
- ``unet``: the 2-D UNet for spectrograms (add or AdaGN time features, ControlNet injection points).
- ``distillation``: progressive distillation (Salimans & Ho 2022).
- ``consistency``: consistency distillation and 1-2 step sampling (Song et al. 2023).
- ``pretrained``: the course's scaled log-mel patches and the shipped tiny models (``load_tiny_ddpm``).
- ``frechet_mel_distance``: the Fréchet mel distance between generated and held-out spectrograms,
  re-exported from :mod:`course_lib.metrics.frechet` (its one definition, beside FAD).
- ``train``: the command that trains (and distils) the shipped models.

Notebooks: notebooks/07_ddpm.ipynb, 08_latent_diffusion.ipynb, 10_fast_sampling.ipynb.
"""

from course_lib.diffusion.consistency import (
    ConsistencyDistillationLoss,
    ConsistencyModel,
    consistency_coefficients,
    consistency_sample,
    consistency_timesteps,
)
from course_lib.diffusion.distillation import ProgressiveDistillationLoss, progressive_distillation
from course_lib.diffusion.losses import DiffusionLoss
from course_lib.diffusion.mel_patches import MelPatches, SpectrogramScaling, held_out_patches
from course_lib.diffusion.pretrained import (
    PretrainedDiffusion,
    load_pretrained_diffusion,
    load_tiny_consistency,
    load_tiny_ddpm,
    load_tiny_distilled,
)
from course_lib.diffusion.samplers import (
    ClassifierFreeGuidance,
    ddim_sample,
    ddim_step,
    ddim_timesteps,
    ddpm_sample,
    ddpm_step,
)
from course_lib.diffusion.schedules import (
    NoiseSchedule,
    cosine_betas,
    linear_betas,
    scaled_linear_betas,
)
from course_lib.diffusion.unet import UNet, UNetConfig
from course_lib.metrics.frechet import frame_statistics, frechet_mel_distance  # re-exported for notebooks 07 and 10

__all__ = [
    "ClassifierFreeGuidance",
    "ConsistencyDistillationLoss",
    "ConsistencyModel",
    "DiffusionLoss",
    "NoiseSchedule",
    "ProgressiveDistillationLoss",
    "UNet",
    "UNetConfig",
    "consistency_coefficients",
    "consistency_sample",
    "consistency_timesteps",
    "cosine_betas",
    "ddim_sample",
    "ddim_step",
    "ddim_timesteps",
    "ddpm_sample",
    "ddpm_step",
    "linear_betas",
    "progressive_distillation",
    "scaled_linear_betas",
    "MelPatches",
    "PretrainedDiffusion",
    "SpectrogramScaling",
    "frame_statistics",
    "frechet_mel_distance",
    "held_out_patches",
    "load_pretrained_diffusion",
    "load_tiny_consistency",
    "load_tiny_ddpm",
    "load_tiny_distilled",
]
