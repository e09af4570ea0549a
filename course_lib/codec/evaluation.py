"""How well a codec rebuilds held-out audio at each bitrate: multi-scale mel distance and SI-SDR per number of RVQ levels.

Notebook: notebooks/04_neural_codec.ipynb.
"""

from __future__ import annotations

import torch
from torch import Tensor

from course_lib.codec.model import Codec
from course_lib.metrics.reconstruction import multi_scale_mel_distance, si_sdr_db

EVAL_N_Q = (1, 2, 3, 4, 6, 8, 12)  # 0.5 ... 6 kbps


@torch.no_grad()
def evaluate(codec: Codec, audio: Tensor, n_qs: tuple[int, ...] = EVAL_N_Q) -> dict[int, dict[str, float]]:
    """Held-out figures per number of levels: ``{n_q: {"kbps", "mel_distance", "si_sdr_db"}}`` (means over clips).

    Notebook: notebooks/04_neural_codec.ipynb
    """
    codec.eval()
    device = next(codec.parameters()).device
    audio = audio.to(device)
    codes = codec.encode(audio)  # (B, N_q, frames): a prefix of the levels is the lower bitrate
    figures = {}
    for n_q in n_qs:
        rebuilt = codec.decode(codes[:, :n_q], length=audio.shape[-1])  # (B, T)
        figures[n_q] = {
            "kbps": codec.bitrate(n_q) / 1000,
            "mel_distance": multi_scale_mel_distance(audio, rebuilt, codec.sample_rate).mean().item(),
            "si_sdr_db": si_sdr_db(audio, rebuilt).mean().item(),
        }
    return figures
