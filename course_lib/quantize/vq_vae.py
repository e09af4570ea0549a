"""A VQ-VAE for raw audio (van den Oord et al. 2017, "Neural Discrete Representation Learning", sec. 3).

A 1-D convolutional encoder turns a waveform into one D-dimensional vector per ``hop`` samples
(strided convolutions, hop = product of the strides), the ``VectorQuantizer`` replaces each vector
by its nearest code, and a mirrored decoder (transposed convolutions) turns the codes back into a
waveform. Trained with eq. 3 of the paper, the lecture's loss

    L = log p(x | z_q(x)) + ||sg[z_e(x)] - e||² + β ||z_e(x) - sg[e]||²,

where -log p(x | z_q(x)) is taken as the mean squared error of the waveform (a Gaussian decoder).
The layer stack follows Jukebox's VQ-VAE (strided convolution, then dilated residual units, per
resolution; Dhariwal et al. 2020, sec. 2.2 and appendix B.1).

Tiny preset (the defaults): hop 64 → 250 codes/s at 16 kHz, 256 codes, about 90k parameters; a
training step on 8 clips of 8,192 samples takes about 0.18 s of one CPU core, so 300 steps take about
a minute. Full preset: wider (128 channels), deeper, 1,024 codes, 2.1M parameters, for a GPU.

Notebook: notebooks/02_vq_vae.ipynb
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_lib.config import ScaledConfig
from course_lib.errors import AudioInputError, ConfigError
from course_lib.quantize.vector_quantizer import QuantizerOutput, VectorQuantizer


@dataclass
class VQVAEConfig(ScaledConfig):
    """Sizes of a ``VQVAE``; the field defaults are the tiny preset, ``full_overrides`` the full one.

    The quantizer fields map one-to-one onto ``VectorQuantizer``'s options.

    Notebook: notebooks/02_vq_vae.ipynb
    """

    channels: int = 32  # width of every convolution
    latent_dim: int = 32  # D, the size of a code vector
    codebook_size: int = 256  # K
    strides: tuple[int, ...] = (4, 4, 4)  # down-sampling factors, each >= 2; hop = their product
    residual_units: int = 1  # dilated residual units per resolution (dilations 1, 3, 9, ...)
    beta: float = 0.25
    use_ema: bool = False
    decay: float = 0.99
    kmeans_init: bool = False
    dead_code_steps: int = 0
    cosine: bool = False

    full_overrides: ClassVar[dict] = {
        "channels": 128,
        "latent_dim": 64,
        "codebook_size": 1024,
        "residual_units": 3,
    }

    @property
    def hop(self) -> int:
        """Samples per code: the product of the strides."""
        return math.prod(self.strides)


class VQVAEOutput(NamedTuple):
    """What ``VQVAE.forward`` returns."""

    reconstruction: Tensor  # (B, 1, T), same length as the input
    reconstruction_loss: Tensor  # mean squared error of the waveform, -log p(x | z_q(x)) up to constants
    vq: QuantizerOutput  # the quantizer's codes, losses, perplexity and usage
    loss: Tensor  # reconstruction_loss + vq.loss, eq. 3


class ResidualUnit(nn.Module):
    """x + Conv1x1(ELU(Conv3, dilated(ELU(x)))): Jukebox's residual unit, with ELU for ReLU."""

    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.ELU(),
            nn.Conv1d(channels, channels, 3, padding=dilation, dilation=dilation),
            nn.ELU(),
            nn.Conv1d(channels, channels, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x)  # (B, C, T)


def _down(channels: int, stride: int) -> nn.Conv1d:
    """Kernel 2s, stride s: T -> T / s exactly when s divides T."""
    return nn.Conv1d(channels, channels, 2 * stride, stride=stride, padding=(stride + 1) // 2)


def _up(channels: int, stride: int) -> nn.ConvTranspose1d:
    """The mirror of ``_down``: T -> T · s exactly."""
    padding = (stride + 1) // 2
    return nn.ConvTranspose1d(
        channels, channels, 2 * stride, stride=stride, padding=padding, output_padding=2 * padding - stride
    )


class Encoder(nn.Module):
    """Waveform (B, 1, T) -> latent vectors (B, D, T / hop)."""

    def __init__(self, config: VQVAEConfig) -> None:
        super().__init__()
        c = config.channels
        layers: list[nn.Module] = [nn.Conv1d(1, c, 7, padding=3)]
        for stride in config.strides:
            layers += [nn.ELU(), _down(c, stride)]
            layers += [ResidualUnit(c, 3**i) for i in range(config.residual_units)]
        layers += [nn.ELU(), nn.Conv1d(c, config.latent_dim, 3, padding=1)]
        self.layers = nn.Sequential(*layers)

    def forward(self, wav: Tensor) -> Tensor:
        return self.layers(wav)  # (B, D, T / hop)


class Decoder(nn.Module):
    """Latent or code vectors (B, D, T / hop) -> waveform (B, 1, T)."""

    def __init__(self, config: VQVAEConfig) -> None:
        super().__init__()
        c = config.channels
        layers: list[nn.Module] = [nn.Conv1d(config.latent_dim, c, 3, padding=1)]
        for stride in reversed(config.strides):
            layers += [ResidualUnit(c, 3**i) for i in reversed(range(config.residual_units))]
            layers += [nn.ELU(), _up(c, stride)]
        layers += [nn.ELU(), nn.Conv1d(c, 1, 7, padding=3)]
        self.layers = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.layers(z)  # (B, 1, T)


class VQVAE(nn.Module):
    """Encoder → VectorQuantizer → Decoder over raw audio.

    Example::

        model = VQVAE(VQVAEConfig.for_scale())
        out = model(wav)                       # wav: (B, T) or (B, 1, T)
        out.loss.backward()
        codes = model.encode(wav)              # (B, ceil(T / hop)) LongTensor
        audio = model.decode(codes)            # (B, 1, hop · codes.shape[1])

    Notebook: notebooks/02_vq_vae.ipynb
    """

    def __init__(self, config: VQVAEConfig | None = None) -> None:
        super().__init__()
        self.config = config or VQVAEConfig()
        if not self.config.strides or min(self.config.strides) < 2:
            raise ConfigError(f"strides must be one or more integers >= 2, got {self.config.strides}.")
        self.encoder = Encoder(self.config)
        self.quantizer = VectorQuantizer(
            self.config.latent_dim,
            self.config.codebook_size,
            beta=self.config.beta,
            use_ema=self.config.use_ema,
            decay=self.config.decay,
            kmeans_init=self.config.kmeans_init,
            dead_code_steps=self.config.dead_code_steps,
            cosine=self.config.cosine,
        )
        self.decoder = Decoder(self.config)

    @property
    def hop(self) -> int:
        """Samples per code."""
        return self.config.hop

    def forward(self, wav: Tensor) -> VQVAEOutput:
        """Reconstruct ``wav`` (B, T) or (B, 1, T); the loss is eq. 3 of the paper."""
        wav = _as_batch(wav)  # (B, 1, T)
        vq = self.quantizer(self.encoder(self._pad(wav)))  # quantized: (B, D, T' / hop)
        reconstruction = self.decoder(vq.quantized)[..., : wav.shape[-1]]  # (B, 1, T)
        reconstruction_loss = F.mse_loss(reconstruction, wav)
        return VQVAEOutput(reconstruction, reconstruction_loss, vq, reconstruction_loss + vq.loss)

    @torch.no_grad()
    def encode(self, wav: Tensor) -> Tensor:
        """Codes of ``wav``: (B, T) or (B, 1, T) -> LongTensor (B, ceil(T / hop))."""
        return self.quantizer.encode(self.encoder(self._pad(_as_batch(wav))))

    @torch.no_grad()
    def decode(self, codes: Tensor) -> Tensor:
        """Waveform of ``codes``: LongTensor (B, N) -> (B, 1, N · hop)."""
        return self.decoder(self.quantizer.decode(codes))

    def _pad(self, wav: Tensor) -> Tensor:
        """Zero-pad the end to a multiple of the hop, so every sample falls in a code's window."""
        return F.pad(wav, (0, -wav.shape[-1] % self.hop))  # (B, 1, hop · ceil(T / hop))


def _as_batch(wav: Tensor) -> Tensor:
    """(B, T) or (B, 1, T) -> (B, 1, T), checked."""
    if wav.ndim == 2:
        wav = wav.unsqueeze(1)
    if wav.ndim != 3 or wav.shape[1] != 1:
        raise AudioInputError(
            f"Expected mono audio as (B, T) or (B, 1, T), got shape {tuple(wav.shape)}: for stereo "
            "average the channels (wav.mean(1, keepdim=True)); for a single clip use wav[None]."
        )
    if not torch.isfinite(wav).all():
        raise AudioInputError("The waveform contains NaN or infinite values: check how it was loaded or made.")
    return wav


def vq_vae_loss(model: VQVAE, wav: Tensor) -> dict[str, Tensor]:
    """The Trainer's ``loss_fn``: eq. 3 of the VQ-VAE paper, the total and each term, perplexity and code usage.

    Notebook: notebooks/02_vq_vae.ipynb.
    """
    out = model(wav)
    return {
        "loss": out.loss,
        "reconstruction": out.reconstruction_loss,  # -log p(x | z_q(x)) as a waveform MSE
        "codebook": out.vq.codebook_loss,  # ||sg[z_e] - e||², 0 with EMA codebooks
        "commitment": out.vq.commitment_loss,  # β ||z_e - sg[e]||²
        "perplexity": out.vq.perplexity,
        "usage": out.vq.usage,
    }
