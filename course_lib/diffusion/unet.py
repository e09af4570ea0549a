"""A 2-D UNet that predicts the noise in a spectrogram: the "denoising auto-encoder" of the lecture's Algorithm slide.

Input and output are ``(B, C, n_mels, frames)``; the network follows DDPM's UNet (Ho et al. 2020,
Appendix B, itself a PixelCNN++ / Wide-ResNet UNet) with the improvements of Dhariwal & Nichol 2021
("Diffusion Models Beat GANs on Image Synthesis", Sec. 3):

- **Encoder**: a 3×3 stem convolution, then per resolution level ``blocks_per_level`` residual blocks
  (group norm, SiLU, 3×3 convolutions) and a stride-2 downsampling, except after the last level.
  Every encoder layer's output is kept as a *skip*.
- **Middle**: residual block, self-attention, residual block at the lowest resolution.
- **Decoder**: per level, ``blocks_per_level + 1`` residual blocks, each taking the concatenation of
  the running features and one skip (last in, first out), and a nearest-neighbour ×2 upsampling.
- **Self-attention** (multi-head, over all time-frequency positions) at the levels in ``attention_levels``,
  i.e. the low resolutions, where it is cheap and sees the whole spectrogram.
- **Time features**: a sinusoidal embedding of t (Vaswani et al. 2017, as in DDPM) through a 2-layer MLP,
  injected into every residual block in one of the two ways the lecture names
  (``UNetConfig.time_embedding``): ``"add"``, a per-channel bias added to the feature map after the
  first convolution (DDPM), or ``"adagn"``, adaptive group normalisation
  ``AdaGN(h, e) = (1 + e_s) · GroupNorm(h) + e_b`` with scale and shift predicted from the embedding
  (Dhariwal & Nichol 2021, Sec. 3; ``1 + e_s`` so that a zero projection is plain group norm).
- **Conditioning** (optional, ``cond_dim``): a vector (e.g. a CLAP embedding) projected and added to
  the time embedding; rows whose ``cond_mask`` is False, or all rows when ``cond`` is None, get a
  learned null embedding instead, which classifier-free guidance needs
  (:class:`course_lib.diffusion.samplers.ClassifierFreeGuidance`).
- **ControlNet injection points** (Zhang et al. 2023): ``forward`` takes optional additive residuals
  for every skip and for the middle block's output, the places where ControlNet's zero convolutions
  enter. ``encoder``, ``middle`` and ``decoder`` are separate attributes, and ``skip_channels`` lists
  the channels of each skip, so a ControlNet can copy the encoder and middle block.

Sizes: ``n_mels`` and ``frames`` must be divisible by ``2 ** (len(channel_mults) - 1)`` (one halving per
level after the first); :attr:`UNet.size_multiple` says by what.

Notebooks: notebooks/07_ddpm.ipynb (trains the tiny preset), 08_latent_diffusion.ipynb, 09_controlnet.ipynb.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_lib.config import ScaledConfig
from course_lib.errors import ConfigError

TIME_EMBEDDINGS = ("add", "adagn")


@dataclasses.dataclass
class UNetConfig(ScaledConfig):
    """The UNet's shape. Defaults are the ``tiny`` preset; ``UNetConfig.full()`` has 43.6 M parameters,
    about the size of Music ControlNet's UNet (41 M), for a GPU.

    The tiny preset has 0.30 M parameters and costs 0.53 GFLOP per 64×64 forward pass. You should see:
    on SynthMusic 64×64 log-mel patches scaled to [-1, 1], batches of 8, lr 2e-3, one (busy) CPU core,
    about 0.7 s per training step, and the ε-loss falling from about 0.4 (mean of the first 10 steps)
    to about 0.07 by step 70, i.e. within a minute.

    Attributes:
        in_channels, out_channels: channels of the spectrogram in and of the prediction out (None = same).
        base_channels: channels at the first level; level ``i`` has ``base_channels * channel_mults[i]``.
        channel_mults: one entry per resolution level.
        blocks_per_level: residual blocks per level in the encoder (the decoder has one more).
        attention_levels: indices of the levels with self-attention (the middle block always has it).
        attention_heads: heads of each self-attention layer.
        norm_groups: groups of every group normalisation (must divide every channel count).
        time_embedding: ``"adagn"`` (adaptive group norm, scale and shift) or ``"add"`` (spatial addition).
        cond_dim: size of the conditioning vector; None for an unconditional model.
        dropout: dropout inside the residual blocks.

    Notebook: notebooks/07_ddpm.ipynb
    """

    in_channels: int = 1
    out_channels: int | None = None
    base_channels: int = 16
    channel_mults: tuple[int, ...] = (1, 2, 2)
    blocks_per_level: int = 1
    attention_levels: tuple[int, ...] = (2,)
    attention_heads: int = 4
    norm_groups: int = 4
    time_embedding: str = "adagn"
    cond_dim: int | None = None
    dropout: float = 0.0
    full_overrides: ClassVar[dict] = {
        "base_channels": 96,
        "channel_mults": (1, 2, 2, 4),
        "blocks_per_level": 2,
        "attention_levels": (2, 3),
        "norm_groups": 32,
        "dropout": 0.1,
    }

    def __post_init__(self) -> None:
        self.channel_mults = tuple(self.channel_mults)
        self.attention_levels = tuple(self.attention_levels)
        if self.time_embedding not in TIME_EMBEDDINGS:
            raise ConfigError(
                f"Unknown time_embedding {self.time_embedding!r}: use 'adagn' (adaptive group norm) or 'add'."
            )
        if not self.channel_mults:
            raise ConfigError("channel_mults needs at least one level.")
        for mult in self.channel_mults:
            channels = self.base_channels * mult
            if channels % self.norm_groups or channels % self.attention_heads:
                raise ConfigError(
                    f"{channels} channels (base_channels {self.base_channels} × {mult}) must be divisible by "
                    f"norm_groups={self.norm_groups} and attention_heads={self.attention_heads}."
                )
        if any(not 0 <= level < len(self.channel_mults) for level in self.attention_levels):
            last = len(self.channel_mults) - 1
            raise ConfigError(f"attention_levels {self.attention_levels} must index channel_mults (0 … {last}).")


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Sinusoidal features of the timestep (Vaswani et al. 2017, Sec. 3.5; DDPM Appendix B).

    ``[sin(t ω_0), …, sin(t ω_{d/2-1}), cos(t ω_0), …]`` with ``ω_i = max_period^(-i / (d/2))``.

    Args:
        t: ``(B,)`` timesteps (integers or floats).
        dim: even number of features.

    Returns:
        ``(B, dim)`` float32 features.
    """
    half = dim // 2
    frequencies = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)  # (dim/2,)
    angles = t.float()[:, None] * frequencies[None, :]  # (B, dim/2)
    return torch.cat([angles.sin(), angles.cos()], dim=1)  # (B, dim)


class ResidualBlock(nn.Module):
    """GroupNorm → SiLU → 3×3 conv → time injection → (GroupNorm) → SiLU → dropout → 3×3 conv, plus the input.

    The time embedding enters by spatial addition (``"add"``, DDPM) or by adaptive group norm
    (``"adagn"``, Dhariwal & Nichol 2021): see the module docstring.
    """

    def __init__(
        self, in_channels: int, out_channels: int, emb_dim: int, time_embedding: str, groups: int, dropout: float
    ) -> None:
        super().__init__()
        self.adaptive = time_embedding == "adagn"
        self.norm1 = nn.GroupNorm(groups, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, 2 * out_channels if self.adaptive else out_channels)
        self.norm2 = nn.GroupNorm(groups, out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, C_out, H, W)
        e = self.emb_proj(F.silu(emb))[:, :, None, None]  # (B, 2·C_out or C_out, 1, 1)
        if self.adaptive:
            scale, shift = e.chunk(2, dim=1)  # (B, C_out, 1, 1) each
            h = self.norm2(h) * (1 + scale) + shift  # (B, C_out, H, W)  AdaGN
        else:
            h = self.norm2(h + e)  # (B, C_out, H, W)  spatial addition
        h = self.conv2(self.dropout(F.silu(h)))  # (B, C_out, H, W)
        return self.skip(x) + h  # (B, C_out, H, W)


class SelfAttention(nn.Module):
    """Multi-head self-attention over all ``H × W`` positions, with a residual connection (DDPM, Appendix B)."""

    def __init__(self, channels: int, heads: int, groups: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w)  # (B, 3, nh, hs, HW)
        # contiguous: with a strided last axis, scaled_dot_product_attention falls back to its unfused
        # "math" path on the CPU, about 2.5x slower for the tiny UNet's attention (same result to 1e-6)
        q, k, v = qkv.transpose(-1, -2).contiguous().unbind(1)  # (B, nh, HW, hs) each
        out = F.scaled_dot_product_attention(q, k, v)  # (B, nh, HW, hs)
        out = out.transpose(-1, -2).reshape(b, c, h, w)  # (B, C, H, W)
        return x + self.proj(out)  # (B, C, H, W)


class Downsample(nn.Module):
    """Halve height and width with a stride-2 3×3 convolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)  # (B, C, H/2, W/2)


class Upsample(nn.Module):
    """Double height and width: nearest-neighbour repeat, then a 3×3 convolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))  # (B, C, 2H, 2W)


class EmbedSequential(nn.Sequential):
    """A sequence of layers; the residual blocks among them also receive the embedding."""

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResidualBlock) else layer(x)  # (B, C, H, W)
        return x


class UNet(nn.Module):
    """The noise-prediction network ``model(x_t, t, cond=None) -> ε̂``; see the module docstring.

    Attributes:
        encoder: ``nn.ModuleList`` of :class:`EmbedSequential`; the stem first, each entry's output a skip.
        middle: the middle block (residual, attention, residual).
        decoder: ``nn.ModuleList`` of :class:`EmbedSequential`, each consuming one skip.
        skip_channels: channels of each skip, in encoder order.
        size_multiple: ``n_mels`` and ``frames`` must be multiples of it.

    Notebooks: notebooks/07_ddpm.ipynb, 08_latent_diffusion.ipynb
    """

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or UNetConfig()
        base, time_dim = config.base_channels, 4 * config.base_channels

        def residual(c_in: int, c_out: int) -> ResidualBlock:
            return ResidualBlock(c_in, c_out, time_dim, config.time_embedding, config.norm_groups, config.dropout)

        def attention(channels: int) -> SelfAttention:
            return SelfAttention(channels, config.attention_heads, config.norm_groups)

        self.time_mlp = nn.Sequential(nn.Linear(base, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        self.cond_proj = nn.Linear(config.cond_dim, time_dim) if config.cond_dim else None
        self.null_cond = nn.Parameter(torch.zeros(time_dim)) if config.cond_dim else None

        last = len(config.channel_mults) - 1
        self.encoder = nn.ModuleList([EmbedSequential(nn.Conv2d(config.in_channels, base, 3, padding=1))])
        skip_channels, channels = [base], base
        for level, mult in enumerate(config.channel_mults):
            for _ in range(config.blocks_per_level):
                layers: list[nn.Module] = [residual(channels, base * mult)]
                channels = base * mult
                if level in config.attention_levels:
                    layers.append(attention(channels))
                self.encoder.append(EmbedSequential(*layers))
                skip_channels.append(channels)
            if level != last:
                self.encoder.append(EmbedSequential(Downsample(channels)))
                skip_channels.append(channels)
        self.skip_channels = tuple(skip_channels)

        self.middle = EmbedSequential(residual(channels, channels), attention(channels), residual(channels, channels))

        self.decoder = nn.ModuleList()
        pending = list(skip_channels)
        for level in reversed(range(last + 1)):
            for block in range(config.blocks_per_level + 1):
                layers = [residual(channels + pending.pop(), base * config.channel_mults[level])]
                channels = base * config.channel_mults[level]
                if level in config.attention_levels:
                    layers.append(attention(channels))
                if level != 0 and block == config.blocks_per_level:
                    layers.append(Upsample(channels))
                self.decoder.append(EmbedSequential(*layers))

        out_channels = config.out_channels or config.in_channels
        self.out = nn.Sequential(
            nn.GroupNorm(config.norm_groups, channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1)
        )

    @property
    def size_multiple(self) -> int:
        return 2 ** (len(self.config.channel_mults) - 1)

    def embed(self, t: Tensor, cond: Tensor | None = None, cond_mask: Tensor | None = None) -> Tensor:
        """The embedding every residual block receives: time MLP(sinusoid(t)) + projected condition (or null).

        Args:
            t: ``(B,)`` timesteps.
            cond: ``(B, cond_dim)`` or None (null condition for every row).
            cond_mask: ``(B,)`` bool, False where the null condition replaces ``cond``.

        Returns:
            ``(B, 4 · base_channels)``.
        """
        emb = self.time_mlp(timestep_embedding(t, self.config.base_channels))  # (B, D)
        if self.cond_proj is None:
            if cond is not None:
                raise ConfigError("This UNet has no conditioning input: build it with UNetConfig(cond_dim=...).")
            return emb
        null = self.null_cond.expand_as(emb)  # (B, D)
        if cond is None:
            return emb + null  # (B, D)
        projected = self.cond_proj(cond)  # (B, D)
        if cond_mask is not None:
            projected = torch.where(cond_mask[:, None], projected, null)  # (B, D)
        return emb + projected  # (B, D)

    def encode(self, x: Tensor, emb: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Run the encoder: the lowest-resolution features and the skips, in encoder order."""
        skips = []
        for layer in self.encoder:
            x = layer(x, emb)  # (B, C_level, H_level, W_level)
            skips.append(x)
        return x, skips

    def decode(self, h: Tensor, skips: Sequence[Tensor], emb: Tensor) -> Tensor:
        """Run the decoder, consuming the skips last in first out, and the output head."""
        pending = list(skips)
        for layer in self.decoder:
            h = layer(torch.cat([h, pending.pop()], dim=1), emb)  # (B, C_level, H_level, W_level)
        return self.out(h)  # (B, C_out, H, W)

    def forward(
        self,
        x: Tensor,
        t: Tensor | int,
        cond: Tensor | None = None,
        cond_mask: Tensor | None = None,
        skip_residuals: Sequence[Tensor] | None = None,
        middle_residual: Tensor | None = None,
    ) -> Tensor:
        """Predict from ``x`` ``(B, C, n_mels, frames)`` at timesteps ``t`` (``(B,)`` or one number).

        Args:
            cond, cond_mask: see :meth:`embed`.
            skip_residuals: one tensor per skip (shapes as the skips, see ``skip_channels``), added to
                the skips before the decoder reads them: ControlNet's injection.
            middle_residual: added to the middle block's output.

        Returns:
            ``(B, out_channels, n_mels, frames)``.
        """
        self._check_input(x)
        t = torch.as_tensor(t, device=x.device)
        t = t.expand(x.shape[0]) if t.ndim == 0 else t  # (B,)
        emb = self.embed(t, cond, cond_mask)  # (B, D)
        h, skips = self.encode(x, emb)  # (B, C_last, H / m, W / m)
        h = self.middle(h, emb)  # (B, C_last, H / m, W / m)
        if middle_residual is not None:
            h = h + middle_residual  # (B, C_last, H / m, W / m)
        if skip_residuals is not None:
            if len(skip_residuals) != len(skips):
                raise ConfigError(
                    f"skip_residuals has {len(skip_residuals)} tensors; this UNet has {len(skips)} skips."
                )
            skips = [skip + residual for skip, residual in zip(skips, skip_residuals, strict=True)]
        return self.decode(h, skips, emb)  # (B, C_out, H, W)

    def _check_input(self, x: Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise ConfigError(
                f"UNet expects (B, {self.config.in_channels}, n_mels, frames), got shape {tuple(x.shape)}; "
                "add a channel axis with x.unsqueeze(1)."
            )
        height, width = x.shape[-2:]
        m = self.size_multiple
        if height % m or width % m:
            raise ConfigError(
                f"UNet input {height}×{width} is not divisible by {m} (2^{len(self.config.channel_mults) - 1}, "
                f"one halving per level after the first): crop or pad n_mels and frames to multiples of {m}, "
                "or use fewer channel_mults."
            )
