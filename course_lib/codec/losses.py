"""The losses of GAN-trained audio models: SoundStream's four (the lecture's slide) and HiFi-GAN's least squares.

SoundStream (Zeghidour et al. 2021, sec. III-E), as the lecture writes them, with K sub-discriminators
D_k whose outputs have T_k positions t, and L hidden layers D^{(l)}_k:

    L_D        = E_x[ 1/K Σ_k 1/T_k Σ_t max(0, 1 - D_{k,t}(x)) ] + E_x[ 1/K Σ_k 1/T_k Σ_t max(0, 1 + D_{k,t}(G(x))) ]
    L_G^adv    = E_x[ 1/K Σ_{k,t} 1/T_k max(0, 1 - D_{k,t}(G(x))) ]
    L_G^feat   = E_x[ 1/(KL) Σ_{k,l} 1/T_{k,l} Σ_t | D^{(l)}_{k,t}(x) - D^{(l)}_{k,t}(G(x)) | ]
    L_G^rec    = Σ_s Σ_t || S^s_t(x) - S^s_t(G(x)) ||_1 + α_s Σ_t || log S^s_t(x) - log S^s_t(G(x)) ||_2
    L_G        = λ_adv L_G^adv + λ_feat L_G^feat + λ_rec L_G^rec

- The hinge losses push real logits above +1 and fake ones below -1 and stop pushing once they are
  there; the generator's adversarial term is also a hinge (SoundStream), not the -D of plain GANs.
- Feature matching compares the discriminator's hidden activations on x and G(x): a reconstruction
  loss in a learnt feature space. ``|·|`` is the paper's "average absolute difference": the mean over
  the feature channels and the positions t of each layer, then the mean over layers and
  sub-discriminators.
- S^s_t is frame t of a 64-band mel spectrogram with window s and hop s/4; SoundStream sums over
  s = 2^6, ..., 2^11 (the lecture's slide prints 2^0 ... 2^11, the paper's text says 2^6 ... 2^11,
  which is the default here) with α_s = sqrt(s / 2). ||·||_1 and ||·||_2 are norms over the mel bands
  of one frame, summed over frames: nothing is averaged except over the batch (E_x).
- SoundStream's weights: λ_adv = 1, λ_feat = 100, λ_rec = 1.

HiFi-GAN (Kong et al. 2020, eq. 1-6) trains with least squares (LSGAN, Mao et al. 2017) instead:

    L_adv(D; G) = E[(D(x) - 1)² + D(G(s))²]          L_adv(G; D) = E[(D(G(s)) - 1)²]

summed over its sub-discriminators, plus feature matching summed over layers (λ_fm = 2) and an L1
log-mel loss (λ_mel = 45). The functions here take one ``reduction`` argument over sub-discriminators
(and layers): ``"mean"`` (SoundStream's 1/K, 1/(KL)) or ``"sum"`` (HiFi-GAN's Σ_k).

Every loss takes lists of tensors, one per sub-discriminator, as
:class:`course_lib.codec.discriminators.DiscriminatorOutput` holds them, and returns a 0-dim tensor.

Notebooks: notebooks/04_neural_codec.ipynb (all of them), 08_latent_diffusion.ipynb (HiFi-GAN's).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor

from course_lib.audio.spectral import MelConfig, log_mel_spectrogram, mel_filterbank
from course_lib.errors import ConfigError

SOUNDSTREAM_WINDOWS = tuple(2**i for i in range(6, 12))  # 64 ... 2048 samples, SoundStream sec. III-E
SOUNDSTREAM_WEIGHTS = {"adv": 1.0, "feat": 100.0, "rec": 1.0}  # λ_adv, λ_feat, λ_rec
REDUCTIONS = ("mean", "sum")


def _reduce(terms: list[Tensor], reduction: str) -> Tensor:
    if reduction not in REDUCTIONS:
        raise ConfigError(f"Unknown reduction {reduction!r}: use 'mean' (SoundStream, 1/K) or 'sum' (HiFi-GAN, Σ_k).")
    if not terms:
        raise ConfigError("The loss got no discriminator outputs: pass one tensor per sub-discriminator.")
    total = torch.stack(terms).sum()
    return total / len(terms) if reduction == "mean" else total


def _check_pairs(real: Sequence, fake: Sequence, what: str) -> None:
    if len(real) != len(fake):
        raise ConfigError(
            f"{what}: {len(real)} real and {len(fake)} fake outputs; pass the outputs of the same discriminator "
            "for x and G(x)."
        )


# ------------------------------------------------------------------------------------ hinge (SoundStream)
def hinge_discriminator_loss(
    real_logits: Sequence[Tensor], fake_logits: Sequence[Tensor], reduction: str = "mean"
) -> Tensor:
    """L_D: the hinge loss of the discriminators (SoundStream sec. III-E, the lecture's first formula).

    ``mean over batch and positions of max(0, 1 - D_k(x)) + max(0, 1 + D_k(G(x)))``, then 1/K Σ_k.
    Pass ``fake_logits`` computed on ``G(x).detach()`` so that this loss trains only the discriminator.
    """
    _check_pairs(real_logits, fake_logits, "hinge_discriminator_loss")
    terms = [
        torch.relu(1 - real).mean() + torch.relu(1 + fake).mean()
        for real, fake in zip(real_logits, fake_logits, strict=True)
    ]
    return _reduce(terms, reduction)


def hinge_generator_loss(fake_logits: Sequence[Tensor], reduction: str = "mean") -> Tensor:
    """L_G^adv: ``1/K Σ_k mean_t max(0, 1 - D_k(G(x)))`` (SoundStream's adversarial loss for the generator)."""
    return _reduce([torch.relu(1 - fake).mean() for fake in fake_logits], reduction)


def feature_matching_loss(
    real_features: Sequence[Sequence[Tensor]], fake_features: Sequence[Sequence[Tensor]], reduction: str = "mean"
) -> Tensor:
    """L_G^feat: the mean absolute difference of the discriminators' hidden layers on x and on G(x).

    For each sub-discriminator k and layer l: ``mean |D^(l)_k(x) - D^(l)_k(G(x))|`` over batch, channels
    and positions; then 1/(KL) Σ_{k,l} (``reduction="mean"``, SoundStream) or Σ_{k,l} (``"sum"``,
    HiFi-GAN's eq. 3 summed over its sub-discriminators). The real features are treated as targets
    (detached): this loss trains the generator only.
    """
    _check_pairs(real_features, fake_features, "feature_matching_loss")
    terms = []
    for real_maps, fake_maps in zip(real_features, fake_features, strict=True):
        _check_pairs(real_maps, fake_maps, "feature_matching_loss (layers of one sub-discriminator)")
        terms += [(real.detach() - fake).abs().mean() for real, fake in zip(real_maps, fake_maps, strict=True)]
    return _reduce(terms, reduction)


# ----------------------------------------------------------------------------- least squares (HiFi-GAN)
def least_squares_discriminator_loss(
    real_logits: Sequence[Tensor], fake_logits: Sequence[Tensor], reduction: str = "sum"
) -> Tensor:
    """HiFi-GAN's eq. 1 (LSGAN): ``mean (D_k(x) - 1)² + mean D_k(G(s))²``, summed over k (eq. 6) by default."""
    _check_pairs(real_logits, fake_logits, "least_squares_discriminator_loss")
    terms = [(real - 1).pow(2).mean() + fake.pow(2).mean() for real, fake in zip(real_logits, fake_logits, strict=True)]
    return _reduce(terms, reduction)


def least_squares_generator_loss(fake_logits: Sequence[Tensor], reduction: str = "sum") -> Tensor:
    """HiFi-GAN's eq. 2 (LSGAN): ``mean (D_k(G(s)) - 1)²``, summed over k (eq. 5) by default."""
    return _reduce([(fake - 1).pow(2).mean() for fake in fake_logits], reduction)


# ------------------------------------------------------------------------------ spectral reconstruction
def soundstream_mel_spectrogram(audio: Tensor, window: int, sample_rate: int = 16_000, n_mels: int = 64) -> Tensor:
    """S^s(x) of SoundStream's reconstruction loss: mel magnitudes with window s and hop s/4, ``(B, n_mels, frames)``.

    A Hann window of ``window`` samples, centred frames (reflect padding), magnitude (not power)
    STFT, ``n_mels`` Slaney mel bands from 0 Hz to Nyquist. At the shortest windows the STFT has fewer
    bins than there are mel bands, so a few narrow low bands hold no bin at all: they are zero for
    every signal and add nothing to the loss.
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
    """L_G = λ_adv L_G^adv + λ_feat L_G^feat + λ_rec L_G^rec (defaults: SoundStream's weights 1, 100, 1)."""
    return lambda_adv * adversarial + lambda_feat * feature + lambda_rec * reconstruction


def mel_l1_loss(reference: Tensor, estimate: Tensor, config: MelConfig | None = None) -> Tensor:
    """HiFi-GAN's mel-spectrogram loss (eq. 4): the mean absolute difference of log-mel spectrograms.

    Uses :func:`course_lib.audio.log_mel_spectrogram` (natural log, floor 1e-5) with ``config``
    (default: the course's AudioLDM settings, 64 bands, hop 160 at 16 kHz). HiFi-GAN weighs it by 45.
    """
    config = config or MelConfig()
    return (log_mel_spectrogram(reference, config) - log_mel_spectrogram(estimate, config)).abs().mean()


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
