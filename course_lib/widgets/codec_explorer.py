"""The codec's bitrate slider: decode one clip with 1 … N_q residual quantizers and listen.

A residual VQ codec (SoundStream, Zeghidour et al. 2021) describes each frame coarse to fine: level 1
quantizes the encoder's output, each next level the residual the levels before it left. Decoding
with the first n_q levels only is decoding at a lower bitrate, ``frame_rate × n_q × log2 K`` bits per
second, from the same codes. The slider re-decodes the clip with n_q levels, shows the bitrate, the
multi-scale mel distance to the original (:func:`course_lib.metrics.multi_scale_mel_distance`) and the
two spectrograms, and plays both.

Notebook: notebooks/04_neural_codec.ipynb.
"""

from __future__ import annotations

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch
from torch import nn

from course_lib.audio import MelConfig, log_mel_spectrogram
from course_lib.metrics.reconstruction import multi_scale_mel_distance
from course_lib.viz import plot_spectrogram
from course_lib.widgets.panel import Panel


def codec_explorer(codec: nn.Module, audio: torch.Tensor, start: int | None = None) -> Panel:
    """A slider over the number of quantizers for one ``(T,)`` clip at ``codec.sample_rate``.

    Args:
        codec: a :class:`course_lib.codec.Codec` (``encode``, ``decode``, ``bitrate``, ``n_q``).
        start: the number of levels shown first (default all).

    Notebook: notebooks/04_neural_codec.ipynb
    """
    clip = audio.detach().float().reshape(-1).cpu()  # (T,)
    parameter = next(codec.parameters())
    codes = codec.encode(clip[None].to(parameter.device))  # (1, N_q, frames), once: every n_q is a prefix
    mel_config = MelConfig(sample_rate=codec.sample_rate)
    original = log_mel_spectrogram(clip, mel_config)  # (M, N)
    slider = widgets.IntSlider(value=start or codec.n_q, min=1, max=codec.n_q, description="quantizers",
                               continuous_update=False)  # fmt: skip
    decoded: dict[int, torch.Tensor] = {}

    def draw():
        n_q = slider.value
        if n_q not in decoded:
            decoded[n_q] = codec.decode(codes[:, :n_q], length=clip.shape[-1])[0].cpu()  # (T,)
        distance = multi_scale_mel_distance(clip[None], decoded[n_q][None]).item()
        figure, axes = plt.subplots(1, 2, figsize=(9, 2.4), sharey=True)
        for ax, spectrogram, title in (
            (axes[0], original, "original"),
            (axes[1], log_mel_spectrogram(decoded[n_q], mel_config), f"{n_q} quantizers"),
        ):
            _ = plot_spectrogram(spectrogram, mel_config.sample_rate, mel_config.hop_length, ax=ax,
                                 frequency_scale="mel", f_max=mel_config.f_max, title=title)  # fmt: skip
        axes[1].set_ylabel("")
        figure.tight_layout()
        readout = (
            f"{n_q} of {codec.n_q} quantizers → bitrate {codec.bitrate(n_q) / 1000:.1f} kbps; "
            f"multi-scale mel distance to the original {distance:.2f}"
        )
        return (
            readout,
            figure,
            {"original": clip, f"{codec.bitrate(n_q) / 1000:.1f} kbps": decoded[n_q]},
            codec.sample_rate,
        )

    return Panel([slider], draw)
