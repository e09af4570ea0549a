"""A time-step scrubber over a diffusion trajectory: the spectrogram and the sound at each step.

Give it the log-mel spectrograms of one trajectory — the reverse process x_T → x_0 of a sampler
(``ddim_sample(..., return_trajectory=True)``) or the forward process x_0 → x_T
(``NoiseSchedule.q_sample`` at growing t) — and the diffusion time t of each; the slider walks
through them, showing the spectrogram and playing it (Griffin-Lim, :func:`course_lib.audio.log_mel_to_audio`,
computed when a step is first shown and kept).

Notebook: notebooks/07_ddpm.ipynb.
"""

from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch

from course_lib.audio import MelConfig, log_mel_to_audio
from course_lib.errors import ConfigError
from course_lib.viz import plot_spectrogram
from course_lib.widgets.panel import Panel


def diffusion_scrubber(
    log_mels: torch.Tensor,
    timesteps: Sequence[int],
    mel_config: MelConfig | None = None,
    title: str = "reverse process",
    start: int | None = None,
    audio_iterations: int = 32,
) -> Panel:
    """A slider over the ``S`` steps of a trajectory.

    Args:
        log_mels: ``(S, n_mels, frames)`` natural-log mel spectrograms, in the order to scrub through.
        timesteps: the diffusion time t of each of the ``S`` spectrograms.
        mel_config: the mel settings of the spectrograms (default ``MelConfig()``, the course's).
        start: the step shown first (default the last: x_0 for a reverse trajectory).
        audio_iterations: Griffin-Lim iterations for each step's audio.

    Notebook: notebooks/07_ddpm.ipynb
    """
    if log_mels.ndim != 3 or len(timesteps) != log_mels.shape[0]:
        raise ConfigError(
            f"diffusion_scrubber needs log_mels (S, n_mels, frames) and S timesteps, got {tuple(log_mels.shape)} "
            f"and {len(timesteps)}: squeeze the channel of (S, 1, M, N) with .squeeze(1)."
        )
    mel_config = mel_config or MelConfig()
    log_mels = log_mels.detach().float().cpu()
    last = log_mels.shape[0] - 1
    slider = widgets.IntSlider(
        value=last if start is None else start, min=0, max=last, description="step", continuous_update=False
    )
    low, high = log_mels[-1].min().item(), log_mels[-1].max().item()  # one colour scale for every step
    sounds: dict[int, torch.Tensor] = {}

    def draw():
        i = slider.value
        if i not in sounds:
            length = (log_mels.shape[-1] - 1) * mel_config.hop_length
            sounds[i] = log_mel_to_audio(log_mels[i], mel_config, n_iter=audio_iterations, length=length)
        figure, ax = plt.subplots(figsize=(6, 2.6))
        _ = plot_spectrogram(log_mels[i].clamp(low, high), mel_config.sample_rate, mel_config.hop_length, ax=ax,
                             frequency_scale="mel", f_max=mel_config.f_max, title=f"{title}: step {i} of {last}, t = {timesteps[i]}")  # fmt: skip
        readout = f"{title}: step {i} of {last}, diffusion time t = {timesteps[i]}"
        return readout, figure, {f"t = {timesteps[i]}": sounds[i]}, mel_config.sample_rate

    return Panel([slider], draw)
