"""The melody control of Music ControlNet (Wu et al. 2023): the strongest pitch class above middle C.

Recipe: high-pass the audio at about 261 Hz (middle C) so bass and chords drop out, compute a
chromagram (every STFT bin adds its power to the pitch class nearest its frequency), keep the
argmax per frame as a one-hot ``12 × F`` matrix. The high-pass is done in the STFT: bins below the
cutoff get no weight in the chroma filterbank (an ideal high-pass, with no filter transient).

Rows are pitch classes, 0 = C … 11 = B (MIDI pitch % 12).

Notebook: notebooks/00_audio_and_data.ipynb (chroma of SynthMusic), notebooks/09_controlnet.ipynb.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from course_lib.control.dynamics import HOP_LENGTH, prepare_audio

MIDDLE_C_HZ = 261.63  # the high-pass cutoff of the paper's melody control
WINDOW_SECONDS = 0.128  # 2,048 samples at 16 kHz: bins 7.8 Hz apart, finer than a semitone at 261 Hz


def default_n_fft(sample_rate: int) -> int:
    """The power of two at or above ``WINDOW_SECONDS`` of audio (2,048 at 16 kHz, 4,096 at 22.05 kHz)."""
    return 2 ** math.ceil(math.log2(WINDOW_SECONDS * sample_rate))


def chroma_filterbank(sample_rate: int, n_fft: int, cutoff_hz: float = MIDDLE_C_HZ) -> torch.Tensor:
    """``(12, n_fft // 2 + 1)`` 0/1 matrix: bin k counts for the pitch class nearest its frequency.

    Bins below ``cutoff_hz`` (and the DC bin) count for none: this is the high-pass.
    """
    return _chroma_filterbank(int(sample_rate), int(n_fft), float(cutoff_hz)).clone()


@functools.lru_cache(maxsize=16)
def _chroma_filterbank(sample_rate: int, n_fft: int, cutoff_hz: float) -> torch.Tensor:
    frequencies = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * sample_rate / n_fft  # (K,)
    keep = frequencies >= max(cutoff_hz, 1e-3)  # (K,)
    midi = 69.0 + 12.0 * torch.log2(frequencies.clamp_min(1e-3) / 440.0)  # (K,)
    pitch_class = torch.round(midi).long() % 12  # (K,)
    bank = F.one_hot(pitch_class, 12).T.float() * keep.float()  # (12, K)
    return bank


def chromagram(
    audio: torch.Tensor,
    sample_rate: int,
    hop_length: int = HOP_LENGTH,
    n_fft: int | None = None,
    cutoff_hz: float = MIDDLE_C_HZ,
) -> torch.Tensor:
    """Power chromagram of the audio above ``cutoff_hz``.

    Args:
        audio: ``(T,)`` or ``(..., T)``.
        sample_rate: in Hz.
        hop_length: samples between frames.
        n_fft: STFT size; by default :func:`default_n_fft` (about 128 ms).
        cutoff_hz: the high-pass frequency (middle C in the paper).

    Returns:
        ``(..., 12, F)`` summed power per pitch class, ``F = T // hop_length + 1``.
    """
    flat = prepare_audio(audio, sample_rate, hop_length)  # (N, T)
    n_fft = n_fft or default_n_fft(sample_rate)
    window = torch.hann_window(n_fft, device=flat.device, dtype=flat.dtype)
    spec = torch.stft(flat, n_fft, hop_length, window=window, center=True, pad_mode="constant", return_complex=True)
    power = spec.real.square() + spec.imag.square()  # (N, K, F); faster than abs() ** 2 on CPU
    bank = _chroma_filterbank(int(sample_rate), int(n_fft), float(cutoff_hz)).to(power)  # (12, K), read-only
    chroma = bank @ power  # (N, 12, F)
    return chroma.reshape(*audio.shape[:-1], 12, chroma.shape[-1])


def melody_chroma(
    audio: torch.Tensor,
    sample_rate: int,
    hop_length: int = HOP_LENGTH,
    n_fft: int | None = None,
    cutoff_hz: float = MIDDLE_C_HZ,
) -> torch.Tensor:
    """The melody control: one-hot of the strongest pitch class per frame (Music ControlNet).

    Frames with no energy above the cutoff (digital silence) get an all-zero column instead of a
    made-up "C". Arguments as :func:`chromagram`.

    Returns:
        ``(..., 12, F)`` float one-hot; ``.argmax(-2)`` gives the pitch class per frame.

    Notebook: notebooks/09_controlnet.ipynb
    """
    chroma = chromagram(audio, sample_rate, hop_length, n_fft, cutoff_hz)  # (..., 12, F)
    one_hot = F.one_hot(chroma.argmax(-2), 12).movedim(-1, -2).to(chroma.dtype)  # (..., 12, F)
    sounding = chroma.sum(-2, keepdim=True) > 1e-10  # (..., 1, F)
    return one_hot * sounding
