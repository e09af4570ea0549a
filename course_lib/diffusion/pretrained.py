"""The course's spectrogram diffusion model: its data (scaled log-mel patches of SynthMusic) and its shipped weights.

A diffusion model wants data of roughly unit scale: the forward process ends at ``N(0, I)``, so the
clean data should not be much larger or much smaller than that. A log-mel spectrogram
(:func:`course_lib.audio.log_mel_spectrogram`, natural log of the mel magnitude with a floor of 1e-5)
lies between ``log(1e-5) ≈ -11.5`` (silence) and about ``+1.5`` (the loudest SynthMusic bands), so
the course maps it to about ``[-1, 1]`` with one fixed affine map (:class:`SpectrogramScaling`)::

    x = (log_mel + 5.0) / 6.5          log_mel = 6.5 · x - 5.0

Silence lands at -1.0, the loudest bins near +1.0, and the data's standard deviation is about 0.5
(the σ_data that consistency models assume). The map is fixed, not fitted, so it is the same at
every scale and for every data set, and a generated ``x`` can always be turned back into sound.

The model sees **patches** of 64 mel bands × 64 frames (0.64 s at 100 frames/s) cut at random times
from 2-second SynthMusic clips (:class:`MelPatches`). Training uses ``SynthMusic(seed=0)``; the
held-out data the notebooks and benchmarks compare samples with is ``SynthMusic(seed=1)``
(:func:`held_out_patches`), never seen in training.

:func:`load_tiny_ddpm` loads the shipped model, ``course_lib/checkpoints/ddpm_tiny.safetensors``,
made by ``python -m course_lib.diffusion.train_spectrogram_ddpm --scale tiny --out
course_lib/checkpoints/ddpm_tiny.safetensors`` (see that module for the recipe and README.md's
"Shipped checkpoints" for its wall time). The loaded bundle (:class:`PretrainedDiffusion`) carries
everything a sampler needs: the UNet, its noise schedule, what it predicts, and the scaling.
:func:`load_tiny_distilled` and :func:`load_tiny_consistency` load the two students distilled from it
for chapter 10 (4 DDIM steps; 1-2 consistency steps), made by the same module.

Notebooks: notebooks/07_ddpm.ipynb, 10_fast_sampling.ipynb (and the later diffusion chapters).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from course_lib.audio import MelConfig, log_mel_spectrogram, log_mel_to_audio
from course_lib.config import get_device
from course_lib.data import SynthMusic
from course_lib.data.batches import random_crops
from course_lib.diffusion.consistency import ConsistencyModel
from course_lib.diffusion.schedules import NoiseSchedule
from course_lib.diffusion.unet import UNet, UNetConfig
from course_lib.errors import ConfigError
from course_lib.train import load_weights
from course_lib.train.weights import read_weights_header

CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "checkpoints"
TINY_DDPM = CHECKPOINT_DIR / "ddpm_tiny.safetensors"
TINY_DISTILLED = CHECKPOINT_DIR / "ddpm_tiny_distilled_4steps.safetensors"
TINY_CONSISTENCY = CHECKPOINT_DIR / "ddpm_tiny_consistency.safetensors"
PATCH_FRAMES = 64  # 0.64 s at 100 frames/s
CLIP_SECONDS = 2.0
TRAIN_SEED = 0  # SynthMusic(seed=0): the training clips
HELD_OUT_SEED = 1  # SynthMusic(seed=1): clips no model saw in training


@dataclasses.dataclass(frozen=True)
class SpectrogramScaling:
    """The fixed affine map between log-mel values (natural log) and the model's ``x``: ``x = (log_mel - center) / half_range``.

    With the defaults, ``log(1e-5) ≈ -11.51`` (the log-mel floor, silence) maps to -1.0 and ``+1.5``
    (about the loudest SynthMusic band) to +1.0.
    """

    center: float = -5.0
    half_range: float = 6.5
    log_floor: float = math.log(1e-5)

    def to_model(self, log_mel: Tensor) -> Tensor:
        """Log-mel (nats) → model units (about [-1, 1])."""
        return (log_mel - self.center) / self.half_range

    def to_log_mel(self, x: Tensor) -> Tensor:
        """Model units → log-mel (nats), clamped below at the log-mel floor (nothing is quieter than silence)."""
        return (x * self.half_range + self.center).clamp_min(self.log_floor)


class MelPatches:
    """Scaled log-mel patches of SynthMusic clips, ``(1, n_mels, frames)`` each, cut at random or fixed times.

    Args:
        n_clips: clips to synthesize (2 s each by default; about 12 ms per clip on one core).
        seed: the SynthMusic seed (0: training data, 1: held-out data).
        frames: patch length in frames (64 = 0.64 s).
        seconds: clip length.
        mel_config: the mel settings (the course's default: 16 kHz, hop 160, 64 bands).
        scaling: the log-mel ↔ model map.

    Attributes:
        log_mels: ``(n_clips, n_mels, clip_frames)`` log-mel spectrograms of the whole clips (nats).
    """

    def __init__(
        self,
        n_clips: int,
        seed: int = TRAIN_SEED,
        frames: int = PATCH_FRAMES,
        seconds: float = CLIP_SECONDS,
        mel_config: MelConfig | None = None,
        scaling: SpectrogramScaling | None = None,
    ) -> None:
        mel_config, scaling = mel_config or MelConfig(), scaling or SpectrogramScaling()
        self.mel_config, self.scaling, self.frames, self.seed = mel_config, scaling, frames, seed
        audio = SynthMusic(n_clips=n_clips, seconds=seconds, sample_rate=mel_config.sample_rate, seed=seed)
        self.log_mels = log_mel_spectrogram(audio.batch(n_clips).audio, mel_config)  # (N, M, F)
        if self.log_mels.shape[-1] < frames:
            raise ConfigError(
                f"Clips of {seconds} s have {self.log_mels.shape[-1]} frames, fewer than the {frames} a patch needs: "
                "use longer clips or shorter patches."
            )
        self._scaled = scaling.to_model(self.log_mels)  # (N, M, F)

    def __len__(self) -> int:
        return self.log_mels.shape[0]

    def random_batch(self, batch_size: int, generator: torch.Generator | None = None) -> Tensor:
        """``(batch_size, 1, n_mels, frames)`` patches in model units: random clips, random start frames."""
        return random_crops(self._scaled, batch_size, self.frames, generator).unsqueeze(1)  # (B, 1, M, frames)

    def fixed_batch(self, n: int | None = None) -> Tensor:
        """The first ``n`` clips (all by default), one patch each from the middle of the clip: ``(n, 1, M, frames)``."""
        n = len(self) if n is None else n
        start = (self._scaled.shape[-1] - self.frames) // 2
        return self._scaled[:n, None, :, start : start + self.frames].clone()  # (n, 1, M, frames)


def held_out_patches(n: int, frames: int = PATCH_FRAMES) -> MelPatches:
    """``n`` held-out clips (``SynthMusic(seed=1)``), the reference that generated samples are compared with."""
    return MelPatches(n, seed=HELD_OUT_SEED, frames=frames)


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


DIFFUSION_STAGES = ("teacher", "progressive", "consistency")  # the stages of train_spectrogram_ddpm
DIFFUSION_NEEDS = ("schedule", "num_timesteps", "prediction_type", "scaling", "mel_config", "patch_frames")


def read_metadata(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``(model config, training metadata)`` of a spectrogram UNet saved by ``train_spectrogram_ddpm``.

    Raises:
        CheckpointError: missing, cut-short or foreign file, or another model's weights (a VQ-VAE, or
            the latent diffusion UNet, whose config would not fit this pipeline).
    """
    header = read_weights_header(
        path,
        "UNet",
        stage=DIFFUSION_STAGES,
        needs=DIFFUSION_NEEDS,
        what="spectrogram diffusion UNet (course_lib.diffusion.train_spectrogram_ddpm)",
        fix=f"re-create it with `python -m course_lib.diffusion.train_spectrogram_ddpm --scale tiny --out {path}` "
        "(see README.md, 'Shipped checkpoints')",
    )
    return dict(header.config or {}), header.metadata


def load_pretrained_diffusion(path: str | Path, device: str | torch.device | None = None) -> PretrainedDiffusion:
    """Load any spectrogram UNet saved by :mod:`course_lib.diffusion.train_spectrogram_ddpm` (teacher or student).

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
    """
    return load_pretrained_diffusion(TINY_DDPM, device)


def load_tiny_distilled(device: str | torch.device | None = None) -> PretrainedDiffusion:
    """The teacher progressively distilled to 4 DDIM steps (``ddpm_tiny_distilled_4steps.safetensors``).

    Sample it with ``ddim_sample(..., num_steps=4, spacing="trailing")`` (the grid it was trained on).
    """
    return load_pretrained_diffusion(TINY_DISTILLED, device)


def load_tiny_consistency(device: str | torch.device | None = None) -> PretrainedDiffusion:
    """The teacher's consistency distillation (``ddpm_tiny_consistency.safetensors``), for ``consistency_sample``."""
    return load_pretrained_diffusion(TINY_CONSISTENCY, device)
