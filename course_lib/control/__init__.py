"""Time-varying controls computed from audio, as in Music ControlNet (Wu et al. 2023).

- melody: one-hot of the strongest pitch class above middle C per frame (``melody.py``)
- dynamics: frame energy in dB smoothed over ~1 s (``dynamics.py``)
- rhythm: onset strength, onset times, tempo and beats (``rhythm.py``)

All work on ``(T,)`` or batched ``(..., T)`` tensors on their own device, and share one frame grid:
``T // hop_length + 1`` frames centred on multiples of ``hop_length`` (100 frames/s at 16 kHz).

Chapter 09 (Music ControlNet) has three levels, in three packages on purpose: these controls are
features the data sets compute (SynthMusic imports them, so they cannot depend on diffusion), the
ControlNet that follows them is a model over the latent UNet (:mod:`course_lib.latent_diffusion.controlnet`),
and how well a generation follows them is a measure (:mod:`course_lib.metrics.control_adherence`).

Notebook: notebooks/00_audio_and_data.ipynb, notebooks/09_controlnet.ipynb.
"""

from __future__ import annotations

import torch

from course_lib.control.dynamics import HOP_LENGTH, frame_energy_db, loudness_db, num_frames
from course_lib.control.melody import chroma_filterbank, chromagram, melody_chroma
from course_lib.control.rhythm import (
    beat_activation,
    beat_times,
    detect_onsets,
    estimate_tempo,
    mask_to_times,
    onset_strength,
    peak_pick,
    track_beats,
)


def all_controls(
    audio: torch.Tensor,
    sample_rate: int,
    hop_length: int = HOP_LENGTH,
    tempo: float | torch.Tensor | None = None,
) -> dict[str, torch.Tensor | list[torch.Tensor]]:
    """Every control of one clip or a batch, with the onset strength computed once.

    Args:
        audio: ``(T,)`` or ``(B, T)``.
        sample_rate: in Hz.
        hop_length: samples between frames.
        tempo: BPM if known (a number or ``(B,)``); estimated from the audio otherwise.

    Returns:
        ``melody`` (…, 12, F) one-hot, ``loudness_db`` (…, F), ``onset_strength`` (…, F),
        ``onsets`` (…, F) 0/1 at detected onsets, ``beats`` (…, F) 0/1 at beats, and ``beat_times``
        in seconds (a tensor for one clip, a list of tensors for a batch).

    Notebook: notebooks/09_controlnet.ipynb
    """
    frame_rate = sample_rate / hop_length
    envelope = onset_strength(audio, sample_rate, hop_length)  # (..., F)
    if tempo is None:
        tempo = estimate_tempo(envelope, frame_rate)
    beats = track_beats(envelope, frame_rate, tempo)  # (..., F) bool
    return {
        "melody": melody_chroma(audio, sample_rate, hop_length),
        "loudness_db": loudness_db(audio, sample_rate, hop_length),
        "onset_strength": envelope,
        "onsets": peak_pick(envelope, frame_rate).to(envelope.dtype),
        "beats": beats.to(envelope.dtype),
        "beat_times": mask_to_times(beats, frame_rate),
    }


__all__ = [
    "HOP_LENGTH",
    "all_controls",
    "beat_activation",
    "beat_times",
    "chroma_filterbank",
    "chromagram",
    "detect_onsets",
    "estimate_tempo",
    "frame_energy_db",
    "loudness_db",
    "mask_to_times",
    "melody_chroma",
    "num_frames",
    "onset_strength",
    "peak_pick",
    "track_beats",
]
