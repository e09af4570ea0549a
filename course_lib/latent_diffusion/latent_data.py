"""The latent-diffusion chapter's training data: clips encoded once into VAE posteriors, E^x and controls.

:func:`encode_clips` runs the frozen Mel VAE and joint embedding over the training clips once;
:class:`LatentData` then draws batches from them (a fresh posterior sample ``x0 = s · (μ + σ ε)`` each
time, AudioLDM's latents scaled by the latent scale factor), with Music ControlNet's randomly masked
control signals for the ControlNet (:func:`random_control_signal`).

Notebooks: notebooks/08_latent_diffusion.ipynb, 09_controlnet.ipynb.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor

from course_lib.audio import log_mel_spectrogram
from course_lib.data import ClipBatch
from course_lib.latent_diffusion.controlnet import CONTROL_ROWS, CONTROLS, control_signal, random_control_masks
from course_lib.latent_diffusion.mel_vae import MelVAE, pad_frames


@dataclasses.dataclass
class LatentData:
    """Training clips encoded once: VAE posteriors, audio embeddings E^x and controls (for the ControlNet)."""

    mean: Tensor  # (N, C, H, W) posterior means (VAE units)
    std: Tensor  # (N, C, H, W)
    cond: Tensor  # (N, D) E^x of each clip
    latent_scale: float
    controls: dict[str, Tensor] | None = None  # melody (N, 12, F), loudness_db (N, F), beats (N, F)

    def batch(self, batch_size: int, generator: torch.Generator, signal: bool = False) -> dict[str, Tensor]:
        """Random clips: ``x0`` = ``latent_scale · (μ + σ ε)`` (a fresh posterior sample), ``cond`` and (optionally) ``signal``."""
        index = torch.randint(self.mean.shape[0], (batch_size,), generator=generator)  # (B,)
        noise = torch.randn(self.mean[index].shape, generator=generator)  # (B, C, H, W)
        out = {"x0": (self.mean[index] + self.std[index] * noise) * self.latent_scale, "cond": self.cond[index]}
        if signal:
            frames = self.mean.shape[-1] * 4
            controls = {name: value[index] for name, value in self.controls.items()}
            out["signal"] = random_control_signal(controls, frames, generator)  # (B, 17, frames)
        return out


def encode_clips(
    clips: ClipBatch, vae: MelVAE, embedding: Any, frame_multiple: int, device: torch.device, controls: bool = False
) -> LatentData:
    """VAE posteriors (frames padded with silence to ``frame_multiple``), E^x and optionally the clips' controls.

    Notebooks: notebooks/08_latent_diffusion.ipynb, 09_controlnet.ipynb
    """
    log_mel = log_mel_spectrogram(clips.audio)  # (N, M, F)
    x = pad_frames(vae.scaling.to_model(log_mel).unsqueeze(1), frame_multiple)  # (N, 1, M, F')
    means, stds = [], []
    with torch.no_grad():
        for chunk in x.split(64):
            posterior = vae.encode(chunk.to(device))
            means.append(posterior.mean.cpu())
            stds.append(posterior.std.cpu())
        cond = embedding.embed_audio(clips.audio.to(device)).cpu()  # (N, D)  E^x
    stacked = None
    if controls:
        c = clips.controls
        stacked = {"melody": c["melody"], "loudness_db": c["loudness_db"], "beats": c["beats"]}
    return LatentData(torch.cat(means), torch.cat(stds), cond, float(vae.latent_scale), stacked)


def random_control_signal(controls: dict[str, Tensor], frames: int, generator: torch.Generator) -> Tensor:
    """:func:`control_signal` with Music ControlNet's training masks: random controls, random time spans, per sample."""
    use, time_mask = random_control_masks(controls["melody"].shape[0], controls["melody"].shape[-1], generator)
    full = control_signal(controls, CONTROLS, time_mask)  # (B, 17, F)
    keep = torch.tensor([[name in chosen for name in CONTROLS] for chosen in use], dtype=full.dtype)  # (B, 3)
    rows = torch.cat([keep[:, i : i + 1].expand(-1, CONTROL_ROWS[name]) for i, name in enumerate(CONTROLS)] + [keep], 1)
    return pad_frames(full * rows[:, :, None], frames, value=0.0)[..., :frames]  # (B, 17, frames)
