"""Short-time Fourier transform, mel and log-mel spectrograms, and Griffin-Lim inversion.

Everything runs on the tensor's own device and works on ``(T,)`` or batched ``(..., T)`` audio.
The course's default mel settings are AudioLDM's (Liu et al. 2023): 16 kHz, window 1,024, hop 160
(100 frames/s), 64 mel bands up to 8 kHz, natural log with a 1e-5 floor.

Notebook: notebooks/00_audio_and_data.ipynb (why log, why mel), 07_ddpm.ipynb and 08_latent_diffusion.ipynb.
"""

from __future__ import annotations

import dataclasses
import functools

import torch
import torchaudio.functional as AF

from course_lib.audio.io import check_audio


@dataclasses.dataclass(frozen=True)
class MelConfig:
    """The parameters that define a mel spectrogram; one place, so analysis and inversion agree.

    Notebooks: notebooks/00_audio_and_data.ipynb, 01_kmeans_vq.ipynb, 02_vq_vae.ipynb, 03_hierarchical_vqvae.ipynb
    """

    sample_rate: int = 16_000
    n_fft: int = 1024
    hop_length: int = 160
    n_mels: int = 64
    f_min: float = 0.0
    f_max: float | None = 8_000.0
    log_floor: float = 1e-5

    @property
    def frames_per_second(self) -> float:
        return self.sample_rate / self.hop_length


def stft(audio: torch.Tensor, n_fft: int = 1024, hop_length: int = 256, win_length: int | None = None) -> torch.Tensor:
    """Complex STFT with a Hann window, centred frames: ``(..., T)`` → ``(..., n_fft // 2 + 1, frames)``.

    ``frames = T // hop_length + 1`` (the signal is reflect-padded by ``n_fft // 2`` on each side).
    """
    check_audio(audio)
    win_length = win_length or n_fft
    window = _hann(win_length, audio.device, audio.dtype)
    batch_shape = audio.shape[:-1]
    flat = audio.reshape(-1, audio.shape[-1])  # (B, T)
    spec = torch.stft(flat, n_fft, hop_length, win_length, window, center=True, pad_mode="reflect", return_complex=True)
    return spec.reshape(*batch_shape, *spec.shape[-2:])  # (..., F, N)


def magnitude_spectrogram(
    audio: torch.Tensor, n_fft: int = 1024, hop_length: int = 256, power: float = 1.0
) -> torch.Tensor:
    """|STFT| ** power: ``(..., T)`` → ``(..., n_fft // 2 + 1, frames)``.

    Notebooks: notebooks/00_audio_and_data.ipynb, 04_neural_codec.ipynb
    """
    return stft(audio, n_fft, hop_length).abs().pow(power)


def mel_filterbank(config: MelConfig, device: torch.device | str = "cpu", dtype=torch.float32) -> torch.Tensor:
    """The ``(n_fft // 2 + 1, n_mels)`` matrix of triangular mel filters (Slaney-normalised).

    Notebook: notebooks/00_audio_and_data.ipynb
    """
    return _filterbank(config, str(device), dtype)


@functools.lru_cache(maxsize=16)
def _filterbank(config: MelConfig, device: str, dtype: torch.dtype) -> torch.Tensor:
    return AF.melscale_fbanks(
        n_freqs=config.n_fft // 2 + 1,
        f_min=config.f_min,
        f_max=config.f_max or config.sample_rate / 2,
        n_mels=config.n_mels,
        sample_rate=config.sample_rate,
        norm="slaney",
        mel_scale="slaney",
    ).to(device=device, dtype=dtype)


def mel_spectrogram(audio: torch.Tensor, config: MelConfig = MelConfig()) -> torch.Tensor:
    """Magnitude mel spectrogram: ``(..., T)`` → ``(..., n_mels, frames)``.

    Notebook: notebooks/00_audio_and_data.ipynb
    """
    magnitude = magnitude_spectrogram(audio, config.n_fft, config.hop_length)  # (..., F, N)
    fb = mel_filterbank(config, audio.device, magnitude.dtype)  # (F, M)
    return torch.einsum("...fn,fm->...mn", magnitude, fb)  # (..., M, N)


def log_mel_spectrogram(audio: torch.Tensor, config: MelConfig = MelConfig()) -> torch.Tensor:
    """``log(max(mel, floor))``: the representation the diffusion chapters model as an image.

    Notebooks: notebooks/00_audio_and_data.ipynb, 01_kmeans_vq.ipynb, 02_vq_vae.ipynb, 03_hierarchical_vqvae.ipynb,
    05_audio_language_model.ipynb, 06_text_to_music.ipynb, 08_latent_diffusion.ipynb
    """
    return mel_spectrogram(audio, config).clamp_min(config.log_floor).log()


def mel_to_magnitude(mel: torch.Tensor, config: MelConfig = MelConfig(), n_iter: int = 50) -> torch.Tensor:
    """Estimate the linear magnitude ``S ≥ 0`` whose mel projection matches ``mel`` (non-log).

    Solves the non-negative least-squares problem min ‖Mᵀ S − mel‖² over S ≥ 0 (M the filterbank)
    approximately: start from the pseudo-inverse clipped at zero, then ``n_iter`` multiplicative
    updates S ← S ⊙ (M mel) / (M Mᵀ S) (Lee & Seung 2001), which keep S non-negative. The mel
    filters merge high-frequency bins, so the detail they threw away cannot come back.
    """
    fb = mel_filterbank(config, mel.device, mel.dtype)  # (F, M)
    pinv = torch.linalg.pinv(fb)  # (M, F)
    magnitude = torch.einsum("...mn,mf->...fn", mel, pinv).clamp_min(1e-8)  # (..., F, N)
    target = torch.einsum("fm,...mn->...fn", fb, mel)  # M mel: (..., F, N)
    gram = fb @ fb.T  # (F, F)
    for _ in range(n_iter):
        magnitude = magnitude * target / torch.einsum("fg,...gn->...fn", gram, magnitude).clamp_min(1e-12)
    return magnitude


def griffin_lim(
    magnitude: torch.Tensor, n_fft: int = 1024, hop_length: int = 256, n_iter: int = 64, length: int | None = None
) -> torch.Tensor:
    """Recover a waveform from a magnitude spectrogram (Griffin & Lim 1984), with momentum 0.99.

    Griffin-Lim alternates between imposing the given magnitude and projecting onto the set of
    consistent STFTs; the phase it finds is plausible, not the original one.
    """
    window = _hann(n_fft, magnitude.device, magnitude.dtype)
    return AF.griffinlim(
        magnitude,
        window=window,
        n_fft=n_fft,
        hop_length=hop_length,
        win_length=n_fft,
        power=1.0,
        n_iter=n_iter,
        momentum=0.99,
        length=length,
        rand_init=False,
    )


def log_mel_to_audio(
    log_mel: torch.Tensor, config: MelConfig = MelConfig(), n_iter: int = 64, length: int | None = None
) -> torch.Tensor:
    """Invert a log-mel spectrogram to audio: exp → pseudo-inverse filterbank → Griffin-Lim.

    Notebooks: notebooks/00_audio_and_data.ipynb, 01_kmeans_vq.ipynb, 07_ddpm.ipynb
    """
    magnitude = mel_to_magnitude(log_mel.exp(), config)
    return griffin_lim(magnitude, config.n_fft, config.hop_length, n_iter, length)


def spectral_convergence(reference: torch.Tensor, estimate: torch.Tensor) -> torch.Tensor:
    """‖|S| − |Ŝ|‖_F / ‖|S|‖_F over the last two axes (Arik et al. 2018); 0 is a perfect match.

    Notebook: notebooks/00_audio_and_data.ipynb
    """
    diff = torch.linalg.matrix_norm(reference - estimate)
    return diff / torch.linalg.matrix_norm(reference).clamp_min(1e-8)


@functools.lru_cache(maxsize=16)
def _hann_cached(length: int, device: str, dtype: torch.dtype) -> torch.Tensor:
    return torch.hann_window(length, device=device, dtype=dtype)


def _hann(length: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return _hann_cached(length, str(device), dtype)
