"""SEANet-style convolutional encoder and decoder, the body of SoundStream and EnCodec.

The encoder (SoundStream, Zeghidour et al. 2021, sec. III-A and fig. 3; EnCodec, Défossez et al.
2022, sec. 3.1) is a 1-D convolution followed by B blocks, each made of residual units and a strided
down-sampling convolution that *doubles* the channels, then a convolution to the latent size D::

    wav (B, 1, T) -> Conv7(C) -> [ResUnits(C·2^b) -> ELU -> Conv(2s_b, stride s_b)(C·2^(b+1))] x B -> ELU -> Conv3(D)
    = z (B, D, T / Π s_b)

The decoder mirrors it: a convolution from D to the widest width, then per block a transposed
convolution (up-sampling by s_b, halving the channels) followed by residual units, then a
convolution to one channel. A residual unit is ``x + Conv1(ELU(Conv3_dilated(ELU(x))))`` with the
inner width halved (EnCodec's "compress" of 2); SoundStream uses three units per block with
dilations 1, 3, 9, EnCodec one unit per block (and an LSTM we leave out). All convolutions are
weight-normalised (EnCodec). At 16 kHz the strides (2, 4, 5, 8) give a hop of 320 samples: 50
latent frames per second.

Padding is chosen so the lengths divide exactly: a signal of T = n · hop samples gives n frames and
decodes back to n · hop samples (non-causal, so not streamable; the papers' causal padding is one
change away).

Notebook: notebooks/04_neural_codec.ipynb
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from course_lib.errors import ConfigError


def _conv(c_in: int, c_out: int, kernel: int, dilation: int = 1) -> nn.Conv1d:
    """A length-preserving, weight-normalised convolution (odd kernel)."""
    return weight_norm(nn.Conv1d(c_in, c_out, kernel, padding=dilation * (kernel - 1) // 2, dilation=dilation))


def _down(c_in: int, c_out: int, stride: int) -> nn.Conv1d:
    """Kernel 2s, stride s: T -> T / s exactly when s divides T (SoundStream's encoder block)."""
    return weight_norm(nn.Conv1d(c_in, c_out, 2 * stride, stride=stride, padding=(stride + 1) // 2))


def _up(c_in: int, c_out: int, stride: int) -> nn.ConvTranspose1d:
    """The mirror of ``_down``: T -> T · s exactly."""
    padding = (stride + 1) // 2
    return weight_norm(
        nn.ConvTranspose1d(c_in, c_out, 2 * stride, stride=stride, padding=padding, output_padding=2 * padding - stride)
    )


class ResidualUnit(nn.Module):
    """``x + Conv1x1(ELU(Conv_k,dilated(ELU(x))))`` with the inner width halved (SEANet's residual unit)."""

    def __init__(self, channels: int, dilation: int = 1, kernel: int = 3) -> None:
        super().__init__()
        hidden = max(1, channels // 2)
        self.block = nn.Sequential(
            nn.ELU(), _conv(channels, hidden, kernel, dilation), nn.ELU(), _conv(hidden, channels, 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x)  # (B, C, T)


def _check(channels: int, strides: Sequence[int], residual_units: int, latent_dim: int) -> None:
    if channels < 1 or latent_dim < 1 or residual_units < 0 or not strides or min(strides) < 2:
        raise ConfigError(
            "SEANet needs channels >= 1, latent_dim >= 1, residual_units >= 0 and one or more strides >= 2; "
            f"got channels={channels}, latent_dim={latent_dim}, residual_units={residual_units}, strides={tuple(strides)}."
        )


class SEANetEncoder(nn.Module):
    """Waveform (B, 1, T) -> latent (B, D, T / hop); channels double at each of the strided blocks.

    Args:
        channels: C, the width of the first layer (SoundStream: 32 at full size).
        strides: down-sampling factor of each block, applied in order (hop = their product).
        residual_units: residual units per block, dilations 1, 3, 9, ... (SoundStream 3, EnCodec 1).
        latent_dim: D, the size of each latent frame.
    """

    def __init__(
        self, channels: int = 32, strides: Sequence[int] = (2, 4, 5, 8), residual_units: int = 3, latent_dim: int = 128
    ) -> None:
        super().__init__()
        _check(channels, strides, residual_units, latent_dim)
        layers: list[nn.Module] = [_conv(1, channels, 7)]
        width = channels
        for stride in strides:
            layers += [ResidualUnit(width, 3**i) for i in range(residual_units)]
            layers += [nn.ELU(), _down(width, 2 * width, stride)]
            width *= 2
        layers += [nn.ELU(), _conv(width, latent_dim, 3)]
        self.layers = nn.Sequential(*layers)

    def forward(self, wav: Tensor) -> Tensor:
        return self.layers(wav)  # (B, D, T / hop)


class SEANetDecoder(nn.Module):
    """Latent (B, D, N) -> waveform (B, 1, N · hop): the encoder mirrored, transposed convolutions up.

    Takes the same arguments as :class:`SEANetEncoder`; the strides are applied in reverse order.
    """

    def __init__(
        self, channels: int = 32, strides: Sequence[int] = (2, 4, 5, 8), residual_units: int = 3, latent_dim: int = 128
    ) -> None:
        super().__init__()
        _check(channels, strides, residual_units, latent_dim)
        width = channels * 2 ** len(strides)
        layers: list[nn.Module] = [_conv(latent_dim, width, 7)]
        for stride in reversed(strides):
            layers += [nn.ELU(), _up(width, width // 2, stride)]
            width //= 2
            layers += [ResidualUnit(width, 3**i) for i in range(residual_units)]
        layers += [nn.ELU(), _conv(width, 1, 7)]
        self.layers = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.layers(z)  # (B, 1, N · hop)
