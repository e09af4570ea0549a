"""The rhythm control: onset strength (spectral flux), onset times, tempo and beat positions.

Music ControlNet (Wu et al. 2023) conditions on beat and downbeat activations from a neural beat
tracker; the course uses the classical pipeline instead, which needs no model: spectral flux
(Bello et al. 2005) → peak picking → tempo by autocorrelation → a beat grid placed where the onset
strength is highest (a one-tempo version of dynamic-programming beat tracking, Ellis 2007). When the
tempo is known (SynthMusic clips), only the phase of the grid is searched. Downbeats are left out.

Notebook: notebooks/00_audio_and_data.ipynb (onsets of SynthMusic), notebooks/09_controlnet.ipynb.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from course_lib.control.dynamics import HOP_LENGTH, prepare_audio
from course_lib.errors import ConfigError

ONSET_WINDOW_SECONDS = 0.032  # 512 samples at 16 kHz: short, so onsets are sharp in time


def onset_strength(
    audio: torch.Tensor,
    sample_rate: int,
    hop_length: int = HOP_LENGTH,
    n_fft: int | None = None,
    compression: float = 100.0,
) -> torch.Tensor:
    """Spectral flux: how much the log-compressed magnitude rises from one frame to the next.

    ``flux[f] = mean_k max(0, log(1 + γ|X[k, f]|) − log(1 + γ|X[k, f−1]|))`` with γ = ``compression``;
    frame 0 is compared with silence, so a note at t = 0 counts as an onset.

    Args:
        audio: ``(T,)`` or ``(..., T)``.
        sample_rate: in Hz.
        hop_length: samples between frames.
        n_fft: STFT size; by default the power of two nearest 32 ms.
        compression: γ of the log compression (larger hears soft onsets better).

    Returns:
        ``(..., F)`` non-negative onset strength, ``F = T // hop_length + 1``.
    """
    flat = prepare_audio(audio, sample_rate, hop_length)  # (N, T)
    n_fft = n_fft or 2 ** round(math.log2(ONSET_WINDOW_SECONDS * sample_rate))
    window = torch.hann_window(n_fft, device=flat.device, dtype=flat.dtype)
    spec = torch.stft(flat, n_fft, hop_length, window=window, center=True, pad_mode="constant", return_complex=True)
    magnitude = (spec.real.square() + spec.imag.square()).sqrt()  # (N, K, F); faster than abs() on CPU
    log_magnitude = torch.log1p(compression * magnitude)  # (N, K, F)
    rise = torch.diff(log_magnitude, dim=-1, prepend=torch.zeros_like(log_magnitude[..., :1]))  # (N, K, F)
    flux = rise.clamp_min(0).mean(-2)  # (N, F)
    return flux.reshape(*audio.shape[:-1], -1)


def peak_pick(
    envelope: torch.Tensor,
    frame_rate: float,
    wait_seconds: float = 0.03,
    mean_seconds: float = 0.1,
    delta: float = 0.05,
    relative_threshold: float = 0.05,
) -> torch.Tensor:
    """Frames that are onsets: local maxima, above the local mean, and not too small.

    A frame is kept when it is the maximum within ±``wait_seconds``, exceeds the mean within
    ±``mean_seconds`` by ``delta`` times the envelope's maximum, and reaches ``relative_threshold``
    of that maximum.

    Args:
        envelope: ``(..., F)`` onset strength.
        frame_rate: frames per second (``sample_rate / hop_length``).

    Returns:
        ``(..., F)`` bool mask.
    """
    flat = envelope.reshape(-1, 1, envelope.shape[-1])  # (N, 1, F)
    wait = max(1, round(wait_seconds * frame_rate))
    around = max(1, round(mean_seconds * frame_rate))
    local_max = F.max_pool1d(flat, 2 * wait + 1, stride=1, padding=wait)  # (N, 1, F)
    local_mean = F.avg_pool1d(flat, 2 * around + 1, stride=1, padding=around, count_include_pad=False)
    peak = flat.amax(-1, keepdim=True)  # (N, 1, 1)
    mask = (flat >= local_max) & (flat > local_mean + delta * peak) & (flat >= relative_threshold * peak)
    return (mask & (flat > 0)).reshape(envelope.shape)


def mask_to_times(mask: torch.Tensor, frame_rate: float) -> torch.Tensor | list[torch.Tensor]:
    """Times in seconds of the true frames: a tensor for ``(F,)``, a list of tensors for ``(N, F)``."""
    if mask.dim() == 1:
        return torch.nonzero(mask).flatten().float() / frame_rate
    return [mask_to_times(row, frame_rate) for row in mask.reshape(-1, mask.shape[-1])]


def detect_onsets(
    audio: torch.Tensor, sample_rate: int, hop_length: int = HOP_LENGTH, **peak_options: float
) -> torch.Tensor | list[torch.Tensor]:
    """Onset times in seconds: :func:`onset_strength` then :func:`peak_pick` (options passed on).

    Returns:
        A 1-D tensor of times for ``(T,)`` audio; a list of them (one per row) for ``(N, T)`` audio.

    Notebook: notebooks/00_audio_and_data.ipynb
    """
    frame_rate = sample_rate / hop_length
    mask = peak_pick(onset_strength(audio, sample_rate, hop_length), frame_rate, **peak_options)  # (..., F)
    return mask_to_times(mask, frame_rate)


def estimate_tempo(
    envelope: torch.Tensor, frame_rate: float, min_bpm: float = 60.0, max_bpm: float = 180.0, prior_bpm: float = 120.0
) -> torch.Tensor:
    """Tempo from the autocorrelation of the onset strength, weighted by a log-normal prior.

    The prior (one octave wide, centred on ``prior_bpm``) settles the usual ambiguity between a
    tempo and its double or half, as librosa's ``beat.tempo`` does.

    Returns:
        ``(...,)`` tempo in BPM.
    """
    flat = envelope.reshape(-1, envelope.shape[-1])  # (N, F)
    centred = flat - flat.mean(-1, keepdim=True)
    n = 2 ** math.ceil(math.log2(2 * flat.shape[-1]))
    spectrum = torch.fft.rfft(centred, n)
    autocorrelation = torch.fft.irfft(spectrum.abs() ** 2, n)[:, : flat.shape[-1]]  # (N, F)
    lags = torch.arange(flat.shape[-1], device=flat.device, dtype=flat.dtype)  # (F,)
    bpm = 60.0 * frame_rate / lags.clamp_min(1)  # (F,)
    weight = torch.exp(-0.5 * torch.log2(bpm / prior_bpm) ** 2) * ((bpm >= min_bpm) & (bpm <= max_bpm))  # (F,)
    if not weight.any():
        raise ConfigError(
            f"the clip is too short to measure a tempo between {min_bpm} and {max_bpm} BPM: "
            "pass the tempo, or give at least two beats of audio."
        )
    best_lag = (autocorrelation * weight).argmax(-1)  # (N,)
    return bpm[best_lag].reshape(envelope.shape[:-1])


def track_beats(envelope: torch.Tensor, frame_rate: float, tempo: float | torch.Tensor) -> torch.Tensor:
    """Place a beat grid of the given tempo where the onset strength is highest.

    Every phase within one beat period is scored by the total onset strength at the grid's frames
    (max-pooled over ±20 ms, so a slightly early onset still counts); the best phase wins. A total
    rather than a mean: beats on the chords and the bass outnumber a syncopated melody's off-beats.

    Args:
        envelope: ``(..., F)`` onset strength.
        frame_rate: frames per second.
        tempo: BPM, a number or a ``(...,)`` tensor (one per row).

    Returns:
        ``(..., F)`` bool mask of the beat frames.
    """
    flat = envelope.reshape(-1, envelope.shape[-1])  # (N, F)
    n_rows, n_frames = flat.shape
    tempo = torch.as_tensor(tempo, dtype=torch.float64, device=flat.device).reshape(-1).expand(n_rows)  # (N,)
    if (tempo <= 0).any():
        raise ConfigError(f"tempo must be positive BPM, got {tempo.tolist()}.")
    period = 60.0 * frame_rate / tempo  # (N,) frames per beat
    reach = max(1, round(0.02 * frame_rate))
    pooled = F.max_pool1d(flat[:, None], 2 * reach + 1, stride=1, padding=reach)[:, 0]  # (N, F)
    phases = torch.arange(math.ceil(period.max().item()), device=flat.device, dtype=torch.float64)  # (P,)
    beats = torch.arange(math.ceil(n_frames / period.min().item()) + 1, device=flat.device)  # (K,)
    grid = torch.round(phases[None, :, None] + beats[None, None, :] * period[:, None, None]).long()  # (N, P, K)
    valid = (grid < n_frames) & (phases[None, :, None] < period[:, None, None])  # (N, P, K)
    values = torch.gather(pooled, 1, grid.clamp_max(n_frames - 1).flatten(1)).view(grid.shape)  # (N, P, K)
    counts = valid.sum(-1)  # (N, P)
    score = (values * valid).sum(-1)  # (N, P)
    score = score.masked_fill(counts == 0, -1.0)
    best = score.argmax(-1)  # (N,)
    rows = torch.arange(n_rows, device=flat.device)
    chosen, chosen_valid = grid[rows, best], valid[rows, best]  # (N, K)
    mask = torch.zeros(n_rows, n_frames + 1, dtype=torch.bool, device=flat.device)
    mask.scatter_(1, torch.where(chosen_valid, chosen, n_frames), True)  # invalid beats land in a spare column
    return mask[:, :n_frames].reshape(envelope.shape)


def beat_activation(
    audio: torch.Tensor, sample_rate: int, hop_length: int = HOP_LENGTH, tempo: float | torch.Tensor | None = None
) -> torch.Tensor:
    """``(..., F)`` float 0/1: 1 at beat frames (tempo estimated from the audio when not given)."""
    envelope = onset_strength(audio, sample_rate, hop_length)  # (..., F)
    frame_rate = sample_rate / hop_length
    if tempo is None:
        tempo = estimate_tempo(envelope, frame_rate)
    return track_beats(envelope, frame_rate, tempo).to(envelope.dtype)


def beat_times(
    audio: torch.Tensor, sample_rate: int, hop_length: int = HOP_LENGTH, tempo: float | torch.Tensor | None = None
) -> torch.Tensor | list[torch.Tensor]:
    """Beat times in seconds: a tensor for ``(T,)`` audio, a list of tensors for ``(N, T)``."""
    return mask_to_times(beat_activation(audio, sample_rate, hop_length, tempo) > 0, sample_rate / hop_length)
