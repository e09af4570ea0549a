"""How close generated spectrograms are to real ones: the Fréchet mel distance (FMD).

The Fréchet audio distance (FAD, Kilgour et al. 2019) fits a Gaussian to embeddings of real audio and
one to embeddings of generated audio and measures the Fréchet (2-Wasserstein) distance between the
two Gaussians (Dowson & Landau 1982)::

    FD = ‖μ_r - μ_g‖² + Tr(Σ_r + Σ_g - 2 (Σ_r Σ_g)^{1/2})

(:func:`course_lib.metrics.frechet.frechet_distance`, the one implementation of the course).

The course's generated objects are log-mel patches, so the embedding here is the simplest possible one:
**each frame's 64 log-mel values** (natural log of the mel magnitude, in nats, the units of
:func:`course_lib.audio.log_mel_spectrogram`). A frame of a patch is one 64-dimensional point; all the
frames of all the patches of a set are fitted with one Gaussian. The mean μ says how loud each mel band
is on average, the covariance Σ how bands vary and move together (harmonics of one note rise and fall
together, a drum hit lights up all bands at once). The FMD is 0 for identical statistics, in nats².

What it does not see: anything about the order of frames (rhythm, note lengths) beyond what one
frame holds. And like every Fréchet distance it is **biased upwards for small sets**: two sets drawn
from the same distribution have FMD > 0, and the smaller the sets the larger it is (the covariance
estimate is noisy). Compare scores only at the same number of patches, and compare with the floor:
the FMD between two disjoint sets of real data of that size (:func:`frechet_mel_distance` of two
held-out sets).

Notebook: notebooks/10_fast_sampling.ipynb (and 07_ddpm.ipynb, benchmarks/bench_diffusion_quality.py).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from course_lib.errors import ConfigError
from course_lib.metrics.frechet import frechet_distance


def frame_statistics(log_mel: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(M,)`` and covariance ``(M, M)`` (float64) of the frames of log-mel spectrograms ``(..., M, frames)``.

    A ``(B, 1, M, F)`` batch is fine too: every frame of every spectrogram is one sample.
    """
    frames = torch.as_tensor(log_mel).detach().to("cpu", torch.float64)
    frames = frames.reshape(-1, *frames.shape[-2:]).transpose(1, 2).reshape(-1, frames.shape[-2])  # (B·F, M)
    if frames.shape[0] < 2:
        raise ConfigError("frame_statistics needs at least two frames.")
    values = frames.numpy()
    return values.mean(axis=0), np.cov(values, rowvar=False)


def frechet_mel_distance(generated_log_mel: Tensor, reference_log_mel: Tensor) -> float:
    """FMD between two sets of log-mel spectrograms ``(..., M, frames)`` in nats (see the module docstring)."""
    return frechet_distance(*frame_statistics(generated_log_mel), *frame_statistics(reference_log_mel))
