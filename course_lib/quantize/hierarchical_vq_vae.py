"""Jukebox's hierarchical VQ-VAE (Dhariwal et al. 2020, "Jukebox: A Generative Model for Music", sec. 2.2).

Three VQ-VAEs share one codebook size but compress the same audio by growing hop lengths (8, 32
and 128 samples per code in Jukebox). Each level encodes the waveform *independently* and has its
own decoder that reconstructs the waveform from that level's codes alone, so the levels can be
compared: the upper levels keep more of the musical structure per token but reconstruct worse
(Jukebox reports spectral convergence of about -23.0 / -12.4 / -8.3 dB from bottom to top). The
loss is the sum of the levels' VQ-VAE losses. Defaults follow Jukebox: EMA codebooks (decay 0.99),
commitment β = 0.02 and restarts of unused codes.

Tiny preset (the defaults): 16 channels and 256 codes per level, about 55k parameters in all; a
training step on 8 clips of 8,192 samples takes about 0.2 s of one CPU core (300 steps in about a
minute). Full preset: 64 channels, 2,048 codes per level (as Jukebox), 1.5M parameters, for a GPU.

Token rate of a configuration: the sum over levels of sample_rate / hop; Jukebox at 44.1 kHz
gives 5,512.5 + 1,378.1 + 344.5 ≈ 7,235 tokens per second (the lecture quotes "about 7,234").

Notebook: notebooks/03_hierarchical_vqvae.ipynb
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
from torch import Tensor, nn

from course_lib.config import ScaledConfig
from course_lib.errors import ConfigError
from course_lib.quantize.vq_vae import VQVAE, VQVAEConfig, VQVAEOutput

JUKEBOX_HOPS = (8, 32, 128)


def token_rate(sample_rate: float, hops: Sequence[int]) -> float:
    """Tokens per second of a hierarchy: Σ_levels sample_rate / hop.

    ``token_rate(44_100, (8, 32, 128))`` = 5,512.5 + 1,378.125 + 344.53 ≈ 7,235.2 (Jukebox).

    Notebook: notebooks/03_hierarchical_vqvae.ipynb
    """
    if sample_rate <= 0 or not hops or min(hops) < 1:
        raise ConfigError(f"token_rate needs sample_rate > 0 and hops >= 1, got {sample_rate} and {hops}.")
    return sum(sample_rate / hop for hop in hops)


@dataclass
class HierarchicalVQVAEConfig(ScaledConfig):
    """Sizes of a ``HierarchicalVQVAE``; defaults are the tiny preset, ``full_overrides`` the full one.

    ``level_strides`` lists each level's down-sampling factors, bottom level first; the hops are
    their products (8, 32, 128 as in Jukebox). The other fields are shared by all levels.

    Notebook: notebooks/03_hierarchical_vqvae.ipynb
    """

    level_strides: tuple[tuple[int, ...], ...] = ((4, 2), (4, 4, 2), (4, 4, 4, 2))
    channels: int = 16
    latent_dim: int = 16
    codebook_size: int = 256
    residual_units: int = 1
    beta: float = 0.02
    use_ema: bool = True
    decay: float = 0.99
    kmeans_init: bool = False
    dead_code_steps: int = 20
    cosine: bool = False

    full_overrides: ClassVar[dict] = {
        "channels": 64,
        "latent_dim": 64,
        "codebook_size": 2048,
        "residual_units": 3,
        "dead_code_steps": 100,
    }

    @property
    def hops(self) -> tuple[int, ...]:
        """Samples per code at each level, bottom first."""
        return tuple(math.prod(strides) for strides in self.level_strides)

    def level(self, index: int) -> VQVAEConfig:
        """The ``VQVAEConfig`` of one level (0 = bottom, shortest hop)."""
        shared = {k: v for k, v in self.to_dict().items() if k != "level_strides"}
        return VQVAEConfig(strides=tuple(self.level_strides[index]), **shared)


class HierarchicalOutput(NamedTuple):
    """What ``HierarchicalVQVAE.forward`` returns."""

    levels: tuple[VQVAEOutput, ...]  # one per level, bottom first: reconstruction, losses, codes
    loss: Tensor  # sum of the levels' losses


class HierarchicalVQVAE(nn.Module):
    """Independent VQ-VAE levels over the same audio, with growing hops and one codebook size.

    Example::

        model = HierarchicalVQVAE(HierarchicalVQVAEConfig.for_scale())
        out = model(wav)                                   # wav: (B, T) or (B, 1, T)
        out.loss.backward()
        errors = [level.reconstruction_loss.item() for level in out.levels]   # bottom -> top
        codes = model.encode(wav)                          # [(B, T/8), (B, T/32), (B, T/128)]
        top_only = model.decode(codes[2], level=2)         # (B, 1, T)

    Notebook: notebooks/03_hierarchical_vqvae.ipynb
    """

    def __init__(self, config: HierarchicalVQVAEConfig | None = None) -> None:
        super().__init__()
        self.config = config or HierarchicalVQVAEConfig()
        self.levels = nn.ModuleList(VQVAE(self.config.level(i)) for i in range(len(self.config.level_strides)))

    @property
    def hops(self) -> tuple[int, ...]:
        """Samples per code at each level, bottom first."""
        return self.config.hops

    def forward(self, wav: Tensor) -> HierarchicalOutput:
        """Encode, quantize and reconstruct ``wav`` at every level; the loss sums the levels."""
        levels = tuple(level(wav) for level in self.levels)
        return HierarchicalOutput(levels, torch.stack([out.loss for out in levels]).sum())

    def encode(self, wav: Tensor) -> list[Tensor]:
        """Codes of every level, bottom first: [(B, ceil(T / hop_l)) LongTensor for each level l]."""
        return [level.encode(wav) for level in self.levels]

    def decode(self, codes: Tensor, level: int) -> Tensor:
        """Waveform from one level's codes: LongTensor (B, N) -> (B, 1, N · hop_level)."""
        return self.levels[level].decode(codes)

    def token_rate(self, sample_rate: float) -> float:
        """Tokens per second of this model at ``sample_rate`` (all levels together)."""
        return token_rate(sample_rate, self.hops)


def hierarchical_loss(model: HierarchicalVQVAE, wav: Tensor) -> dict[str, Tensor]:
    """The Trainer's ``loss_fn``: the sum of the levels' VQ-VAE losses (Jukebox sec. 2.2), each level's terms (0 = bottom).

    Notebook: notebooks/03_hierarchical_vqvae.ipynb.
    """
    out = model(wav)
    terms = {"loss": out.loss}
    for i, level in enumerate(out.levels):
        terms[f"reconstruction_{i}"] = level.reconstruction_loss
        terms[f"commitment_{i}"] = level.vq.commitment_loss
        terms[f"perplexity_{i}"] = level.vq.perplexity
        terms[f"usage_{i}"] = level.vq.usage
    return terms
