"""How close is a reconstruction to the original? One definition of each measure the course reports.

- :func:`snr_db`: waveform signal-to-noise ratio over a whole batch, in dB (higher is better).
- :func:`si_sdr_db`: scale-invariant signal-to-distortion ratio per clip (Le Roux et al. 2019, "SDR -
  half-baked or well done?", eq. 4-5), in dB (higher is better): the SNR after the best rescaling of
  the reference, so a reconstruction that is merely quieter is not penalised.
- :func:`spectral_convergence_db`: Jukebox's reconstruction metric per clip (lower is better).
- :func:`log_mel_distance_db`: mean absolute log-mel difference in dB (notebook 01's, lower is better).
- :func:`multi_scale_mel_distance`: the **multi-scale mel distance** of the codec chapter (lower is
  better), defined after DAC's mel loss (Kumar et al. 2023, "High-Fidelity Audio Compression with
  Improved RVQGAN", sec. 3.4 and its reference configuration):

      D_mel(x, y) = Σ_{i=1..7} mean_{m,t} | log10 max(M_i(x), 1e-5) - log10 max(M_i(y), 1e-5) |

  with M_i the magnitude (power 1) mel spectrogram of window w_i ∈ (32, 64, 128, 256, 512, 1024,
  2048) samples, hop w_i / 4, Hann window, centred frames, and n_i ∈ (5, 10, 20, 40, 80, 160, 320)
  Slaney mel bands from 0 Hz to Nyquist. Short windows see timing (transients), long windows pitch;
  the floor of 1e-5 (-100 dB) lets quiet bands count, but not silence below it. DAC's paper reports
  this measure at 44.1 kHz (DAC 8 kbps 0.93, EnCodec 6 kbps 1.83, Opus 8 kbps 3.60); ours is
  computed at 16 kHz on SynthMusic, so compare our figures with each other, not with theirs.
- :func:`real_time_factor`: how many seconds of audio are processed per second of compute.

Notebooks: 01_kmeans_vq.ipynb, 02_vq_vae.ipynb, 03_hierarchical_vqvae.ipynb, 04_neural_codec.ipynb.
"""

from __future__ import annotations

import functools
import math
import warnings

import torch
from torch import Tensor

from course_lib.audio.spectral import (
    MelConfig,
    log_mel_spectrogram,
    magnitude_spectrogram,
    mel_filterbank,
    spectral_convergence,
)
from course_lib.errors import AudioInputError

MEL_DISTANCE_WINDOWS = (32, 64, 128, 256, 512, 1024, 2048)
MEL_DISTANCE_BANDS = (5, 10, 20, 40, 80, 160, 320)
MEL_DISTANCE_FLOOR = 1e-5


def _check_pair(reference: Tensor, estimate: Tensor, what: str) -> None:
    if reference.shape != estimate.shape:
        raise AudioInputError(
            f"{what}: reference {tuple(reference.shape)} and estimate {tuple(estimate.shape)} differ in shape; "
            "trim the reconstruction to the original's length (e.g. estimate[..., : reference.shape[-1]])."
        )


def snr_db(reference: Tensor, estimate: Tensor) -> float:
    """Signal-to-noise ratio of a reconstruction over a whole batch, in dB: 10 log10(Σ x² / Σ (x - x̂)²).

    Notebooks: notebooks/01_kmeans_vq.ipynb, 02_vq_vae.ipynb
    """
    return 10 * math.log10(reference.pow(2).sum().item() / (reference - estimate).pow(2).sum().clamp_min(1e-12).item())


def si_sdr_db(reference: Tensor, estimate: Tensor, eps: float = 1e-8) -> Tensor:
    """Scale-invariant SDR per clip (Le Roux et al. 2019, eq. 4-5): ``(..., T)`` -> ``(...)`` in dB.

    Both signals are made zero-mean; the reference is scaled by α = <x̂, x> / ||x||² (the projection of
    the estimate on it), and SI-SDR = 10 log10(||α x||² / ||α x - x̂||²). 0 dB: the error is as loud as
    the signal; each 10 dB more is ten times less error power.

    Notebook: notebooks/04_neural_codec.ipynb
    """
    _check_pair(reference, estimate, "si_sdr_db")
    x = reference - reference.mean(dim=-1, keepdim=True)  # (..., T)
    y = estimate - estimate.mean(dim=-1, keepdim=True)  # (..., T)
    alpha = (y * x).sum(dim=-1, keepdim=True) / x.pow(2).sum(dim=-1, keepdim=True).clamp_min(eps)  # (..., 1)
    target = alpha * x
    return 10 * torch.log10(target.pow(2).sum(dim=-1).clamp_min(eps) / (target - y).pow(2).sum(dim=-1).clamp_min(eps))


def spectral_convergence_db(reference: Tensor, estimate: Tensor, n_fft: int = 1024, hop_length: int = 256) -> Tensor:
    """Jukebox's reconstruction metric per clip: 20 log10 (‖|S| − |Ŝ|‖_F / ‖|S|‖_F), linear STFT magnitudes.

    ``(B, T)`` and ``(B, T)`` -> ``(B,)`` in dB; lower is better (-20 dB: the error's spectrum has a
    tenth of the reference's norm). Jukebox (table 4) reports about -23.0 / -12.4 / -8.3 dB from its
    bottom to its top level.

    Notebook: notebooks/02_vq_vae.ipynb
    """
    sc = spectral_convergence(
        magnitude_spectrogram(reference, n_fft, hop_length), magnitude_spectrogram(estimate, n_fft, hop_length)
    )
    return 20 * torch.log10(sc.clamp_min(1e-8))


def log_mel_distance_db(reference: Tensor, estimate: Tensor, config: MelConfig | None = None) -> float:
    """Mean absolute difference of natural-log mel spectrograms, in dB (notebook 01's log-mel error).

    Notebook: notebooks/02_vq_vae.ipynb
    """
    config = config or MelConfig()
    nats_to_db = 20 / math.log(10)
    return (
        log_mel_spectrogram(reference, config) - log_mel_spectrogram(estimate, config)
    ).abs().mean().item() * nats_to_db


def multi_scale_mel_distance(reference: Tensor, estimate: Tensor, sample_rate: int = 16_000) -> Tensor:
    """The multi-scale mel distance per clip (the module docstring gives the definition): ``(..., T)`` -> ``(...)``.

    Lower is better; 0 for identical audio. Each of the 7 scales contributes the mean absolute
    difference of log10 mel magnitudes, so a distance of 0.7 is an average error of 0.1 in log10
    magnitude (20 · 0.1 = 2 dB) at each scale.

    Notebook: notebooks/04_neural_codec.ipynb
    """
    _check_pair(reference, estimate, "multi_scale_mel_distance")
    batch_shape = reference.shape[:-1]
    x = reference.reshape(-1, reference.shape[-1])  # (B, T)
    y = estimate.reshape(-1, estimate.shape[-1])  # (B, T)
    total = x.new_zeros(x.shape[0])
    for window, bands in zip(MEL_DISTANCE_WINDOWS, MEL_DISTANCE_BANDS, strict=True):
        bank = _mel_bank(window, bands, sample_rate, str(x.device), x.dtype)  # (F, M)
        mel_x = torch.einsum("bfn,fm->bmn", magnitude_spectrogram(x, window, window // 4), bank)  # (B, M, N)
        mel_y = torch.einsum("bfn,fm->bmn", magnitude_spectrogram(y, window, window // 4), bank)  # (B, M, N)
        log_x = mel_x.clamp_min(MEL_DISTANCE_FLOOR).log10()
        log_y = mel_y.clamp_min(MEL_DISTANCE_FLOOR).log10()
        total = total + (log_x - log_y).abs().mean(dim=(1, 2))  # (B,)
    return total.reshape(batch_shape)


def real_time_factor(audio_seconds: float, compute_seconds: float) -> float:
    """Seconds of audio processed per second of compute: 10 means ten times faster than real time.

    (Speech papers often quote the inverse, compute / audio, where smaller is faster; the course
    always quotes this one, "× real time".)
    """
    if audio_seconds <= 0 or compute_seconds <= 0:
        raise AudioInputError(
            f"real_time_factor needs positive durations, got {audio_seconds} s and {compute_seconds} s."
        )
    return audio_seconds / compute_seconds


@functools.lru_cache(maxsize=32)
def _mel_bank(window: int, bands: int, sample_rate: int, device: str, dtype: torch.dtype) -> Tensor:
    config = MelConfig(sample_rate=sample_rate, n_fft=window, hop_length=window // 4, n_mels=bands, f_max=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return mel_filterbank(config, device, dtype)
