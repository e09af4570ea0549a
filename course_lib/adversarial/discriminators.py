"""The discriminators of GAN-trained audio models: multi-scale STFT, multi-period and multi-scale waveform.

A neural codec (or vocoder) trained only to match spectra makes audio that is smooth and slightly
buzzy; a discriminator that learns to tell real from decoded audio supplies what the reconstruction
losses miss. Each class here is an *ensemble* of K sub-discriminators D_k, each looking at the audio
in its own way, and returns, for a batch, every D_k's logits D_{k,t} (t runs over the positions of its
output map) and its internal feature maps D^{(l)}_k (for the feature-matching loss). The losses that
consume them are in :mod:`course_lib.adversarial.losses`.

- :class:`MultiScaleSTFTDiscriminator` (the codec's main one): 2-D convolutions over the complex STFT
  (real and imaginary parts as two channels) at several window lengths, as in EnCodec (Défossez et
  al. 2022, "High Fidelity Neural Audio Compression", sec. 3.4, the MS-STFTD); SoundStream's STFT
  discriminator (Zeghidour et al. 2021, sec. III-D) is the same idea at a single resolution.
- :class:`MultiPeriodDiscriminator`: HiFi-GAN's MPD (Kong et al. 2020, "HiFi-GAN", sec. 2.2): the
  waveform folded into a 2-D map of ``T / p`` rows of ``p`` samples, for periods 2, 3, 5, 7, 11, so
  each sub-discriminator sees samples ``p`` apart: periodic structure (pitch) at several periods.
- :class:`MultiScaleDiscriminator`: MelGAN's and HiFi-GAN's MSD (Kumar et al. 2019, sec. 2.2; Kong et
  al. 2020, sec. 2.3): 1-D strided, grouped convolutions on the raw waveform and on 2× and 4×
  average-pooled copies of it; smooth long-range structure.

Every convolution is weight-normalised (Salimans & Kingma 2016), except the first MSD scale, which
is spectrally normalised as in HiFi-GAN. The constructors default to the papers' sizes; the course's
tiny models pass smaller widths (``channels=...``). Several ensembles combine with
:func:`merge_outputs` (HiFi-GAN uses MPD + MSD).

Example::

    disc = MultiScaleSTFTDiscriminator(windows=(1024, 512, 256), channels=16)
    real, fake = disc(audio), disc(decoded.detach())          # DiscriminatorOutput each
    loss_d = hinge_discriminator_loss(real.logits, fake.logits)

Notebooks: notebooks/04_neural_codec.ipynb (codec), 08_latent_diffusion.ipynb (HiFi-GAN vocoder).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

from course_lib.errors import AudioInputError, ConfigError


class DiscriminatorOutput(NamedTuple):
    """What a discriminator ensemble returns for one batch of audio.

    ``logits[k]`` is D_k's output map, ``(B, 1, ...)``: one logit D_{k,t} per position t of the map.
    ``features[k][l]`` is the output of D_k's hidden layer l (after its non-linearity), used by the
    feature-matching loss; the logits themselves are not among the features.
    """

    logits: list[Tensor]
    features: list[list[Tensor]]


def merge_outputs(*outputs: DiscriminatorOutput) -> DiscriminatorOutput:
    """Concatenate the sub-discriminators of several ensembles (e.g. HiFi-GAN's MPD and MSD) into one output."""
    return DiscriminatorOutput(
        logits=[logit for out in outputs for logit in out.logits],
        features=[maps for out in outputs for maps in out.features],
    )


def _as_waveform(audio: Tensor) -> Tensor:
    """``(B, T)`` or ``(B, 1, T)`` → ``(B, 1, T)``, with a clear error for anything else."""
    if audio.ndim == 2:
        audio = audio[:, None]
    if audio.ndim != 3 or audio.shape[1] != 1:
        raise AudioInputError(
            f"A discriminator takes mono audio of shape (B, T) or (B, 1, T), got {tuple(audio.shape)}: "
            "mix stereo down (course_lib.audio.to_mono) and batch the clips along dim 0."
        )
    return audio


# ------------------------------------------------------------------------------ multi-scale STFT
class STFTDiscriminator(nn.Module):
    """One resolution of EnCodec's MS-STFTD: a 2-D CNN over the complex STFT (real, imag as channels).

    Layers (EnCodec's, sec. 3.4 and its reference code): a (3, 9) convolution, three (3, 9)
    convolutions with stride 2 along frequency and dilations 1, 2, 4 along time, a (3, 3)
    convolution, each followed by LeakyReLU(0.2), then a (3, 3) convolution to one logit channel.
    The STFT uses a Hann window of ``window`` samples, hop ``window // 4``, and is normalised by
    ``sqrt(window)`` so that all resolutions see similar magnitudes.
    """

    def __init__(self, window: int, channels: int = 32, dilations: Sequence[int] = (1, 2, 4)) -> None:
        super().__init__()
        if window < 16 or channels < 1:
            raise ConfigError(f"STFTDiscriminator needs window >= 16 and channels >= 1, got {window}, {channels}.")
        self.window, self.hop = window, window // 4
        layers = [weight_norm(nn.Conv2d(2, channels, (3, 9), padding=(1, 4)))]
        for d in dilations:  # (time, frequency) kernels; stride 2 along frequency, dilation along time
            layers.append(
                weight_norm(nn.Conv2d(channels, channels, (3, 9), stride=(1, 2), dilation=(d, 1), padding=(d, 4)))
            )
        layers.append(weight_norm(nn.Conv2d(channels, channels, (3, 3), padding=(1, 1))))
        self.layers = nn.ModuleList(layers)
        self.post = weight_norm(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))

    def forward(self, audio: Tensor) -> tuple[Tensor, list[Tensor]]:
        wav = _as_waveform(audio)[:, 0].float()  # (B, T); float32 also under AMP (no 16-bit FFTs)
        window = _hann(self.window, str(wav.device), wav.dtype)
        spec = torch.stft(wav, self.window, self.hop, window=window, center=True, return_complex=True)  # (B, F, N)
        spec = spec / self.window**0.5
        x = torch.stack([spec.real, spec.imag], dim=1).transpose(2, 3)  # (B, 2, N frames, F bins)
        features = []
        for layer in self.layers:
            x = F.leaky_relu(layer(x), 0.2)  # (B, C, N, F')
            features.append(x)
        return self.post(x), features  # (B, 1, N, F'), [...]


class MultiScaleSTFTDiscriminator(nn.Module):
    """EnCodec's multi-scale STFT discriminator: one :class:`STFTDiscriminator` per window length.

    Args:
        windows: STFT window lengths, one sub-discriminator each (EnCodec at 24 kHz: 2048, 1024,
            512, 256, 128).
        channels: width of every hidden layer (32 in EnCodec).

    Notebook: notebooks/04_neural_codec.ipynb
    """

    def __init__(self, windows: Sequence[int] = (2048, 1024, 512, 256, 128), channels: int = 32) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(STFTDiscriminator(w, channels) for w in windows)

    def forward(self, audio: Tensor) -> DiscriminatorOutput:
        outputs = [d(audio) for d in self.discriminators]
        return DiscriminatorOutput([logit for logit, _ in outputs], [maps for _, maps in outputs])


# ------------------------------------------------------------------------------- multi-period
class PeriodDiscriminator(nn.Module):
    """One sub-discriminator of HiFi-GAN's MPD: the waveform folded into rows of ``period`` samples.

    The ``(B, 1, T)`` signal is reflect-padded to a multiple of ``period`` and reshaped to
    ``(B, 1, T / period, period)``; ``(kernel, 1)`` convolutions with stride ``(stride, 1)`` then run
    down each column, i.e. over samples ``period`` apart (HiFi-GAN, sec. 2.2; LeakyReLU(0.1)).
    """

    def __init__(
        self, period: int, channels: Sequence[int] = (32, 128, 512, 1024, 1024), kernel_size: int = 5, stride: int = 3
    ) -> None:
        super().__init__()
        if period < 1 or not channels:
            raise ConfigError(
                f"PeriodDiscriminator needs period >= 1 and at least one layer, got {period}, {channels}."
            )
        self.period = period
        pad = (kernel_size - 1) // 2
        widths = [1, *channels]
        strides = [stride] * (len(channels) - 1) + [1]  # HiFi-GAN: the last hidden layer has stride 1
        self.layers = nn.ModuleList(
            weight_norm(nn.Conv2d(c_in, c_out, (kernel_size, 1), stride=(s, 1), padding=(pad, 0)))
            for c_in, c_out, s in zip(widths[:-1], widths[1:], strides, strict=True)
        )
        self.post = weight_norm(nn.Conv2d(channels[-1], 1, (3, 1), padding=(1, 0)))

    def forward(self, audio: Tensor) -> tuple[Tensor, list[Tensor]]:
        wav = _as_waveform(audio)  # (B, 1, T)
        length = wav.shape[-1]
        extra = -length % self.period
        if extra:
            mode = "reflect" if extra < length else "replicate"  # reflect needs fewer pad samples than the signal
            wav = F.pad(wav, (0, extra), mode=mode)
        x = wav.view(wav.shape[0], 1, -1, self.period)  # (B, 1, T / p, p)
        features = []
        for layer in self.layers:
            x = F.leaky_relu(layer(x), 0.1)  # (B, C, T', p)
            features.append(x)
        return self.post(x), features  # (B, 1, T', p)


class MultiPeriodDiscriminator(nn.Module):
    """HiFi-GAN's multi-period discriminator (Kong et al. 2020, sec. 2.2): one sub-discriminator per period.

    Args:
        periods: 2, 3, 5, 7, 11 in HiFi-GAN (primes, so the periods overlap as little as possible).
        channels: hidden widths of each sub-discriminator (HiFi-GAN: 32, 128, 512, 1024, 1024).

    Notebook: notebooks/08_latent_diffusion.ipynb (the HiFi-GAN vocoder)
    """

    def __init__(
        self,
        periods: Sequence[int] = (2, 3, 5, 7, 11),
        channels: Sequence[int] = (32, 128, 512, 1024, 1024),
        kernel_size: int = 5,
        stride: int = 3,
    ) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, channels, kernel_size, stride) for p in periods)

    def forward(self, audio: Tensor) -> DiscriminatorOutput:
        outputs = [d(audio) for d in self.discriminators]
        return DiscriminatorOutput([logit for logit, _ in outputs], [maps for _, maps in outputs])


# -------------------------------------------------------------------------- multi-scale waveform
HIFIGAN_MSD_CHANNELS = (128, 128, 256, 512, 1024, 1024, 1024)
HIFIGAN_MSD_KERNELS = (15, 41, 41, 41, 41, 41, 5)
HIFIGAN_MSD_STRIDES = (1, 2, 2, 4, 4, 1, 1)
HIFIGAN_MSD_GROUPS = (1, 4, 16, 16, 16, 16, 1)


class ScaleDiscriminator(nn.Module):
    """One sub-discriminator of the MSD: strided, grouped 1-D convolutions over a waveform.

    The default layer sizes are HiFi-GAN's (its reference code's ``DiscriminatorS``); LeakyReLU(0.1)
    after each hidden layer, then a kernel-3 convolution to one logit channel.
    """

    def __init__(
        self,
        channels: Sequence[int] = HIFIGAN_MSD_CHANNELS,
        kernels: Sequence[int] = HIFIGAN_MSD_KERNELS,
        strides: Sequence[int] = HIFIGAN_MSD_STRIDES,
        groups: Sequence[int] = HIFIGAN_MSD_GROUPS,
        spectral: bool = False,
    ) -> None:
        super().__init__()
        if not len(channels) == len(kernels) == len(strides) == len(groups) or not channels:
            raise ConfigError(
                "ScaleDiscriminator needs channels, kernels, strides and groups of one length (one entry per "
                f"layer), got {len(channels)}, {len(kernels)}, {len(strides)}, {len(groups)}."
            )
        norm = spectral_norm if spectral else weight_norm
        widths = [1, *channels]
        layers = []
        for c_in, c_out, k, s, g in zip(widths[:-1], widths[1:], kernels, strides, groups, strict=True):
            if c_in % g or c_out % g:
                raise ConfigError(
                    f"ScaleDiscriminator: groups={g} must divide both {c_in} input and {c_out} output channels; "
                    "pick channels that are multiples of the groups (or groups=1)."
                )
            layers.append(norm(nn.Conv1d(c_in, c_out, k, stride=s, padding=(k - 1) // 2, groups=g)))
        self.layers = nn.ModuleList(layers)
        self.post = norm(nn.Conv1d(channels[-1], 1, 3, padding=1))

    def forward(self, audio: Tensor) -> tuple[Tensor, list[Tensor]]:
        x = _as_waveform(audio)  # (B, 1, T)
        features = []
        for layer in self.layers:
            x = F.leaky_relu(layer(x), 0.1)  # (B, C, T')
            features.append(x)
        return self.post(x), features  # (B, 1, T')


class MultiScaleDiscriminator(nn.Module):
    """MelGAN's / HiFi-GAN's multi-scale discriminator: the same CNN on the raw audio and on pooled copies.

    Scale 0 sees the waveform, scale i > 0 sees it average-pooled i times (kernel 4, stride 2), so the
    later scales judge smoother, longer-range structure. As in HiFi-GAN, scale 0 uses spectral
    normalisation, the others weight normalisation.

    Args:
        scales: number of sub-discriminators (3 in both papers).
        channels, kernels, strides, groups: one entry per hidden layer (defaults: HiFi-GAN's).

    Notebook: notebooks/08_latent_diffusion.ipynb (the HiFi-GAN vocoder)
    """

    def __init__(
        self,
        scales: int = 3,
        channels: Sequence[int] = HIFIGAN_MSD_CHANNELS,
        kernels: Sequence[int] = HIFIGAN_MSD_KERNELS,
        strides: Sequence[int] = HIFIGAN_MSD_STRIDES,
        groups: Sequence[int] = HIFIGAN_MSD_GROUPS,
    ) -> None:
        super().__init__()
        if scales < 1:
            raise ConfigError(f"MultiScaleDiscriminator needs scales >= 1, got {scales}.")
        self.discriminators = nn.ModuleList(
            ScaleDiscriminator(channels, kernels, strides, groups, spectral=i == 0) for i in range(scales)
        )

    def forward(self, audio: Tensor) -> DiscriminatorOutput:
        x = _as_waveform(audio)  # (B, 1, T)
        logits, features = [], []
        for i, d in enumerate(self.discriminators):
            if i > 0:
                x = F.avg_pool1d(x, 4, stride=2, padding=2)  # (B, 1, T / 2^i)
            logit, maps = d(x)
            logits.append(logit)
            features.append(maps)
        return DiscriminatorOutput(logits, features)


@functools.lru_cache(maxsize=32)
def _hann(length: int, device: str, dtype: torch.dtype) -> Tensor:
    return torch.hann_window(length, device=device, dtype=dtype)
