"""Small deterministic stand-ins for the codec and the joint embedding, so the LM tests run fast and alone.

The shipped models themselves are tested in ``tests/test_lm_shipped.py``.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch

K = 16  # the stand-in codec's codebook size


class StandInCodec:
    """50 frames/s; level q of a frame is a quantized statistic of its 320 samples; decode makes a tone per frame."""

    sample_rate, frame_rate, hop, codebook_size, n_q = 16_000, 50.0, 320, K, 4

    def fingerprint(self) -> str:
        return "stand-in-codec"

    def encode(self, audio: torch.Tensor, n_q: int = 4) -> torch.Tensor:
        frames = math.ceil(audio.shape[-1] / self.hop)
        padded = torch.nn.functional.pad(audio, (0, frames * self.hop - audio.shape[-1]))
        x = padded.view(audio.shape[0], frames, self.hop)  # (B, F, hop)
        stats = torch.stack([x.abs().mean(-1), x.std(-1), x.mean(-1), x[..., ::2].abs().mean(-1)], 1)[:, :n_q]
        return (stats * 40).long().clamp(0, K - 1)  # (B, n_q, F)

    def decode(self, codes: torch.Tensor, length: int | None = None) -> torch.Tensor:
        level = codes.float().mean(1) / K  # (B, F)
        audio = level.repeat_interleave(self.hop, dim=1) * torch.sin(torch.arange(codes.shape[2] * self.hop) * 0.1)
        return audio if length is None else audio[:, :length]


def frame_features(audio: torch.Tensor) -> torch.Tensor:
    """8 statistics of each 40 ms window: (B, T) -> (B, T // 640, 8), 25 frames/s."""
    frames = audio.shape[-1] // 640
    x = audio[:, : frames * 640].reshape(audio.shape[0], frames, 8, 80)  # (B, N, 8, 80)
    return x.abs().mean(-1)  # (B, N, 8)


class StandInEmbedding(torch.nn.Module):
    """``audio_frames`` as above; ``embed_audio`` / ``embed_text`` give unit vectors of size ``dim`` = 6."""

    dim = 6
    config = SimpleNamespace(audio_channels=8)

    def __init__(self) -> None:
        super().__init__()
        self.projection = torch.nn.Linear(8, self.dim)
        torch.nn.init.normal_(self.projection.weight, generator=torch.Generator().manual_seed(0))

    def audio_frames(self, audio: torch.Tensor) -> torch.Tensor:
        return frame_features(audio)

    def embed_audio(self, audio: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.nn.functional.normalize(self.projection(frame_features(audio).mean(1)), dim=-1)

    def embed_text(self, captions: list[str]) -> torch.Tensor:
        lengths = torch.tensor([[float(len(c) % 7), float(len(c) % 5)] * 4 for c in captions])  # (B, 8)
        with torch.no_grad():
            return torch.nn.functional.normalize(self.projection(lengths), dim=-1)


def tones(n: int = 6, seconds: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    t = torch.arange(int(16_000 * seconds)) / 16_000
    waves = torch.sin(2 * math.pi * (200 + 400 * torch.rand(n, 1, generator=g)) * t)  # (n, T)
    return 0.5 * waves * torch.rand(n, 1, generator=g)
