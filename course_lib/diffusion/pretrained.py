"""The course's spectrogram diffusion models as shipped: the tiny DDPM and its two distilled students.

:func:`load_tiny_ddpm` loads the shipped model, ``course_lib/checkpoints/ddpm_tiny.safetensors``,
made by ``python -m course_lib.diffusion.train --scale tiny --out
course_lib/checkpoints/ddpm_tiny.safetensors`` (see that module for the recipe and README.md's
"Shipped checkpoints" for its wall time). The loaded bundle (:class:`PretrainedDiffusion`) carries
everything a sampler needs: the UNet, its noise schedule, what it predicts, and the scaling
(:class:`course_lib.diffusion.mel_patches.SpectrogramScaling`; the data are
:mod:`course_lib.diffusion.mel_patches`'s). :func:`load_tiny_distilled` and :func:`load_tiny_consistency`
load the two students distilled from it for chapter 10 (4 DDIM steps; 1-2 consistency steps), made by
the same module.

Notebooks: notebooks/07_ddpm.ipynb, 10_fast_sampling.ipynb (and the later diffusion chapters).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from course_lib.audio import MelConfig, log_mel_to_audio
from course_lib.config import get_device
from course_lib.diffusion.consistency import ConsistencyModel
from course_lib.diffusion.mel_patches import SpectrogramScaling
from course_lib.diffusion.schedules import NoiseSchedule
from course_lib.diffusion.unet import UNet, UNetConfig
from course_lib.train import load_weights
from course_lib.train.weights import read_weights_header, shipped_weights

TINY_DDPM = shipped_weights("ddpm_tiny.safetensors")
TINY_DISTILLED = shipped_weights("ddpm_tiny_distilled_4steps.safetensors")
TINY_CONSISTENCY = shipped_weights("ddpm_tiny_consistency.safetensors")


@dataclasses.dataclass
class PretrainedDiffusion:
    """A trained spectrogram diffusion model and everything needed to sample from it and listen.

    Attributes:
        model: the network in eval mode, ``model(x_t, t) -> prediction``: the UNet, or for a consistency
            model a :class:`course_lib.diffusion.ConsistencyModel` around it (which returns x̂_0).
        schedule: its noise schedule.
        prediction_type: what ``model`` predicts (``"epsilon"``, ``"v"`` or ``"x0"``); pass it to the samplers.
        scaling: the log-mel ↔ model map.
        mel_config: the mel settings of the training data.
        shape: ``(1, n_mels, frames)`` of one sample.
        metadata: what the training run stored (steps, batch size, final loss, wall time, command, …).
    """

    model: nn.Module
    schedule: NoiseSchedule
    prediction_type: str
    scaling: SpectrogramScaling
    mel_config: MelConfig
    shape: tuple[int, int, int]
    metadata: dict[str, Any]

    def to_log_mel(self, x: Tensor) -> Tensor:
        """Samples ``(B, 1, M, F)`` in model units → log-mel ``(B, M, F)`` in nats."""
        return self.scaling.to_log_mel(x.detach().float().cpu()).squeeze(1)

    def to_audio(self, x: Tensor, n_iter: int = 64) -> Tensor:
        """Samples ``(B, 1, M, F)`` → waveforms ``(B, (F - 1) · hop)`` by Griffin-Lim (:func:`course_lib.audio.log_mel_to_audio`)."""
        log_mel = self.to_log_mel(x)  # (B, M, F)
        length = (log_mel.shape[-1] - 1) * self.mel_config.hop_length  # F centred frames span (F - 1) hops
        return log_mel_to_audio(log_mel, self.mel_config, n_iter=n_iter, length=length)  # (B, T)


DIFFUSION_STAGES = ("teacher", "progressive", "consistency")  # the stages of course_lib.diffusion.train
DIFFUSION_NEEDS = ("schedule", "num_timesteps", "prediction_type", "scaling", "mel_config", "patch_frames")


def read_metadata(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``(model config, training metadata)`` of a spectrogram UNet saved by :mod:`course_lib.diffusion.train`.

    Raises:
        CheckpointError: missing, cut-short or foreign file, or another model's weights (a VQ-VAE, or
            the latent diffusion UNet, whose config would not fit this pipeline).
    """
    header = read_weights_header(
        path,
        "UNet",
        stage=DIFFUSION_STAGES,
        needs=DIFFUSION_NEEDS,
        what="spectrogram diffusion UNet (course_lib.diffusion.train)",
        fix=f"re-create it with `python -m course_lib.diffusion.train --scale tiny --out {path}` "
        "(see README.md, 'Shipped checkpoints')",
    )
    return dict(header.config or {}), header.metadata


def load_pretrained_diffusion(path: str | Path, device: str | torch.device | None = None) -> PretrainedDiffusion:
    """Load any spectrogram UNet saved by :mod:`course_lib.diffusion.train` (teacher or student).

    The UNet's config, the schedule, the prediction type and the scaling are read from the file's
    metadata, so the weights come back with the settings they were trained with. A consistency
    student (metadata ``stage == "consistency"``) comes back wrapped in its :class:`ConsistencyModel`.

    Args:
        device: where to put the model (default :func:`course_lib.config.get_device`).
    """
    config, metadata = read_metadata(path)
    for name in ("channel_mults", "attention_levels"):
        config[name] = tuple(config[name])
    model = UNet(UNetConfig(**config))
    load_weights(path, model)
    device = get_device(device)
    schedule = NoiseSchedule.from_name(metadata["schedule"], metadata["num_timesteps"], device=device)
    scaling = SpectrogramScaling(**metadata["scaling"])
    mel = MelConfig(**metadata["mel_config"])
    shape = (config["in_channels"], mel.n_mels, metadata["patch_frames"])
    network: nn.Module = model
    if metadata.get("stage") == "consistency":
        network = ConsistencyModel(model, schedule, metadata["prediction_type"], metadata["sigma_data"])
    return PretrainedDiffusion(
        network.to(device).eval(), schedule, metadata["prediction_type"], scaling, mel, shape, metadata
    )


def load_tiny_ddpm(device: str | torch.device | None = None) -> PretrainedDiffusion:
    """The shipped tiny DDPM on SynthMusic log-mel patches (``course_lib/checkpoints/ddpm_tiny.safetensors``).

    Example::

        ddpm = load_tiny_ddpm()
        x = ddim_sample(ddpm.model, ddpm.schedule, (4, *ddpm.shape), num_steps=50,
                        prediction_type=ddpm.prediction_type)
        audio = ddpm.to_audio(x)  # (4, 10080) at 16 kHz: 0.63 s

    Notebooks: notebooks/07_ddpm.ipynb, 08_latent_diffusion.ipynb, 10_fast_sampling.ipynb
    """
    return load_pretrained_diffusion(TINY_DDPM, device)


def load_tiny_distilled(device: str | torch.device | None = None) -> PretrainedDiffusion:
    """The teacher progressively distilled to 4 DDIM steps (``ddpm_tiny_distilled_4steps.safetensors``).

    Sample it with ``ddim_sample(..., num_steps=4, spacing="trailing")`` (the grid it was trained on).

    Notebook: notebooks/10_fast_sampling.ipynb
    """
    return load_pretrained_diffusion(TINY_DISTILLED, device)


def load_tiny_consistency(device: str | torch.device | None = None) -> PretrainedDiffusion:
    """The teacher's consistency distillation (``ddpm_tiny_consistency.safetensors``), for ``consistency_sample``.

    Notebook: notebooks/10_fast_sampling.ipynb
    """
    return load_pretrained_diffusion(TINY_CONSISTENCY, device)
