"""Traditional codecs to compare the neural codec with: a simple μ-law/MDCT transform codec, and Opus.

**The μ-law/MDCT codec** is the skeleton of a traditional transform codec (the lecture's "filterbanks +
modified DCT"), with every bit counted and none of the refinements:

1. **MDCT** (Princen & Bradley 1986): frames of 2N samples with hop N = 320 (50 frames/s, the neural
   codec's frame rate), a sine window; each frame becomes N real coefficients
   ``X[k] = Σ_n w[n] x[n] cos(π/N (n + 1/2 + N/2)(k + 1/2))``. Overlap-adding the inverse transforms
   of neighbouring frames cancels the time-domain aliasing exactly (tested).
2. **Bit allocation**, the crudest kind: only the lowest ``bandwidth`` coefficients are sent (a low-pass),
   as many as the budget allows at ``bits`` bits each.
3. **Quantization**: one gain per frame (the largest kept |X|, as log2 in 6 bits, 0.5 steps), then the
   coefficients divided by it are companded by μ-law (μ = 255, as telephone G.711 does to samples),
   ``c = sign(u) ln(1 + μ|u|) / ln(1 + μ)``, and quantized uniformly to ``bits`` bits (mid-rise).

Bits per frame: ``6 + bits · bandwidth`` ≤ bitrate / 50. At 6 kbps (120 bits per frame) and 2 bits per
coefficient that is 57 coefficients, everything below 1.4 kHz. What it lacks is what makes real
codecs good at low rates: entropy coding (Huffman or arithmetic), a psychoacoustic model that moves
bits to where the ear would notice the noise, band-wise scale factors, noise filling. The
comparison shows how far a learnt codec gets beyond this skeleton; Opus shows a real one.

**Opus** (RFC 6716, 2012), through the ``opusenc``/``opusdec`` command-line tools (opus-tools, e.g.
``apt-get install opus-tools``, ``brew install opus-tools``): :func:`opus_available` says whether they
are installed; :func:`opus_roundtrip` encodes at a constant bitrate (``--hard-cbr``) and decodes back.
Opus's lowest bitrate is 6 kbps.

Notebook: notebooks/04_neural_codec.ipynb
"""

from __future__ import annotations

import functools
import math
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from course_lib.audio.io import check_audio, load_audio, save_audio
from course_lib.errors import AudioInputError, ConfigError

GAIN_BITS = 6
GAIN_STEP = 0.5  # log2 units (3 dB) per gain index
GAIN_MIN_LOG2 = -24.0  # the quietest gain that can be coded: 2^-24
MU = 255.0


# ------------------------------------------------------------------------------------------- MDCT
@functools.lru_cache(maxsize=8)
def _mdct_basis(hop: int, dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    """(sine window (2N,), cosine basis (2N, N)) of the MDCT with hop N."""
    n = torch.arange(2 * hop, dtype=dtype)
    k = torch.arange(hop, dtype=dtype)
    window = torch.sin(math.pi * (n + 0.5) / (2 * hop))  # w[n]² + w[n + N]² = 1 (Princen-Bradley)
    basis = torch.cos(math.pi / hop * (n[:, None] + 0.5 + hop / 2) * (k[None] + 0.5))  # (2N, N)
    return window, basis


def mdct(audio: Tensor, hop: int = 320) -> Tensor:
    """MDCT of ``(B, T)`` audio with hop N and a sine window: ``(B, frames, N)``, frames = ceil(T / N) + 1.

    The signal is padded with N zeros in front (so the first samples are covered by two frames) and
    with zeros at the end to a whole frame.

    Notebook: notebooks/04_neural_codec.ipynb
    """
    window, basis = _mdct_basis(hop)
    x = audio.to(torch.float64)
    length = x.shape[-1]
    frames = math.ceil(length / hop) + 1
    x = F.pad(x, (hop, frames * hop + hop - length - hop))  # (B, (frames + 1) · N)
    chunks = x.unfold(-1, 2 * hop, hop)  # (B, frames, 2N)
    return (chunks * window) @ basis  # (B, frames, N)


def imdct(coefficients: Tensor, length: int, hop: int = 320) -> Tensor:
    """Inverse of :func:`mdct` (windowed inverse transforms, overlap-added): ``(B, frames, N)`` -> ``(B, length)``.

    Notebook: notebooks/04_neural_codec.ipynb
    """
    window, basis = _mdct_basis(hop)
    pieces = (coefficients.to(torch.float64) @ basis.T) * window * (2.0 / hop)  # (B, frames, 2N)
    batch, frames, _ = pieces.shape
    out = F.fold(
        pieces.transpose(1, 2), output_size=(1, (frames + 1) * hop), kernel_size=(1, 2 * hop), stride=(1, hop)
    )  # (B, 1, 1, (frames + 1) · N): overlap-add
    return out.reshape(batch, -1)[:, hop : hop + length].to(torch.float32)


# ---------------------------------------------------------------------------------- μ-law/MDCT codec
def mu_law(u: Tensor, mu: float = MU) -> Tensor:
    """μ-law companding of values in [-1, 1]: ``sign(u) ln(1 + μ|u|) / ln(1 + μ)``."""
    return u.sign() * torch.log1p(mu * u.abs()) / math.log1p(mu)


def inverse_mu_law(c: Tensor, mu: float = MU) -> Tensor:
    """The inverse of :func:`mu_law`: ``sign(c) ((1 + μ)^|c| - 1) / μ``."""
    return c.sign() * (torch.pow(1 + mu, c.abs()) - 1) / mu


class MuLawMDCTCodec:
    """The simple transform codec described in the module docstring, at a fixed bitrate.

    Example::

        baseline = MuLawMDCTCodec(bitrate=6000)          # bits per second
        rebuilt = baseline.roundtrip(audio)              # (B, T) -> (B, T)
        baseline.bandwidth_hz, baseline.bits_per_frame   # 1425.0, 120

    Args:
        bitrate: bits per second (at least enough for the gain and one coefficient per frame).
        bits: bits per kept coefficient (1-8).
        sample_rate: Hz; with ``hop`` it sets the frame rate (16 kHz / 320 = 50 frames/s).

    Notebook: notebooks/04_neural_codec.ipynb
    """

    def __init__(self, bitrate: float, bits: int = 2, sample_rate: int = 16_000, hop: int = 320) -> None:
        self.sample_rate, self.hop, self.bits = sample_rate, hop, bits
        self.frame_rate = sample_rate / hop
        budget = int(bitrate / self.frame_rate)  # bits per frame
        self.bandwidth = min(hop, (budget - GAIN_BITS) // bits) if 1 <= bits <= 8 else 0
        if self.bandwidth < 1:
            raise ConfigError(
                f"MuLawMDCTCodec: {bitrate} bit/s is {budget} bits per frame at {self.frame_rate:g} frames/s, not enough "
                f"for the {GAIN_BITS}-bit gain and one coefficient of {bits} bits (bits must be 1-8): raise the bitrate."
            )

    @property
    def bits_per_frame(self) -> int:
        return GAIN_BITS + self.bits * self.bandwidth

    @property
    def bitrate(self) -> float:
        """Bits per second actually spent (at most the bitrate asked for)."""
        return self.bits_per_frame * self.frame_rate

    @property
    def bandwidth_hz(self) -> float:
        """The highest frequency sent: bandwidth coefficients of width sample_rate / (2 hop) Hz each."""
        return self.bandwidth * self.sample_rate / (2 * self.hop)

    def encode(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, T)`` -> (gain indices ``(B, frames)`` in [0, 64), coefficient indices ``(B, frames, bandwidth)``)."""
        coefficients = mdct(check_audio(audio).reshape(-1, audio.shape[-1]), self.hop)[..., : self.bandwidth]
        peak = coefficients.abs().amax(dim=-1)  # (B, frames)
        log_gain = (peak.clamp_min(2**GAIN_MIN_LOG2).log2() - GAIN_MIN_LOG2) / GAIN_STEP
        gain_index = log_gain.ceil().clamp(0, 2**GAIN_BITS - 1).long()  # round up: |u| <= 1 below
        gain = self._gain(gain_index)  # (B, frames)
        companded = mu_law((coefficients / gain[..., None]).clamp(-1, 1))  # (B, frames, bw) in [-1, 1]
        levels = 2**self.bits
        index = ((companded + 1) / 2 * levels).floor().clamp(0, levels - 1).long()  # mid-rise
        return gain_index, index

    def decode(self, gain_index: Tensor, index: Tensor, length: int) -> Tensor:
        """Inverse of :meth:`encode`: -> ``(B, length)``."""
        levels = 2**self.bits
        companded = (index.to(torch.float64) + 0.5) / levels * 2 - 1  # (B, frames, bw)
        coefficients = inverse_mu_law(companded) * self._gain(gain_index)[..., None]
        full = F.pad(coefficients, (0, self.hop - self.bandwidth))  # (B, frames, N): the rest is not sent
        return imdct(full, length, self.hop)

    def roundtrip(self, audio: Tensor) -> Tensor:
        """Encode and decode: ``(B, T)`` -> ``(B, T)``."""
        gain_index, index = self.encode(audio)
        return self.decode(gain_index, index, audio.shape[-1]).reshape(audio.shape)

    def _gain(self, gain_index: Tensor) -> Tensor:
        return torch.exp2(gain_index.to(torch.float64) * GAIN_STEP + GAIN_MIN_LOG2)


def best_mdct_baseline(
    audio: Tensor, bitrate: float, score, bits_options=(1, 2, 3, 4)
) -> tuple[MuLawMDCTCodec, Tensor]:
    """The :class:`MuLawMDCTCodec` at ``bitrate`` whose bits per coefficient give the lowest ``score(audio, rebuilt)``.

    Tuning on the very clips it is scored on favours the baseline: the comparison stays conservative.
    Returns the codec and its reconstruction.

    Notebook: notebooks/04_neural_codec.ipynb
    """
    best = None
    for bits in bits_options:
        try:
            codec = MuLawMDCTCodec(bitrate, bits)
        except ConfigError:
            continue
        rebuilt = codec.roundtrip(audio)
        value = float(score(audio, rebuilt))
        if best is None or value < best[0]:
            best = (value, codec, rebuilt)
    if best is None:
        raise ConfigError(f"No MuLawMDCTCodec fits {bitrate} bit/s: raise the bitrate.")
    return best[1], best[2]


# ------------------------------------------------------------------------------------------- Opus
def opus_available() -> bool:
    """Whether the ``opusenc`` and ``opusdec`` tools (opus-tools) are on the PATH.

    Notebook: notebooks/04_neural_codec.ipynb
    """
    return shutil.which("opusenc") is not None and shutil.which("opusdec") is not None


def opus_roundtrip(audio: Tensor, sample_rate: int, kbps: float) -> Tensor:
    """Encode ``audio`` (T,) or (B, T) with Opus at a constant ``kbps`` and decode it: same shape back.

    Raises:
        ConfigError: when opus-tools is not installed, or for a bitrate Opus does not offer (6-256 kbps).
        AudioInputError: when opusenc/opusdec fail on the input.

    Notebook: notebooks/04_neural_codec.ipynb
    """
    if not opus_available():
        raise ConfigError(
            "Opus needs the opusenc and opusdec tools: install opus-tools (apt-get install opus-tools, "
            "brew install opus-tools, conda install -c conda-forge opus-tools), or skip the Opus comparison."
        )
    if not 6 <= kbps <= 256:
        raise ConfigError(f"Opus offers 6 to 256 kbps per channel, got {kbps}: pick a bitrate in that range.")
    clips = audio.reshape(-1, audio.shape[-1])
    out = []
    with tempfile.TemporaryDirectory(prefix="course_opus_") as tmp:
        for i, clip in enumerate(clips):
            wav, coded, decoded = (Path(tmp) / f"{i}{suffix}" for suffix in (".wav", ".opus", ".out.wav"))
            save_audio(wav, clip, sample_rate, subtype="FLOAT")
            for command in (
                ["opusenc", "--quiet", "--hard-cbr", "--bitrate", f"{kbps:g}", str(wav), str(coded)],
                ["opusdec", "--quiet", "--rate", str(sample_rate), "--float", str(coded), str(decoded)],
            ):
                result = subprocess.run(command, capture_output=True, text=True)
                if result.returncode:
                    raise AudioInputError(
                        f"{command[0]} failed ({result.stderr.strip()}): check the audio and the bitrate."
                    )
            rebuilt, _ = load_audio(decoded, sample_rate)
            rebuilt = rebuilt[: clip.shape[-1]]
            out.append(F.pad(rebuilt, (0, clip.shape[-1] - rebuilt.shape[-1])))
    return torch.stack(out).reshape(audio.shape)
