"""The dynamics control of Music ControlNet (Wu et al. 2023): frame energy in dB, smoothed over ~1 s.

This module also fixes the frame grid that all three controls share: frame ``f`` is centred on
sample ``f · hop_length`` and a clip of ``T`` samples has ``T // hop_length + 1`` frames, the same
grid as ``torch.stft(center=True)`` and the course's mel spectrograms (hop 160 at 16 kHz, 100
frames/s), so a control lines up with the spectrogram a model generates.

Notebook: notebooks/00_audio_and_data.ipynb (loudness of the SynthMusic clips),
notebooks/09_controlnet.ipynb (the dynamics control).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from scipy.signal import savgol_coeffs

from course_lib.audio.io import check_audio
from course_lib.errors import ConfigError

HOP_LENGTH = 160  # 100 frames/s at 16 kHz, as the course's mel spectrograms (AudioLDM's settings)
SILENCE_DB = -100.0  # floor of the dB scale: an RMS of 1e-5


def num_frames(num_samples: int, hop_length: int = HOP_LENGTH) -> int:
    """Frames of a ``num_samples``-long signal on the controls' grid: ``num_samples // hop_length + 1``."""
    return num_samples // hop_length + 1


def prepare_audio(audio: torch.Tensor, sample_rate: int, hop_length: int) -> torch.Tensor:
    """Check a control's arguments and flatten ``(..., T)`` audio to ``(N, T)`` float.

    Raises:
        AudioInputError: for a non-tensor, an empty tensor, or NaN/Inf samples.
        ConfigError: for a sample rate or hop length that is not a positive integer.
    """
    check_audio(audio)
    if not sample_rate or sample_rate <= 0:
        raise ConfigError(f"sample_rate must be a positive number of Hz, got {sample_rate!r}: pass e.g. 16000.")
    if not isinstance(hop_length, int) or hop_length <= 0:
        raise ConfigError(f"hop_length must be a positive int, got {hop_length!r}: the course uses {HOP_LENGTH}.")
    audio = audio if audio.is_floating_point() else audio.float()
    return audio.reshape(-1, audio.shape[-1])  # (N, T)


def frame_energy_db(
    audio: torch.Tensor, sample_rate: int, hop_length: int = HOP_LENGTH, frame_length: int = 1024
) -> torch.Tensor:
    """RMS of each frame in dB (rectangular frames of ``frame_length`` centred on the grid).

    Args:
        audio: ``(T,)`` or ``(..., T)``.
        sample_rate: in Hz (checked only; the grid is in samples).
        hop_length: samples between frames.
        frame_length: samples per frame (even).

    Returns:
        ``(..., F)`` with ``F = T // hop_length + 1``, floored at ``SILENCE_DB``.
    """
    flat = prepare_audio(audio, sample_rate, hop_length)  # (N, T)
    half = frame_length // 2
    padded = F.pad(flat.double() ** 2, (half, half))  # (N, T + 2·half)
    cumulative = F.pad(padded.cumsum(-1), (1, 0))  # (N, T + 2·half + 1): running sums give O(T) frames
    starts = torch.arange(num_frames(flat.shape[-1], hop_length), device=flat.device) * hop_length  # (F,)
    energy = (cumulative[:, starts + 2 * half] - cumulative[:, starts]) / (2 * half)  # (N, F) mean square
    db = 10.0 * torch.log10(energy.clamp_min(10.0 ** (SILENCE_DB / 10.0)))  # (N, F)
    return db.to(flat.dtype).reshape(*audio.shape[:-1], -1)


def loudness_db(
    audio: torch.Tensor,
    sample_rate: int,
    hop_length: int = HOP_LENGTH,
    smooth_seconds: float = 1.0,
    frame_length: int = 1024,
    polyorder: int = 2,
) -> torch.Tensor:
    """The dynamics control: frame energy in dB smoothed by a Savitzky–Golay filter (Music ControlNet).

    The filter fits a degree-``polyorder`` polynomial in a sliding window of about ``smooth_seconds``,
    so the curve follows crescendos but not single notes. Edges are padded by repeating the end values.

    Args:
        audio: ``(T,)`` or ``(..., T)``.
        sample_rate: in Hz.
        hop_length: samples between frames.
        smooth_seconds: length of the smoothing window; 0 turns smoothing off.
        frame_length: samples per energy frame.
        polyorder: degree of the Savitzky–Golay polynomial.

    Returns:
        ``(..., F)`` loudness in dB, ``F = T // hop_length + 1``.
    """
    if smooth_seconds < 0:
        raise ConfigError(f"smooth_seconds must be ≥ 0, got {smooth_seconds}: use 1.0 (the paper) or 0 (no smoothing).")
    db = frame_energy_db(audio, sample_rate, hop_length, frame_length)  # (..., F)
    window = 2 * math.floor(smooth_seconds * sample_rate / hop_length / 2) + 1  # odd number of frames
    if window <= polyorder + 1:
        return db
    flat = db.reshape(-1, 1, db.shape[-1])  # (N, 1, F)
    kernel = _savgol_kernel(window, polyorder).to(flat)  # (1, 1, window)
    padded = F.pad(flat, (window // 2, window // 2), mode="replicate")  # (N, 1, F + window − 1)
    return F.conv1d(padded, kernel).reshape(db.shape)  # (..., F)


@functools.lru_cache(maxsize=8)
def _savgol_kernel(window: int, polyorder: int) -> torch.Tensor:
    # savgol_coeffs gives the taps for convolution; conv1d correlates, so flip them (symmetric anyway).
    return torch.from_numpy(savgol_coeffs(window, polyorder)[::-1].copy()).float().view(1, 1, -1)
