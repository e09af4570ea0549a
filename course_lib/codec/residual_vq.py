"""Residual vector quantization (RVQ): the bottleneck of SoundStream, EnCodec and DAC.

One codebook of K codes spends log2(K) bits per frame; to spend 10 times more bits with one
codebook it would need 2^100 codes. RVQ instead chains N_q small quantizers (SoundStream, Zeghidour
et al. 2021, sec. III-C, Algorithm 1): the first quantizes the encoder output z, each next one
quantizes what the previous ones left over, coarse to fine::

    r_1 = z;   for i = 1 .. n_q:   k_i = argmin_j ||r_i - e^(i)_j||,   r_{i+1} = r_i - e^(i)_{k_i}
    z_q = Σ_i e^(i)_{k_i}

so each frame becomes n_q integers (codes of shape ``(B, n_q, T)``) and n_q · log2(K) bits. Keeping
only the first n_q < N_q codes gives a coarser z_q at a lower bitrate, from the same model.

- **Quantizer dropout** (SoundStream sec. III-C): during training, a random n_q in 1..N_q is drawn
  (here once per batch, with probability ``quantizer_dropout``; otherwise all N_q are used), so the
  decoder learns to work from every prefix of the levels and one model serves every bitrate.
- **Straight-through through all stages**: the value passed on is exactly Σ_i e^(i)_{k_i}; the
  gradient the decoder sends to z_q is copied to z unchanged (one straight-through estimator over the
  whole stack, as in EnCodec's implementation, where the per-level copies cancel out).
- **Each level is a** :class:`course_lib.quantize.VectorQuantizer` (chapter 02): EMA codebooks,
  k-means initialisation and dead-code restarts come from there. Each level's commitment loss
  β ||r_i - sg[e^(i)]||² reaches the encoder (r_i = z - sg[Σ_{j<i} e^(j)]); the losses are summed.

The bitrate of n_q levels at a frame rate f is ``f · n_q · log2(K)`` bits per second (EnCodec at 24
kHz: 75 frames/s, K = 1,024: 2 levels = 1.5 kbps ... 32 levels = 24 kbps).

Notebook: notebooks/04_neural_codec.ipynb
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from course_lib.errors import AudioInputError, ConfigError
from course_lib.quantize.vector_quantizer import VectorQuantizer


class ResidualVQOutput(NamedTuple):
    """What ``ResidualVQ.forward`` returns (losses are 0-dim tensors, per-level statistics ``(n_q,)``)."""

    quantized: Tensor  # (B, D, T) Σ_i e^(i) in value, straight-through gradient to z
    codes: Tensor  # (B, n_q, T) LongTensor, level 0 (coarsest) first
    commitment_loss: Tensor  # Σ_i β ||r_i - sg[e^(i)]||²
    codebook_loss: Tensor  # Σ_i ||sg[r_i] - e^(i)||², zero with EMA codebooks
    loss: Tensor  # commitment_loss + codebook_loss
    perplexity: Tensor  # (n_q,) each level's code perplexity on the batch
    usage: Tensor  # (n_q,) each level's fraction of codes used in the batch
    n_q: int  # levels used for this batch


class ResidualVQ(nn.Module):
    """A stack of ``n_q`` :class:`VectorQuantizer` levels, each quantizing the residual of the ones before.

    Example::

        rvq = ResidualVQ(dim=32, codebook_size=1024, n_q=12, quantizer_dropout=1.0, use_ema=True)
        out = rvq(z)                      # z: (B, 32, T); out.codes: (B, n_q, T), n_q random in training
        codes = rvq.encode(z, n_q=6)      # (B, 6, T)
        z_q = rvq.decode(codes)           # (B, 32, T): the sum of the 6 levels' codes

    Args:
        dim: D, the size of each vector (dim 1 of the input).
        codebook_size: K, codes per level.
        n_q: N_q, the number of levels.
        quantizer_dropout: probability that a training batch uses a random number of levels in
            1..N_q instead of all of them (SoundStream's quantizer dropout; 0 turns it off).
        beta, use_ema, decay, kmeans_init, kmeans_iters, dead_code_steps, cosine: passed to every
            level's :class:`VectorQuantizer`.

    Notebook: notebooks/04_neural_codec.ipynb
    """

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        n_q: int,
        quantizer_dropout: float = 0.0,
        beta: float = 0.25,
        use_ema: bool = True,
        decay: float = 0.99,
        kmeans_init: bool = False,
        kmeans_iters: int = 10,
        dead_code_steps: int = 0,
        cosine: bool = False,
    ) -> None:
        super().__init__()
        if n_q < 1 or not 0.0 <= quantizer_dropout <= 1.0:
            raise ConfigError(
                f"ResidualVQ needs n_q >= 1 and 0 <= quantizer_dropout <= 1, got {n_q}, {quantizer_dropout}."
            )
        self.dim, self.codebook_size, self.n_q = dim, codebook_size, n_q
        self.quantizer_dropout = quantizer_dropout
        self.levels = nn.ModuleList(
            VectorQuantizer(
                dim,
                codebook_size,
                beta=beta,
                use_ema=use_ema,
                decay=decay,
                kmeans_init=kmeans_init,
                kmeans_iters=kmeans_iters,
                dead_code_steps=dead_code_steps,
                cosine=cosine,
            )
            for _ in range(n_q)
        )

    @property
    def bits_per_frame(self) -> float:
        """log2(K): the bits of one level's code."""
        return math.log2(self.codebook_size)

    def bitrate(self, frame_rate: float, n_q: int | None = None) -> float:
        """Bits per second of ``n_q`` levels (default all) at ``frame_rate`` frames per second: f · n_q · log2(K)."""
        return frame_rate * self._check_n_q(n_q) * self.bits_per_frame

    def forward(self, z: Tensor, n_q: int | None = None) -> ResidualVQOutput:
        """Quantize ``z`` (B, D, T) with ``n_q`` levels (default: all, or a random number under dropout)."""
        if n_q is None:
            n_q = self._sample_n_q() if self.training else self.n_q
        n_q = self._check_n_q(n_q)
        residual = z  # r_1 = z
        total = torch.zeros_like(z)  # Σ_i e^(i), without gradient
        codes, commitment, codebook, perplexity, usage = [], [], [], [], []
        for level in self.levels[:n_q]:
            out = level(residual)  # quantizes r_i; its commitment loss reaches z through r_i
            chosen = out.quantized.detach()  # e^(i)_{k_i}, exactly
            total = total + chosen
            residual = residual - chosen  # r_{i+1} = r_i - sg[e^(i)]
            codes.append(out.indices)
            commitment.append(out.commitment_loss)
            codebook.append(out.codebook_loss)
            perplexity.append(out.perplexity)
            usage.append(out.usage)
        quantized = total + (z - z.detach())  # value Σ_i e^(i), gradient straight through to z
        commitment_loss, codebook_loss = torch.stack(commitment).sum(), torch.stack(codebook).sum()
        return ResidualVQOutput(
            quantized=quantized,
            codes=torch.stack(codes, dim=1),  # (B, n_q, T)
            commitment_loss=commitment_loss,
            codebook_loss=codebook_loss,
            loss=commitment_loss + codebook_loss,
            perplexity=torch.stack(perplexity),
            usage=torch.stack(usage),
            n_q=n_q,
        )

    @torch.no_grad()
    def encode(self, z: Tensor, n_q: int | None = None) -> Tensor:
        """Codes of ``z``: (B, D, T) -> LongTensor (B, n_q, T), coarsest level first. Changes no state."""
        residual, codes = z, []
        for level in self.levels[: self._check_n_q(n_q)]:
            indices = level.encode(residual)  # (B, T)
            residual = residual - level.decode(indices)
            codes.append(indices)
        return torch.stack(codes, dim=1)  # (B, n_q, T)

    def decode(self, codes: Tensor) -> Tensor:
        """z_q of ``codes`` (B, n_q, T) with n_q <= N_q: the sum of the first n_q levels' codes, (B, D, T)."""
        if codes.ndim != 3 or not 1 <= codes.shape[1] <= self.n_q:
            raise AudioInputError(
                f"ResidualVQ.decode expects codes of shape (B, n_q, T) with 1 <= n_q <= {self.n_q}, got "
                f"{tuple(codes.shape)}: pass the output of encode (add a batch dimension with codes[None])."
            )
        if codes.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64) or codes.dtype == torch.bool:
            raise AudioInputError(f"Codes must be integers (torch.long), got {codes.dtype}: use codes.long().")
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise AudioInputError(
                f"Codes must lie in [0, {self.codebook_size}), got values from {int(codes.min())} to {int(codes.max())}: "
                "these codes come from another model (or were corrupted)."
            )
        codes = codes.long()
        return sum(level.decode(codes[:, i]) for i, level in enumerate(self.levels[: codes.shape[1]]))  # (B, D, T)

    def _sample_n_q(self) -> int:
        """SoundStream's quantizer dropout: n_q ~ Uniform{1..N_q} with probability ``quantizer_dropout``."""
        if self.quantizer_dropout > 0 and torch.rand(()) < self.quantizer_dropout:
            return int(torch.randint(1, self.n_q + 1, ()))  # drawn on the CPU: no device sync
        return self.n_q

    def _check_n_q(self, n_q: int | None) -> int:
        n_q = self.n_q if n_q is None else int(n_q)
        if not 1 <= n_q <= self.n_q:
            raise ConfigError(f"n_q must be between 1 and {self.n_q} (the levels this ResidualVQ has), got {n_q}.")
        return n_q
