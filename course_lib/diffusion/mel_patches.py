"""The spectrogram diffusion chapter's data: scaled log-mel patches of SynthMusic clips.

A diffusion model wants data of roughly unit scale: the forward process ends at ``N(0, I)``, so the
clean data should not be much larger or much smaller than that. A log-mel spectrogram
(:func:`course_lib.audio.log_mel_spectrogram`, natural log of the mel magnitude with a floor of 1e-5)
lies between ``log(1e-5) ≈ -11.5`` (silence) and about ``+1.5`` (the loudest SynthMusic bands), so
the course maps it to about ``[-1, 1]`` with one fixed affine map (:class:`SpectrogramScaling`)::

    x = (log_mel + 5.0) / 6.5          log_mel = 6.5 · x - 5.0

Silence lands at -1.0, the loudest bins near +1.0, and the data's standard deviation is about 0.5
(the σ_data that consistency models assume). The map is fixed, not fitted, so it is the same at
every scale and for every data set, and a generated ``x`` can always be turned back into sound. The
latent-diffusion chapter's Mel VAE reads the same scaled spectrograms.

The model sees **patches** of 64 mel bands × 64 frames (0.64 s at 100 frames/s) cut at random times
from 2-second SynthMusic clips (:class:`MelPatches`). Training uses ``SynthMusic(seed=0)``; the
held-out data the notebooks and benchmarks compare samples with is ``SynthMusic(seed=1)``
(:func:`held_out_patches`), never seen in training.

Notebooks: notebooks/07_ddpm.ipynb, 08_latent_diffusion.ipynb, 10_fast_sampling.ipynb.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor

from course_lib.audio import MelConfig, log_mel_spectrogram
from course_lib.data import SynthMusic
from course_lib.data.batches import random_crops
from course_lib.data.splits import CLIP_SECONDS, HELD_OUT_SEED, TRAINING_SEED
from course_lib.errors import ConfigError

PATCH_FRAMES = 64  # 0.64 s at 100 frames/s


@dataclasses.dataclass(frozen=True)
class SpectrogramScaling:
    """The fixed affine map between log-mel values (natural log) and the model's ``x``: ``x = (log_mel - center) / half_range``.

    With the defaults, ``log(1e-5) ≈ -11.51`` (the log-mel floor, silence) maps to -1.0 and ``+1.5``
    (about the loudest SynthMusic band) to +1.0.

    Notebook: notebooks/08_latent_diffusion.ipynb
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

    Notebooks: notebooks/07_ddpm.ipynb, 10_fast_sampling.ipynb
    """

    def __init__(
        self,
        n_clips: int,
        seed: int = TRAINING_SEED,
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
    """``n`` held-out clips (``SynthMusic(seed=1)``), the reference that generated samples are compared with.

    Notebooks: notebooks/07_ddpm.ipynb, 10_fast_sampling.ipynb
    """
    return MelPatches(n, seed=HELD_OUT_SEED, frames=frames)
