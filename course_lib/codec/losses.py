"""The codec's reconstruction losses: SoundStream's multi-scale spectral L_G^rec, its total L_G, HiFi-GAN's L1 log-mel.

SoundStream (Zeghidour et al. 2021, sec. III-E), as the lecture writes them (the adversarial terms
L_D, L_G^adv and L_G^feat are in :mod:`course_lib.adversarial.losses`):

    L_G^rec    = Σ_s Σ_t || S^s_t(x) - S^s_t(G(x)) ||_1 + α_s Σ_t || log S^s_t(x) - log S^s_t(G(x)) ||_2
    L_G        = λ_adv L_G^adv + λ_feat L_G^feat + λ_rec L_G^rec

- S^s_t is frame t of a 64-band mel spectrogram with window s and hop s/4; SoundStream sums over
  s = 2^6, ..., 2^11 (the lecture's slide prints 2^0 ... 2^11, the paper's text says 2^6 ... 2^11,
  which is the default here) with α_s = sqrt(s / 2). ||·||_1 and ||·||_2 are norms over the mel bands
  of one frame, summed over frames: nothing is averaged except over the batch (E_x).
- SoundStream's weights: λ_adv = 1, λ_feat = 100, λ_rec = 1.

Notebook: notebooks/04_neural_codec.ipynb.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor

from course_lib.audio.spectral import MelConfig, mel_filterbank
from course_lib.errors import ConfigError

SOUNDSTREAM_WINDOWS = tuple(2**i for i in range(6, 12))  # 64 ... 2048 samples, SoundStream sec. III-E
SOUNDSTREAM_WEIGHTS = {"adv": 1.0, "feat": 100.0, "rec": 1.0}  # λ_adv, λ_feat, λ_rec


def soundstream_mel_spectrogram(audio: Tensor, window: int, sample_rate: int = 16_000, n_mels: int = 64) -> Tensor:
    """S^s(x) of SoundStream's reconstruction loss: mel magnitudes with window s and hop s/4, ``(B, n_mels, frames)``.

    A Hann window of ``window`` samples, centred frames (reflect padding), magnitude (not power)
    STFT, ``n_mels`` Slaney mel bands from 0 Hz to Nyquist. At the shortest windows the STFT has fewer
    bins than there are mel bands, so a few narrow low bands hold no bin at all: they are zero for
    every signal and add nothing to the loss.

    Notebook: notebooks/04_neural_codec.ipynb
    """
    wav = audio.reshape(-1, audio.shape[-1]).float()  # (B, T); float32 also under AMP (no 16-bit FFTs)
    spec = torch.stft(
        wav, window, window // 4, window=_hann(window, str(wav.device), wav.dtype), center=True, return_complex=True
    ).abs()  # (B, F, N)
    return torch.einsum("bfn,fm->bmn", spec, _mel_bank(window, sample_rate, n_mels, str(wav.device), wav.dtype))


def multi_scale_spectral_loss(
    reference: Tensor,
    estimate: Tensor,
    sample_rate: int = 16_000,
    windows: Sequence[int] = SOUNDSTREAM_WINDOWS,
    n_mels: int = 64,
    eps: float = 1e-5,
) -> Tensor:
    """L_G^rec, SoundStream's multi-scale spectral reconstruction loss, exactly as the lecture writes it.

    ``Σ_s [ Σ_t ||S_t(x) - S_t(G(x))||_1 + α_s Σ_t ||log S_t(x) - log S_t(G(x))||_2 ]`` with
    α_s = sqrt(s / 2), S = :func:`soundstream_mel_spectrogram` and ``log S = log(S + eps)`` (the
    ``eps`` keeps the logarithm of silent bands finite). The norms run over the mel bands of one frame
    and are summed over frames and window sizes; the result is averaged over the batch (E_x). It
    therefore grows with the clip length: weigh it with λ_rec accordingly.

    Args:
        reference, estimate: x and G(x), ``(B, T)`` or ``(B, 1, T)``.
        windows: the window sizes s (default 2^6 ... 2^11, SoundStream's; the slide prints 2^0 ... 2^11).

    Notebook: notebooks/04_neural_codec.ipynb
    """
    if reference.shape != estimate.shape:
        raise ConfigError(
            f"multi_scale_spectral_loss: reference {tuple(reference.shape)} and estimate {tuple(estimate.shape)} differ "
            "in shape; trim the decoded audio to the input's length."
        )
    x = reference.reshape(-1, reference.shape[-1])  # (B, T)
    y = estimate.reshape(-1, estimate.shape[-1])  # (B, T)
    total = x.new_zeros(())
    for s in windows:
        s_x = soundstream_mel_spectrogram(x, s, sample_rate, n_mels)  # (B, M, N)
        s_y = soundstream_mel_spectrogram(y, s, sample_rate, n_mels)  # (B, M, N)
        l1 = (s_x - s_y).abs().sum(dim=1).sum(dim=-1)  # (B,) Σ_t ||·||_1
        log_diff = (s_x + eps).log() - (s_y + eps).log()  # (B, M, N)
        l2 = _frame_norm(log_diff).sum(dim=-1)  # (B,) Σ_t ||·||_2
        total = total + (l1 + math.sqrt(s / 2) * l2).mean()
    return total


def generator_loss(
    adversarial: Tensor,
    feature: Tensor,
    reconstruction: Tensor,
    lambda_adv: float = SOUNDSTREAM_WEIGHTS["adv"],
    lambda_feat: float = SOUNDSTREAM_WEIGHTS["feat"],
    lambda_rec: float = SOUNDSTREAM_WEIGHTS["rec"],
) -> Tensor:
    """L_G = λ_adv L_G^adv + λ_feat L_G^feat + λ_rec L_G^rec (defaults: SoundStream's weights 1, 100, 1).

    Notebook: notebooks/04_neural_codec.ipynb
    """
    return lambda_adv * adversarial + lambda_feat * feature + lambda_rec * reconstruction


def _frame_norm(diff: Tensor) -> Tensor:
    """The l2 norm over dim 1 (mel bands) with a gradient that stays finite where the difference is 0."""
    squared = diff.pow(2).sum(dim=1)  # (B, N)
    return torch.where(squared > 0, squared.clamp_min(1e-20).sqrt(), torch.zeros_like(squared))


@functools.lru_cache(maxsize=32)
def _mel_bank(window: int, sample_rate: int, n_mels: int, device: str, dtype: torch.dtype) -> Tensor:
    config = MelConfig(sample_rate=sample_rate, n_fft=window, hop_length=window // 4, n_mels=n_mels, f_max=None)
    with warnings.catch_warnings():  # torchaudio warns about the empty low bands of the short windows
        warnings.simplefilter("ignore", UserWarning)
        return mel_filterbank(config, device, dtype)


@functools.lru_cache(maxsize=32)
def _hann(length: int, device: str, dtype: torch.dtype) -> Tensor:
    return torch.hann_window(length, device=device, dtype=dtype)
