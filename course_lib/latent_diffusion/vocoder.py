"""Vocoders: from a log-mel spectrogram back to a waveform. Griffin-Lim (the baseline) and a small HiFi-GAN.

A mel spectrogram has thrown the phase away (and merged the high-frequency bins), so turning it into
sound means *inventing* a consistent phase. AudioLDM (Liu et al. 2023) generates mel spectrograms and
hands them to a **HiFi-GAN** vocoder (Kong et al. 2020, "HiFi-GAN: Generative Adversarial Networks for
Efficient and High Fidelity Speech Synthesis"):

- **Griffin-Lim** (:func:`griffin_lim_vocoder`, Griffin & Lim 1984): pseudo-invert the mel filterbank,
  then iterate between the wanted magnitude and a consistent STFT. Needs no training, always works,
  sounds "phasey"; 64 iterations = 128 FFT passes over the clip.
- **HiFi-GAN's generator** (:class:`HiFiGAN`, Sec. 2.1): a 7-tap convolution lifts the 64 mel bins
  to ``channels`` channels; then per up-sampling stage a transposed convolution (stride ``u``, kernel
  ``2u``) halves the channels and multiplies the time resolution by ``u`` — AudioLDM's rates
  5·4·2·2·2 = 160 turn 100 frames/s into 16,000 samples/s — followed by a **multi-receptive-field
  fusion** (MRF) module: the average of residual blocks with kernels 3, 7, 11, each a stack of dilated
  convolutions (dilations 1, 3, 5) with residual connections, so every stage sees patterns at several
  time scales at once. A 7-tap convolution and tanh give the waveform. One forward pass, no iterations.
- **Training** (Sec. 2.3, eqs. 5-6): least-squares GAN losses against HiFi-GAN's multi-period and
  multi-scale discriminators (:mod:`course_lib.adversarial`),
  plus feature matching (λ_fm = 2) and the L1 log-mel loss (λ_mel = 45):
  ``L_G = L_adv(G; D) + 2 L_FM + 45 L_mel``, ``L_D = L_adv(D; G)``; see :func:`generator_losses`, :func:`discriminator_loss`
  and :class:`HiFiGANTrainingLoss`, which :mod:`course_lib.latent_diffusion.train` (``--stage vocoder``)
  hands to the course's one training loop.

All weights are weight-normalised (Salimans & Kingma 2016) as in HiFi-GAN.

Notebook: notebooks/08_latent_diffusion.ipynb.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from course_lib.adversarial import (
    DiscriminatorStep,
    MultiPeriodDiscriminator,
    MultiScaleDiscriminator,
    feature_matching_loss,
    least_squares_discriminator_loss,
    least_squares_generator_loss,
)
from course_lib.audio import MelConfig, log_mel_spectrogram, log_mel_to_audio
from course_lib.config import ScaledConfig
from course_lib.errors import ConfigError

LRELU_SLOPE = 0.1


def griffin_lim_vocoder(
    log_mel: Tensor, config: MelConfig | None = None, n_iter: int = 64, length: int | None = None
) -> Tensor:
    """The baseline vocoder: log-mel ``(B, n_mels, F)`` (nats) → audio ``(B, T)``, ``T = (F - 1) · hop`` by default.

    :func:`course_lib.audio.log_mel_to_audio`: exp, non-negative pseudo-inverse of the filterbank,
    ``n_iter`` Griffin-Lim iterations (momentum 0.99).

    Notebook: notebooks/08_latent_diffusion.ipynb
    """
    config = config or MelConfig()
    length = length or (log_mel.shape[-1] - 1) * config.hop_length
    return log_mel_to_audio(log_mel, config, n_iter=n_iter, length=length)  # (B, T)


@dataclasses.dataclass
class HiFiGANConfig(ScaledConfig):
    """The generator's shape. Defaults are the ``tiny`` preset; ``full`` is about HiFi-GAN V1's width.

    Attributes:
        n_mels: mel bins in (64).
        channels: channels after the input convolution; every up-sampling stage halves them.
        upsample_rates: time up-sampling per stage; their product must be the mel hop (160).
        resblock_kernels: the MRF's residual blocks' kernel sizes (HiFi-GAN: 3, 7, 11).
        resblock_dilations: dilations inside each residual block (HiFi-GAN: 1, 3, 5).
    """

    n_mels: int = 64
    channels: int = 64
    upsample_rates: tuple[int, ...] = (5, 4, 2, 2, 2)
    resblock_kernels: tuple[int, ...] = (3, 7, 11)
    resblock_dilations: tuple[int, ...] = (1, 3, 5)
    full_overrides: ClassVar[dict] = {"channels": 512}

    def __post_init__(self) -> None:
        self.upsample_rates = tuple(self.upsample_rates)
        self.resblock_kernels = tuple(self.resblock_kernels)
        self.resblock_dilations = tuple(self.resblock_dilations)
        if self.channels % 2 ** len(self.upsample_rates):
            raise ConfigError(
                f"channels={self.channels} must be divisible by 2^{len(self.upsample_rates)} (one halving per stage)."
            )

    @property
    def hop_length(self) -> int:
        hop = 1
        for rate in self.upsample_rates:
            hop *= rate
        return hop


def _padding(kernel: int, dilation: int) -> int:
    return (kernel * dilation - dilation) // 2  # "same" length for an odd kernel


class MRFResidualBlock(nn.Module):
    """HiFi-GAN's ResBlock1: for each dilation d, ``x ← x + conv_1(lrelu(conv_d(lrelu(x))))`` (kernel k)."""

    def __init__(self, channels: int, kernel: int, dilations: Sequence[int]) -> None:
        super().__init__()
        self.dilated = nn.ModuleList(
            weight_norm(nn.Conv1d(channels, channels, kernel, dilation=d, padding=_padding(kernel, d)))
            for d in dilations
        )
        self.plain = nn.ModuleList(
            weight_norm(nn.Conv1d(channels, channels, kernel, padding=_padding(kernel, 1))) for _ in dilations
        )

    def forward(self, x: Tensor) -> Tensor:
        for dilated, plain in zip(self.dilated, self.plain, strict=True):
            h = dilated(F.leaky_relu(x, LRELU_SLOPE))  # (B, C, T)
            x = x + plain(F.leaky_relu(h, LRELU_SLOPE))  # (B, C, T)
        return x


class HiFiGAN(nn.Module):
    """HiFi-GAN's generator: log-mel ``(B, n_mels, F)`` (nats) → waveform ``(B, F · hop)`` in [-1, 1].

    See the module docstring. :meth:`vocode` crops to a given length (``(F - 1) · hop`` samples for the
    centred frames of :func:`course_lib.audio.log_mel_spectrogram`).

    Notebook: notebooks/08_latent_diffusion.ipynb
    """

    def __init__(self, config: HiFiGANConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or HiFiGANConfig()
        self.conv_pre = weight_norm(nn.Conv1d(config.n_mels, config.channels, 7, padding=3))
        self.upsamples = nn.ModuleList()
        self.mrfs = nn.ModuleList()
        channels = config.channels
        for rate in config.upsample_rates:
            # kernel 2u, output exactly u times longer: (L - 1) u - 2p + 2u + output_padding = u L
            padding, output_padding = (rate + 1) // 2, rate % 2
            self.upsamples.append(
                weight_norm(nn.ConvTranspose1d(channels, channels // 2, 2 * rate, rate, padding, output_padding))
            )
            channels //= 2
            self.mrfs.append(
                nn.ModuleList(MRFResidualBlock(channels, k, config.resblock_dilations) for k in config.resblock_kernels)
            )
        self.conv_post = weight_norm(nn.Conv1d(channels, 1, 7, padding=3))

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    def forward(self, log_mel: Tensor) -> Tensor:
        if log_mel.ndim != 3 or log_mel.shape[1] != self.config.n_mels:
            raise ConfigError(
                f"HiFiGAN takes log-mel (B, {self.config.n_mels}, frames), got {tuple(log_mel.shape)}: "
                "compute it with course_lib.audio.log_mel_spectrogram(audio)."
            )
        x = self.conv_pre(log_mel)  # (B, C, F)
        for upsample, mrf in zip(self.upsamples, self.mrfs, strict=True):
            x = upsample(F.leaky_relu(x, LRELU_SLOPE))  # (B, C / 2, F · u)
            x = sum(block(x) for block in mrf) / len(mrf)  # (B, C / 2, F · u)  multi-receptive-field fusion
        x = self.conv_post(F.leaky_relu(x))  # (B, 1, F · hop)  (HiFi-GAN's last activation has slope 0.01)
        return torch.tanh(x).squeeze(1)  # (B, F · hop)

    @torch.no_grad()
    def vocode(self, log_mel: Tensor, length: int | None = None) -> Tensor:
        """Audio ``(B, length)`` from log-mel ``(B, n_mels, F)``; default length ``(F - 1) · hop``."""
        length = length or (log_mel.shape[-1] - 1) * self.hop_length
        device = next(self.parameters()).device
        return self(log_mel.to(device).float())[..., :length]  # (B, T)


@dataclasses.dataclass
class DiscriminatorSizes(ScaledConfig):
    """Widths of HiFi-GAN's two discriminators for the vocoder. Defaults are the ``tiny`` preset; ``full`` is HiFi-GAN's.

    Attributes:
        periods: the multi-period discriminator's periods (HiFi-GAN: 2, 3, 5, 7, 11).
        period_channels: hidden widths of each period sub-discriminator (HiFi-GAN: 32, 128, 512, 1024, 1024).
        scale_channels, scale_groups: hidden widths and groups of each scale sub-discriminator (3 scales).
    """

    periods: tuple[int, ...] = (2, 3, 5, 7, 11)
    period_channels: tuple[int, ...] = (4, 8, 16, 32, 32)
    scale_channels: tuple[int, ...] = (8, 8, 16, 16, 32, 32, 32)
    scale_groups: tuple[int, ...] = (1, 2, 4, 4, 4, 4, 1)
    full_overrides: ClassVar[dict] = {
        "period_channels": (32, 128, 512, 1024, 1024),
        "scale_channels": (128, 128, 256, 512, 1024, 1024, 1024),
        "scale_groups": (1, 4, 16, 16, 16, 16, 1),
    }


class HiFiGANDiscriminators(nn.Module):
    """HiFi-GAN's discriminator pair: the multi-period (MPD) and multi-scale (MSD) ensembles of :mod:`course_lib.adversarial.discriminators`."""

    def __init__(self, sizes: DiscriminatorSizes | None = None) -> None:
        super().__init__()
        self.sizes = sizes = sizes or DiscriminatorSizes()
        self.mpd = MultiPeriodDiscriminator(tuple(sizes.periods), tuple(sizes.period_channels))
        self.msd = MultiScaleDiscriminator(3, tuple(sizes.scale_channels), groups=tuple(sizes.scale_groups))

    def forward(self, audio: Tensor) -> list:
        """``[MPD output, MSD output]`` (each a ``DiscriminatorOutput``) for ``(B, T)`` audio."""
        return [self.mpd(audio), self.msd(audio)]


def discriminator_loss(discriminators: HiFiGANDiscriminators, real: Tensor, fake: Tensor) -> Tensor:
    """HiFi-GAN's ``L_D`` (eqs. 1 and 6): least squares on real (target 1) and generated (target 0) audio, MPD + MSD.

    ``fake`` is detached here, so this loss trains only the discriminators.
    """
    on_real, on_fake = discriminators(real), discriminators(fake.detach())
    return sum(least_squares_discriminator_loss(r.logits, f.logits) for r, f in zip(on_real, on_fake, strict=True))


def mel_l1_loss(reference: Tensor, estimate: Tensor, config: MelConfig | None = None) -> Tensor:
    """HiFi-GAN's mel-spectrogram loss (eq. 4): the mean absolute difference of log-mel spectrograms.

    Uses :func:`course_lib.audio.log_mel_spectrogram` (natural log, floor 1e-5) with ``config``
    (default: the course's AudioLDM settings, 64 bands, hop 160 at 16 kHz). HiFi-GAN weighs it by 45.
    """
    config = config or MelConfig()
    return (log_mel_spectrogram(reference, config) - log_mel_spectrogram(estimate, config)).abs().mean()


def generator_losses(
    discriminators: HiFiGANDiscriminators | None,
    real: Tensor,
    fake: Tensor,
    mel_config: MelConfig | None = None,
    lambda_fm: float = 2.0,
    lambda_mel: float = 45.0,
) -> dict[str, Tensor]:
    """HiFi-GAN's generator loss (eq. 5): ``L_G = L_adv(G; D) + 2 L_FM + 45 L_mel``, summed over MPD and MSD.

    Args:
        discriminators: None gives the mel term alone (the warm-up: ``L_G = 45 L_mel``).
        real, fake: ``(B, T)`` audio and the generator's output for it (``fake`` with gradients).

    Returns:
        ``{"loss": L_G, "mel", "adversarial", "feature"}`` (the last two only with discriminators).
    """
    mel = mel_l1_loss(real, fake, mel_config)  # eq. 4
    if discriminators is None:
        return {"loss": lambda_mel * mel, "mel": mel}
    on_real, on_fake = discriminators(real), discriminators(fake)
    adversarial = sum(least_squares_generator_loss(f.logits) for f in on_fake)  # eq. 2
    feature = sum(
        feature_matching_loss(r.features, f.features, reduction="sum") for r, f in zip(on_real, on_fake, strict=True)
    )  # eq. 3
    return {
        "loss": adversarial + lambda_fm * feature + lambda_mel * mel,
        "mel": mel,
        "adversarial": adversarial,
        "feature": feature,
    }


class HiFiGANTrainingLoss:
    """``loss_fn(generator, real)`` for :class:`course_lib.train.Trainer`: HiFi-GAN's L_G, with the L_D step inside.

    The first ``mel_steps`` calls train on ``45 L_mel`` alone (a warm-up: a discriminator has little to
    learn from noise); from then on each call first takes one discriminator step on :func:`discriminator_loss`
    (AdamW with HiFi-GAN's betas and its own warm-up-free cosine schedule over the GAN steps), then
    returns :func:`generator_losses` against the updated discriminators, HiFi-GAN's order. The
    discriminators, their optimizer and schedule and the call count are part of a training checkpoint
    (:meth:`state_dict`), and under torchrun the discriminators stay one model (:class:`course_lib.adversarial.DiscriminatorStep`).

    Args:
        discriminators: MPD + MSD; ``optimizer``/``scheduler``: theirs.
        mel_steps: the calls before the discriminators join.
    """

    def __init__(
        self,
        discriminators: HiFiGANDiscriminators,
        optimizer: torch.optim.Optimizer,
        scheduler: object | None,
        mel_steps: int,
        mel_config: MelConfig | None = None,
    ) -> None:
        self.critic = DiscriminatorStep(discriminators, optimizer, scheduler)
        self.mel_steps, self.mel_config, self.calls = mel_steps, mel_config or MelConfig(), 0

    def __call__(self, generator: nn.Module, real: Tensor) -> dict[str, Tensor]:
        fake = generator(log_mel_spectrogram(real, self.mel_config))[..., : real.shape[-1]]  # (B, T)
        use_gan = self.calls >= self.mel_steps
        self.calls += 1
        if not use_gan:
            return generator_losses(None, real, fake, self.mel_config)
        loss_d = self.critic.step(lambda d: discriminator_loss(d, real, fake), real.device)
        return {**generator_losses(self.critic.discriminator, real, fake, self.mel_config), "discriminator": loss_d}

    def state_dict(self) -> dict:
        """The number of calls (steps) so far, the discriminators, their optimizer and scheduler."""
        return {"calls": self.calls, "critic": self.critic.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.calls = state["calls"]
        self.critic.load_state_dict(state["critic"])
