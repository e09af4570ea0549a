"""The recipes of the course's VQ-VAEs: notebook 02's VQ-VAE and notebook 03's Jukebox hierarchy, and how they train.

- Data: two-second SynthMusic clips at 16 kHz (:func:`course_lib.data.splits.synth_music_audio`);
  training batches are random crops drawn by a generator seeded with the step
  (:class:`course_lib.data.batches.StepBatches`, so a batch depends only on the step).
- Losses: :func:`course_lib.quantize.vq_vae.vq_vae_loss` (van den Oord et al. 2017, eq. 3) and
  :func:`course_lib.quantize.hierarchical_vq_vae.hierarchical_loss` (Dhariwal et al. 2020, sec. 2.2).
- Training: AdamW with a 5% linear warm-up and a cosine decay to zero.

The shipped checkpoints are made by :mod:`course_lib.quantize.train`.

Notebooks: notebooks/02_vq_vae.ipynb, 03_hierarchical_vqvae.ipynb.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from course_lib.config import get_scale, seed_everything, training_device
from course_lib.data.batches import StepBatches, random_crops
from course_lib.data.splits import synth_music_audio
from course_lib.errors import ConfigError
from course_lib.quantize.hierarchical_vq_vae import HierarchicalVQVAE, HierarchicalVQVAEConfig, hierarchical_loss
from course_lib.quantize.vq_vae import VQVAE, VQVAEConfig, vq_vae_loss


@dataclass
class Recipe:
    """Everything that defines a shipped checkpoint: model config, data and training length.

    Training uses AdamW at ``lr`` with a 5% linear warm-up and a cosine decay to zero (``course_lib.train.warmup_cosine_schedule``).
    """

    model: str  # "vqvae" or "hierarchical"
    config: VQVAEConfig | HierarchicalVQVAEConfig
    steps: int
    lr: float = 3e-3
    n_clips: int = 256
    batch_size: int = 8
    crop: int = 4096
    seed: int = 0

    def build(self) -> VQVAE | HierarchicalVQVAE:
        return VQVAE(self.config) if self.model == "vqvae" else HierarchicalVQVAE(self.config)


def vq_vae_config(scale: str | None = None) -> VQVAEConfig:
    """Notebook 02's model: hop 16 (1,000 codes/s at 16 kHz), EMA codebook, k-means init, dead-code restarts.

    Notebook: notebooks/02_vq_vae.ipynb
    """
    return VQVAEConfig.for_scale(scale, strides=(4, 4), use_ema=True, kmeans_init=True, dead_code_steps=20)


def hierarchical_config(scale: str | None = None) -> HierarchicalVQVAEConfig:
    """Notebook 03's model: the library's preset (hops 8 / 32 / 128, as Jukebox's).

    Notebook: notebooks/03_hierarchical_vqvae.ipynb
    """
    return HierarchicalVQVAEConfig.for_scale(scale)


def recipe(model: str, scale: str | None = None) -> Recipe:
    """The recipe of a shipped checkpoint (``model`` is ``"vqvae"`` or ``"hierarchical"``)."""
    full = get_scale(scale) == "full"
    steps, n_clips = (20_000, 2_000) if full else (3_000, 256)
    if model == "vqvae":  # 2,048-sample crops: 8 x 128 = 1,024 vectors per batch for 256 codes
        return Recipe("vqvae", vq_vae_config(scale), steps, n_clips=n_clips, crop=2048)
    if model == "hierarchical":  # 4,096-sample crops: 8 x 32 = 256 top-level vectors per batch
        return Recipe("hierarchical", hierarchical_config(scale), steps, n_clips=n_clips, crop=4096)
    raise ConfigError(f"Unknown model {model!r}: use 'vqvae' or 'hierarchical'.")


def train(
    model_name: str,
    scale: str | None,
    steps: int | None = None,
    device: str | torch.device | None = None,
    batch_size: int | None = None,
    seed: int | None = None,
    **train_options: Any,
) -> tuple[VQVAE | HierarchicalVQVAE, list[dict]]:
    """Train one recipe from its seed; returns the model (on the CPU) and the history.

    ``train_options`` are :class:`course_lib.train.TrainConfig` fields (checkpoint and resume options
    of :meth:`course_lib.train.command.Run.train_options`, ``progress``).
    """
    from course_lib.train import fit_with_warmup_cosine  # imports tqdm: keep it local

    plan = recipe(model_name, scale)
    steps = plan.steps if steps is None else steps
    batch_size = plan.batch_size if batch_size is None else batch_size
    seed = plan.seed if seed is None else seed
    seed_everything(seed)
    model = plan.build()
    loss_fn = vq_vae_loss if plan.model == "vqvae" else hierarchical_loss
    audio = synth_music_audio(plan.n_clips)  # (N, T)
    batches = StepBatches(lambda generator: random_crops(audio, batch_size, plan.crop, generator), seed)
    history = fit_with_warmup_cosine(
        model, loss_fn, batches, steps, plan.lr, seed, training_device(device, scale), **train_options
    )
    return model.cpu(), history
