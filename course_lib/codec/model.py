"""A SoundStream-style neural audio codec: SEANet encoder -> residual VQ -> SEANet decoder.

The encoder turns 16 kHz audio into one D-dimensional vector every 320 samples (strides 2·4·5·8):
**50 frames per second**. The residual VQ turns each frame into n_q integers in [0, 1,024), 10 bits
each; the decoder turns the codes back into audio. With N_q = 12 levels the codec runs at

    bitrate = 50 frames/s × n_q × log2(1,024) bits = 0.5 kbps per level:  3 / 6 / 12 levels = 1.5 / 3 / 6 kbps,

all from one model, thanks to quantizer dropout. **What a language model gets** (chapter 05): a
LongTensor of codes of shape ``(B, n_q, frames)`` with ``frames = ceil(T / 320)``, ``frame_rate = 50``
frames per second, ``n_q`` up to 12 levels (level 0 the coarsest) and ``codebook_size = 1,024`` values
per level; :meth:`Codec.decode` turns such a tensor back into audio ``(B, frames · 320)``.

The model and its training follow SoundStream (Zeghidour et al. 2021): the encoder/decoder of sec.
III-A/B (:mod:`course_lib.codec.seanet`), the RVQ with quantizer dropout of sec. III-C
(:mod:`course_lib.codec.residual_vq`), and the losses of sec. III-E (:mod:`course_lib.codec.losses`,
trained by :mod:`course_lib.codec.train`).

Tiny preset (the defaults): width 8 doubling to 128, one residual unit per block, D = 24; 0.37 M
parameters in the encoder and decoder plus 12 × 1,024 × 24 codebook entries (4 MB in all with the EMA
statistics: D = 24 rather than 32 keeps the shipped file under 5 MB). Full preset: width 32 (to 512),
three residual units per block (SoundStream's), D = 128.

Notebook: notebooks/04_neural_codec.ipynb
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_lib.audio.io import check_audio
from course_lib.codec.residual_vq import ResidualVQ, ResidualVQOutput
from course_lib.codec.seanet import SEANetDecoder, SEANetEncoder
from course_lib.config import ScaledConfig
from course_lib.errors import AudioInputError, ConfigError


@dataclass
class CodecConfig(ScaledConfig):
    """Sizes of a :class:`Codec`; the field defaults are the tiny preset, ``full_overrides`` the full one.

    ``offered_n_q`` lists the numbers of levels the command line offers as bitrates (3, 6, 12 levels:
    1.5, 3 and 6 kbps at the defaults); the model itself decodes any n_q from 1 to ``n_q``.

    Notebook: notebooks/04_neural_codec.ipynb
    """

    sample_rate: int = 16_000
    channels: int = 8  # width of the first layer; doubles at each strided block
    strides: tuple[int, ...] = (2, 4, 5, 8)  # hop 320: 50 frames/s at 16 kHz
    residual_units: int = 1  # per block (SoundStream 3, EnCodec 1)
    latent_dim: int = 24  # D
    n_q: int = 12  # N_q, residual VQ levels
    codebook_size: int = 1024  # K, 10 bits per code
    quantizer_dropout: float = 1.0  # SoundStream: every batch draws n_q in 1..N_q
    beta: float = 0.25  # commitment weight of every level
    decay: float = 0.99  # EMA decay of the codebooks
    kmeans_init: bool = True
    dead_code_steps: int = 30  # restart a code unused for this many training steps (~6,000 frames)
    offered_n_q: tuple[int, ...] = (3, 6, 12)

    full_overrides: ClassVar[dict] = {"channels": 32, "residual_units": 3, "latent_dim": 128}

    @property
    def hop(self) -> int:
        """Samples per frame: the product of the strides."""
        return math.prod(self.strides)


class CodecOutput(NamedTuple):
    """What ``Codec.forward`` returns."""

    audio: Tensor  # (B, T) the decoded audio, trimmed to the input's length
    codes: Tensor  # (B, n_q, frames)
    vq: ResidualVQOutput  # the quantizer's losses and per-level statistics


class Codec(nn.Module):
    """SEANet encoder, residual VQ and SEANet decoder: audio -> codes ``(B, n_q, frames)`` -> audio.

    Example::

        codec = load_tiny_codec()              # course_lib.codec.pretrained, or Codec(CodecConfig())
        codes = codec.encode(audio, n_q=6)     # audio (B, T) at 16 kHz -> (B, 6, ceil(T / 320)), 3 kbps
        rebuilt = codec.decode(codes)          # (B, frames · 320)
        codec.bitrate(6)                       # 3000.0 bits per second

    Attributes (stable: the language models of chapter 05 rely on them): ``sample_rate`` (16,000),
    ``hop`` (320), ``frame_rate`` (50.0 frames/s), ``n_q`` (12 levels at most), ``codebook_size``
    (1,024).

    Notebook: notebooks/04_neural_codec.ipynb
    """

    def __init__(self, config: CodecConfig | None = None) -> None:
        super().__init__()
        self.config = config or CodecConfig()
        c = self.config
        if c.sample_rate % c.hop:
            raise ConfigError(
                f"The hop {c.hop} must divide the sample rate {c.sample_rate} (a whole number of frames/s)."
            )
        if not c.offered_n_q or not all(1 <= n <= c.n_q for n in c.offered_n_q):
            raise ConfigError(f"offered_n_q must be levels between 1 and n_q={c.n_q}, got {c.offered_n_q}.")
        self.encoder = SEANetEncoder(c.channels, c.strides, c.residual_units, c.latent_dim)
        self.quantizer = ResidualVQ(
            c.latent_dim,
            c.codebook_size,
            c.n_q,
            quantizer_dropout=c.quantizer_dropout,
            beta=c.beta,
            use_ema=True,
            decay=c.decay,
            kmeans_init=c.kmeans_init,
            dead_code_steps=c.dead_code_steps,
        )
        self.decoder = SEANetDecoder(c.channels, c.strides, c.residual_units, c.latent_dim)

    # ------------------------------------------------------------------ the stable interface
    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def hop(self) -> int:
        return self.config.hop

    @property
    def frame_rate(self) -> float:
        """Code frames per second: sample_rate / hop (50.0 for the course's codec)."""
        return self.config.sample_rate / self.config.hop

    @property
    def n_q(self) -> int:
        """The number of RVQ levels (the most a ``codes`` tensor can have)."""
        return self.config.n_q

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    def bitrate(self, n_q: int | None = None) -> float:
        """Bits per second with ``n_q`` levels (default all): frame_rate × n_q × log2(codebook_size)."""
        return self.quantizer.bitrate(self.frame_rate, n_q)

    def offered_bitrates(self) -> dict[float, int]:
        """``{kbps: n_q}`` for the bitrates the command line offers (1.5, 3 and 6 kbps for the tiny codec)."""
        return {round(self.bitrate(n) / 1000, 3): n for n in self.config.offered_n_q}

    # ------------------------------------------------------------------------------ training
    def forward(self, audio: Tensor, n_q: int | None = None) -> CodecOutput:
        """Encode, quantize (random n_q in training, see ``ResidualVQ``) and decode ``audio`` (B, T) or (B, 1, T)."""
        wav = self._as_batch(audio)  # (B, 1, T)
        length = wav.shape[-1]
        z = self.encoder(self._pad(wav))  # (B, D, frames)
        vq = self.quantizer(z, n_q)
        decoded = self.decoder(vq.quantized)[:, 0, :length]  # (B, T)
        return CodecOutput(decoded, vq.codes, vq)

    @torch.no_grad()
    def initialise_codebooks(self, audio: Tensor) -> None:
        """Run one training-mode pass over ``audio`` with every level, so that each level's k-means
        initialisation sees enough vectors (at least ``codebook_size`` frames: 1,024 frames = 20.5 s at 50 Hz).

        Call it once before training when ``kmeans_init`` is on: training batches are usually shorter.
        """
        frames = audio.shape[0] * math.ceil(audio.shape[-1] / self.hop) if audio.ndim > 1 else 0
        if frames < self.codebook_size:
            raise ConfigError(
                f"initialise_codebooks needs at least {self.codebook_size} frames (one per code), got {frames}: "
                f"pass more or longer clips, e.g. 16 clips of 2 s = 1,600 frames."
            )
        was_training = self.training
        self.train()
        self.quantizer(self.encoder(self._pad(self._as_batch(audio))), n_q=self.n_q)
        self.train(was_training)

    # ------------------------------------------------------------------------------ inference
    @torch.no_grad()
    def encode(self, audio: Tensor, n_q: int | None = None) -> Tensor:
        """Codes of ``audio`` at ``sample_rate``: (B, T), (B, 1, T) or (T,) -> LongTensor (B, n_q, ceil(T / hop)).

        ``n_q`` (default: all levels) sets the bitrate, ``bitrate(n_q)``. The end of the audio is zero-padded
        to a whole frame.
        """
        wav = self._as_batch(check_audio(audio))  # (B, 1, T)
        return self.quantizer.encode(self.encoder(self._pad(wav)), n_q)  # (B, n_q, frames)

    @torch.no_grad()
    def decode(self, codes: Tensor, length: int | None = None) -> Tensor:
        """Audio of ``codes`` (B, n_q, frames), any n_q from 1 to ``n_q``: -> (B, frames · hop), or (B, length)."""
        audio = self.decoder(self.quantizer.decode(codes))[:, 0]  # (B, frames · hop)
        return audio if length is None else audio[:, :length]

    def fingerprint(self) -> str:
        """A SHA-256 of the weights that encoding and decoding use (hex, 16 characters).

        The codes files of :mod:`course_lib.codec.codes_file` store it, so a file is never decoded
        by a model other than the one that wrote it. The EMA statistics that only training reads are
        left out, so the fingerprint does not change when a model is merely run.
        """
        digest = hashlib.sha256()
        for name, tensor in sorted(self.state_dict().items()):
            if name.rsplit(".", 1)[-1] in ("cluster_size", "embed_sum", "steps_unused", "initialised"):
                continue
            data = tensor.detach().to("cpu", torch.float32).contiguous()
            digest.update(name.encode())
            digest.update(str(tuple(data.shape)).encode())
            digest.update(data.numpy().tobytes())
        return digest.hexdigest()[:16]

    def _pad(self, wav: Tensor) -> Tensor:
        return F.pad(wav, (0, -wav.shape[-1] % self.hop))  # (B, 1, hop · frames)

    def _as_batch(self, audio: Tensor) -> Tensor:
        """(T,), (B, T) or (B, 1, T) -> (B, 1, T), with a course error for anything else."""
        if audio.ndim == 1:
            audio = audio[None]
        if audio.ndim == 2:
            audio = audio[:, None]
        if audio.ndim != 3 or audio.shape[1] != 1:
            raise AudioInputError(
                f"The codec takes mono audio (T,), (B, T) or (B, 1, T) at {self.sample_rate} Hz, got shape "
                f"{tuple(audio.shape)}: mix stereo down with course_lib.audio.to_mono and batch along dim 0."
            )
        if audio.shape[-1] == 0:
            raise AudioInputError("The audio is empty (0 samples): check the file or the slice that produced it.")
        return audio
