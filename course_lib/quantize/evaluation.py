"""How well a VQ-VAE (or each level of Jukebox's hierarchy) rebuilds held-out audio.

Notebooks: notebooks/02_vq_vae.ipynb, 03_hierarchical_vqvae.ipynb.
"""

from __future__ import annotations

import torch
from torch import Tensor

from course_lib.metrics.reconstruction import log_mel_distance_db, snr_db, spectral_convergence_db
from course_lib.quantize.hierarchical_vq_vae import HierarchicalVQVAE
from course_lib.quantize.vq_vae import VQVAE


def reconstruction_by_level(model: VQVAE | HierarchicalVQVAE, audio: Tensor) -> dict[str, list[float]]:
    """Held-out reconstruction figures per level (one level for a plain VQ-VAE), bottom first.

    Returns lists (one entry per level) of waveform SNR (dB), spectral convergence (dB, Jukebox's
    reconstruction metric, table 4 of Dhariwal et al. 2020), log-mel distance (dB, notebook 01's) and the
    number of codes used.

    Notebooks: notebooks/02_vq_vae.ipynb, 03_hierarchical_vqvae.ipynb.
    """
    levels = model.levels if isinstance(model, HierarchicalVQVAE) else [model]
    result: dict[str, list[float]] = {"snr_db": [], "spectral_convergence_db": [], "log_mel_db": [], "codes_used": []}
    with torch.no_grad():
        for level in levels:
            level.eval()
            codes = level.encode(audio)  # (B, N)
            rebuilt = level.decode(codes)[:, 0, : audio.shape[-1]]  # (B, T)
            result["snr_db"].append(snr_db(audio, rebuilt))
            result["spectral_convergence_db"].append(spectral_convergence_db(audio, rebuilt).mean().item())
            result["log_mel_db"].append(log_mel_distance_db(audio, rebuilt))
            result["codes_used"].append(codes.unique().numel())
    return result
