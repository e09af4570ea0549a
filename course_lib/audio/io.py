"""Reading, writing and conditioning audio: load, resample, mix to mono, normalise, save.

Audio files go through soundfile (libsndfile: WAV, FLAC, OGG, MP3, AIFF, ...); torchaudio is used only
for its functional ops (resampling). Tensors follow one convention: ``(T,)`` for one mono signal,
``(C, T)`` for channels, ``(B, T)`` for a batch of mono clips.

Notebook: notebooks/00_audio_and_data.ipynb.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from course_lib.atomic import atomic_write
from course_lib.errors import AudioInputError


def check_audio(audio: torch.Tensor, name: str = "audio") -> torch.Tensor:
    """Raise a clear :class:`AudioInputError` for an empty tensor or one holding NaN or Inf.

    Returns the tensor unchanged, so it can wrap an expression.
    """
    if not isinstance(audio, torch.Tensor):
        raise AudioInputError(
            f"{name} must be a torch.Tensor, got {type(audio).__name__}: wrap it with torch.as_tensor(...)."
        )
    if audio.numel() == 0:
        raise AudioInputError(
            f"{name} is empty (shape {tuple(audio.shape)}): check the file or the slice that produced it."
        )
    if not torch.isfinite(audio).all():
        bad = (~torch.isfinite(audio)).sum().item()
        raise AudioInputError(
            f"{name} holds {bad} NaN or Inf values: fix the step that produced them "
            "(a division by zero, a log of 0, an exploding model), or clean it with torch.nan_to_num."
        )
    return audio


def require_sample_rate(actual: int, expected: int, what: str = "this function") -> None:
    """Raise when audio at ``actual`` Hz is given to something that works at ``expected`` Hz."""
    if int(actual) != int(expected):
        raise AudioInputError(
            f"{what} expects audio at {expected} Hz but got {actual} Hz: "
            f"resample first with course_lib.audio.resample(audio, {actual}, {expected})."
        )


def require_mono(audio: torch.Tensor, what: str = "this function") -> None:
    """Raise when a ``(C, T)`` tensor with C > 1 is given where one channel is needed."""
    if audio.dim() == 2 and audio.shape[0] > 1 and audio.shape[0] <= 8:
        raise AudioInputError(
            f"{what} expects mono audio but got {audio.shape[0]} channels: mix down with course_lib.audio.to_mono(audio)."
        )


def load_audio(path: str | os.PathLike, sample_rate: int | None = None, mono: bool = True) -> tuple[torch.Tensor, int]:
    """Load an audio file as float32 in [-1, 1], optionally resampled and mixed to mono.

    Args:
        path: any file libsndfile reads.
        sample_rate: resample to this rate (Hz); ``None`` keeps the file's rate.
        mono: mix the channels down to one, returning ``(T,)``; otherwise ``(C, T)``.

    Returns:
        ``(audio, sample_rate)``.

    Raises:
        AudioInputError: for a missing, empty or unreadable file.
    """
    path = Path(path)
    if not path.exists():
        raise AudioInputError(f"No audio file at {path}: check the path (the working directory is {Path.cwd()}).")
    if path.stat().st_size == 0:
        raise AudioInputError(
            f"{path} is empty (0 bytes): the download or export was probably interrupted; fetch it again."
        )
    try:
        data, file_rate = sf.read(path, dtype="float32", always_2d=True)  # (T, C)
    except (sf.LibsndfileError, RuntimeError, TypeError) as error:
        raise AudioInputError(
            f"Cannot read {path} as audio ({error}). The file is corrupt or not an audio format "
            f"libsndfile knows (WAV, FLAC, OGG, MP3, AIFF...): re-download or convert it."
        ) from None
    if data.shape[0] == 0:
        raise AudioInputError(f"{path} holds no samples: re-export or re-download it.")
    audio = torch.from_numpy(np.ascontiguousarray(data.T))  # (C, T)
    if mono:
        audio = to_mono(audio)
    if sample_rate is not None and sample_rate != file_rate:
        audio = resample(audio, file_rate, sample_rate)
        file_rate = sample_rate
    return audio, int(file_rate)


def save_audio(path: str | os.PathLike, audio: torch.Tensor, sample_rate: int, subtype: str | None = None) -> Path:
    """Write ``(T,)`` or ``(C, T)`` audio; the format follows the suffix (.wav, .flac, .ogg, ...).

    The file is written to a temporary name in the same folder and renamed into place, so an
    interrupted save never leaves half a file where a reader would find it.
    """
    path = Path(path)
    check_audio(audio)
    if sample_rate <= 0:
        raise AudioInputError(f"sample_rate must be positive, got {sample_rate}.")
    file_format = path.suffix.lstrip(".").upper() or "WAV"
    if file_format not in sf.available_formats():
        raise AudioInputError(f"Cannot write {path}: unknown audio suffix; use .wav, .flac or .ogg.")
    data = audio.detach().to("cpu", torch.float32)
    data = data.unsqueeze(0) if data.dim() == 1 else data
    atomic_write(
        path, lambda file: sf.write(file, data.T.numpy(), int(sample_rate), format=file_format, subtype=subtype)
    )
    return path


def to_mono(audio: torch.Tensor) -> torch.Tensor:
    """Average the channels of ``(C, T)`` into ``(T,)``; a ``(T,)`` tensor is returned as it is."""
    return audio if audio.dim() == 1 else audio.mean(dim=0)


def resample(audio: torch.Tensor, orig_rate: int, target_rate: int) -> torch.Tensor:
    """Band-limited (windowed-sinc) resampling along the last axis, on the tensor's device."""
    if orig_rate <= 0 or target_rate <= 0:
        raise AudioInputError(f"Sample rates must be positive, got {orig_rate} → {target_rate}.")
    if orig_rate == target_rate:
        return audio
    return AF.resample(audio, int(orig_rate), int(target_rate))


def peak_normalize(audio: torch.Tensor, peak: float = 0.9) -> torch.Tensor:
    """Scale each signal (last axis) so its largest absolute sample equals ``peak``; silence stays silent."""
    current = audio.abs().amax(dim=-1, keepdim=True)
    return audio * (peak / current.clamp_min(1e-8))


def rms_db(audio: torch.Tensor) -> torch.Tensor:
    """Root-mean-square level of each signal in dB relative to full scale (dBFS)."""
    return 20 * torch.log10(audio.pow(2).mean(dim=-1).sqrt().clamp_min(1e-8))


def loudness_normalize(audio: torch.Tensor, target_db: float = -20.0, max_peak: float = 0.99) -> torch.Tensor:
    """Scale each signal to an RMS level of ``target_db`` dBFS, then limit its peak to ``max_peak``.

    This is RMS loudness, a simple stand-in for perceptual loudness (LUFS, ITU-R BS.1770), which
    also weights frequencies; it is enough to make clips comparable by ear.
    """
    gain = 10 ** ((target_db - rms_db(audio)) / 20)
    scaled = audio * gain.unsqueeze(-1)
    peak = scaled.abs().amax(dim=-1, keepdim=True)
    return scaled * (max_peak / peak.clamp_min(max_peak))
