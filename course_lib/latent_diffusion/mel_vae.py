"""A KL-regularised convolutional autoencoder on log-mel spectrograms: AudioLDM's VAE, small.

Latent diffusion (Rombach et al. 2022, "High-Resolution Image Synthesis with Latent Diffusion Models",
Sec. 3.1) first trains an autoencoder and then runs the diffusion model on its latents. AudioLDM
(Liu et al. 2023, Sec. 2.2) does this on the log-mel spectrogram (16 kHz, hop 160, 64 mel bins, as
:class:`course_lib.audio.MelConfig`): an encoder maps ``x`` ``(B, 1, 64, F)`` to a diagonal Gaussian
``q(z | x) = N(μ(x), diag σ²(x))`` over ``z`` ``(B, C, 64/r, F/r)`` with a compression ``r = 4`` and a
few channels ``C``; a decoder maps a sample ``z`` back. The loss is::

    L = ‖x - D(z)‖₁  +  β · KL(q(z|x) ‖ N(0, I)),    z = μ + σ ⊙ ε       (reparameterisation)
    KL = ½ Σ (μ² + σ² - 1 - log σ²)                                      (Kingma & Welling 2014, App. B)

(+ an optional spectral-convergence term on the linear mel magnitude, Arik et al. 2018, so the loud
bands, which are what one hears, weigh more than the silent ones). β is tiny (LDM and AudioLDM use
1e-6 per summed KL against a summed L1): the KL term only keeps the latents from drifting to huge
values and makes the decoder robust to small perturbations, it does not force them to be N(0, I).
So the latents' scale is arbitrary, and the diffusion model wants unit variance: like Stable
Diffusion's 0.18215, :meth:`MelVAE.fit_latent_scale` measures ``1 / std(z)`` on training data and
stores it in the model (``latent_scale``), and :meth:`MelVAE.to_latent` / :meth:`MelVAE.from_latent`
apply it.

Layout (a small version of the LDM / Stable Diffusion autoencoder): 3×3 stem, per level a residual
block and a stride-2 convolution (two halvings: ×4), a middle block, a 1×1 head to ``2C`` channels
(mean and log-variance); the decoder mirrors it with nearest-neighbour up-sampling. Frames are padded
with silence to a multiple of :attr:`MelVAE.frame_multiple` (:func:`pad_frames`).

Inputs are log-mel spectrograms in the course's model units (:class:`course_lib.diffusion.SpectrogramScaling`,
about [-1, 1]); :meth:`MelVAE.encode_log_mel` and :meth:`MelVAE.decode_to_log_mel` take and give nats.

Notebook: notebooks/08_latent_diffusion.ipynb.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_lib.audio import spectral_convergence
from course_lib.config import ScaledConfig
from course_lib.diffusion.mel_patches import SpectrogramScaling
from course_lib.errors import ConfigError

SILENCE = -1.0  # the log-mel floor in model units (SpectrogramScaling maps log 1e-5 to -1)


@dataclasses.dataclass
class MelVAEConfig(ScaledConfig):
    """The autoencoder's shape and loss weights. Defaults are the ``tiny`` preset.

    Attributes:
        n_mels: mel bins of the input (64, AudioLDM's).
        latent_channels: ``C``, channels of the latent (AudioLDM: 8).
        channels: channels at each level; ``len(channels) - 1`` halvings (2: compression 4).
        norm_groups: groups of the group normalisations (must divide every channel count).
        kl_weight: β of the KL term, relative to the L1 term, both *summed* over a sample (LDM's convention).
        spectral_weight: weight of the spectral-convergence term on the linear mel magnitude (0: off).

    Notebook: notebooks/08_latent_diffusion.ipynb
    """

    n_mels: int = 64
    latent_channels: int = 4
    channels: tuple[int, ...] = (16, 32, 64)
    norm_groups: int = 8
    kl_weight: float = 1e-5
    spectral_weight: float = 0.1
    full_overrides: ClassVar[dict] = {"latent_channels": 8, "channels": (64, 128, 256), "norm_groups": 32}

    def __post_init__(self) -> None:
        self.channels = tuple(self.channels)
        if len(self.channels) < 2:
            raise ConfigError("MelVAEConfig.channels needs at least two levels (one halving).")
        if any(c % self.norm_groups for c in self.channels):
            raise ConfigError(
                f"every entry of channels {self.channels} must be divisible by norm_groups={self.norm_groups}."
            )
        if self.n_mels % 2 ** (len(self.channels) - 1):
            raise ConfigError(
                f"n_mels={self.n_mels} must be divisible by the compression {2 ** (len(self.channels) - 1)}: "
                "use fewer levels in channels or another number of mel bins."
            )

    @property
    def compression(self) -> int:
        return 2 ** (len(self.channels) - 1)


class VAEResidualBlock(nn.Module):
    """GroupNorm → SiLU → 3×3 conv, twice, plus the (1×1-projected) input."""

    def __init__(self, in_channels: int, out_channels: int, groups: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.GroupNorm(groups, in_channels), nn.SiLU(), nn.Conv2d(in_channels, out_channels, 3, padding=1),
            nn.GroupNorm(groups, out_channels), nn.SiLU(), nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )  # fmt: skip
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(x) + self.block(x)  # (B, C_out, H, W)


@dataclasses.dataclass
class DiagonalGaussian:
    """``q(z | x) = N(mean, diag exp(logvar))``, what the encoder returns."""

    mean: Tensor  # (B, C, H, W)
    logvar: Tensor  # (B, C, H, W)

    @property
    def std(self) -> Tensor:
        return torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        """``z = μ + σ ⊙ ε`` (the reparameterisation trick: differentiable in μ and σ)."""
        noise = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * noise  # (B, C, H, W)

    def kl(self) -> Tensor:
        """``KL(q ‖ N(0, I)) = ½ Σ (μ² + σ² - 1 - log σ²)``, summed over each sample: ``(B,)``."""
        return 0.5 * (self.mean**2 + self.logvar.exp() - 1.0 - self.logvar).flatten(1).sum(1)


def pad_frames(x: Tensor, multiple: int, value: float = SILENCE) -> Tensor:
    """Pad the last (time) axis on the right with ``value`` (silence) up to a multiple of ``multiple``.

    Notebook: notebooks/08_latent_diffusion.ipynb
    """
    extra = (-x.shape[-1]) % multiple
    return F.pad(x, (0, extra), value=value) if extra else x


class MelVAE(nn.Module):
    """The KL autoencoder on scaled log-mel spectrograms; see the module docstring.

    Attributes:
        latent_scale: ``1 / std`` of the training latents (a buffer, saved with the weights; 1 until
            :meth:`fit_latent_scale` is called).
        frame_multiple: the time axis is padded to a multiple of this (the compression).

    Notebook: notebooks/08_latent_diffusion.ipynb
    """

    def __init__(self, config: MelVAEConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or MelVAEConfig()
        ch, groups = config.channels, config.norm_groups
        encoder: list[nn.Module] = [nn.Conv2d(1, ch[0], 3, padding=1)]
        for level in range(len(ch)):
            encoder.append(VAEResidualBlock(ch[max(level - 1, 0)], ch[level], groups))
            if level < len(ch) - 1:
                encoder.append(nn.Conv2d(ch[level], ch[level], 3, stride=2, padding=1))
        encoder += [
            VAEResidualBlock(ch[-1], ch[-1], groups),
            nn.GroupNorm(groups, ch[-1]), nn.SiLU(), nn.Conv2d(ch[-1], 2 * config.latent_channels, 3, padding=1),
        ]  # fmt: skip
        self.encoder = nn.Sequential(*encoder)
        decoder: list[nn.Module] = [
            nn.Conv2d(config.latent_channels, ch[-1], 3, padding=1),
            VAEResidualBlock(ch[-1], ch[-1], groups),
        ]
        for level in reversed(range(len(ch))):
            decoder.append(VAEResidualBlock(ch[min(level + 1, len(ch) - 1)], ch[level], groups))
            if level > 0:
                decoder += [
                    nn.Upsample(scale_factor=2.0, mode="nearest"),
                    nn.Conv2d(ch[level], ch[level], 3, padding=1),
                ]
        decoder += [nn.GroupNorm(groups, ch[0]), nn.SiLU(), nn.Conv2d(ch[0], 1, 3, padding=1)]
        self.decoder = nn.Sequential(*decoder)
        self.register_buffer("latent_scale", torch.ones(()))
        self.scaling = SpectrogramScaling()

    @property
    def frame_multiple(self) -> int:
        return self.config.compression

    def _check(self, x: Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != 1 or x.shape[2] != self.config.n_mels:
            raise ConfigError(
                f"MelVAE expects scaled log-mel (B, 1, {self.config.n_mels}, frames), got {tuple(x.shape)}: "
                "add the channel axis with x.unsqueeze(1), or use encode_log_mel for (B, n_mels, frames) in nats."
            )
        if x.shape[-1] % self.frame_multiple:
            raise ConfigError(
                f"{x.shape[-1]} frames is not a multiple of {self.frame_multiple}: pad with "
                f"course_lib.latent_diffusion.pad_frames(x, {self.frame_multiple})."
            )

    def encode(self, x: Tensor) -> DiagonalGaussian:
        """``q(z | x)`` for scaled log-mel ``x`` ``(B, 1, n_mels, F)`` (F a multiple of :attr:`frame_multiple`)."""
        self._check(x)
        moments = self.encoder(x)  # (B, 2C, n_mels / r, F / r)
        mean, logvar = moments.chunk(2, dim=1)  # (B, C, n_mels / r, F / r) each
        return DiagonalGaussian(mean, logvar.clamp(-30.0, 20.0))

    def decode(self, z: Tensor) -> Tensor:
        """Scaled log-mel ``(B, 1, n_mels, F)`` from a latent ``(B, C, n_mels / r, F / r)`` (unscaled units)."""
        return self.decoder(z)  # (B, 1, n_mels, F)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, DiagonalGaussian]:
        """Reconstruction of ``x`` through a *sampled* latent, and the posterior."""
        posterior = self.encode(x)
        return self.decode(posterior.sample(generator)), posterior

    def loss(self, x: Tensor) -> dict[str, Tensor]:
        """The training loss of the module docstring, per input element (so it does not grow with the batch).

        Returns:
            ``{"loss", "l1", "kl", "spectral"}`` (``kl`` per latent element, for reading).
        """
        reconstruction, posterior = self(x)
        l1 = (reconstruction - x).abs().mean()  # Σ|x - x̂| / N_x
        kl_sum = posterior.kl().mean()  # per sample
        loss = l1 + self.config.kl_weight * kl_sum / x[0].numel()  # (Σ L1 + β KL) / N_x
        spectral = x.new_zeros(())
        if self.config.spectral_weight > 0:
            # model units -> linear mel; clamped at +1.5 (louder than any SynthMusic band) so an untrained
            # decoder's large outputs cannot blow the exponential up
            to_mel = lambda v: self.scaling.to_log_mel(v.clamp(max=1.5)).exp()  # noqa: E731
            spectral = spectral_convergence(to_mel(x.squeeze(1)), to_mel(reconstruction.squeeze(1))).mean()
            loss = loss + self.config.spectral_weight * spectral
        return {"loss": loss, "l1": l1, "kl": kl_sum / posterior.mean[0].numel(), "spectral": spectral}

    # --- latents for the diffusion model -------------------------------------------------------------

    @torch.no_grad()
    def fit_latent_scale(self, x: Tensor, batch_size: int = 64) -> float:
        """Set ``latent_scale = 1 / std`` of sampled latents of ``x`` (as Stable Diffusion's 0.18215); return it."""
        latents = torch.cat([self.encode(x[i : i + batch_size]).sample() for i in range(0, len(x), batch_size)])
        self.latent_scale.fill_(1.0 / latents.float().std().clamp_min(1e-8).item())
        return float(self.latent_scale)

    def to_latent(self, x: Tensor, sample: bool = True, generator: torch.Generator | None = None) -> Tensor:
        """The diffusion model's data: ``latent_scale · z``, ``z ~ q(z | x)`` (or its mean with ``sample=False``)."""
        posterior = self.encode(x)
        z = posterior.sample(generator) if sample else posterior.mean  # (B, C, n_mels / r, F / r)
        return z * self.latent_scale

    def from_latent(self, z_scaled: Tensor) -> Tensor:
        """Decode a diffusion sample (in scaled latent units) to scaled log-mel ``(B, 1, n_mels, F)``."""
        return self.decode(z_scaled / self.latent_scale)

    def encode_log_mel(self, log_mel: Tensor, sample: bool = False) -> Tensor:
        """Log-mel in nats ``(B, n_mels, F)`` (any F: padded) → scaled latents ``(B, C, n_mels / r, ⌈F / r⌉)``."""
        x = pad_frames(self.scaling.to_model(log_mel).unsqueeze(1), self.frame_multiple)  # (B, 1, M, F')
        return self.to_latent(x, sample=sample)

    def decode_to_log_mel(self, z_scaled: Tensor, frames: int | None = None) -> Tensor:
        """Scaled latents → log-mel in nats ``(B, n_mels, frames)`` (cropped to ``frames`` if given)."""
        log_mel = self.scaling.to_log_mel(self.from_latent(z_scaled)).squeeze(1)  # (B, M, F')
        return log_mel if frames is None else log_mel[..., :frames]

    def latent_shape(self, frames: int) -> tuple[int, int, int]:
        """``(C, n_mels / r, ⌈frames / r⌉)``: the latent of a spectrogram with ``frames`` frames."""
        r = self.config.compression
        return (self.config.latent_channels, self.config.n_mels // r, math.ceil(frames / r))
