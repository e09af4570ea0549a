"""The vector-quantization layer of VQ-VAE (van den Oord et al. 2017, "Neural Discrete Representation Learning").

Each encoder output vector z_e(x) is replaced by its nearest codebook entry e_k (eq. 1-2 of the
paper), and the model is trained with the lecture's loss (eq. 3):

    L = log p(x | z_q(x)) + ||sg[z_e(x)] - e||² + β ||z_e(x) - sg[e]||²
        reconstruction      codebook loss          commitment loss

``sg`` is stop-gradient. The reconstruction term belongs to the model around the layer; this layer
returns the other two separately (both are mean squared errors, as in the reference code). They
have the same *value* and differ only in where their gradient goes: the codebook loss moves the
codes towards the encoder outputs, the commitment loss moves the encoder outputs towards the codes.
Nearest-neighbour look-up has no gradient, so the decoder's gradient is copied from z_q(x) to
z_e(x): the straight-through estimator (sec. 3.1 of the paper).

Each option is one idea from the papers, off by default so a notebook can switch it on and compare:

- ``use_ema``: codebook as exponential moving averages of the assigned encoder outputs (paper,
  appendix A.1, eq. 6-8) with Laplace-smoothed counts, instead of the codebook loss.
- ``kmeans_init``: codebook initialised by k-means on the first training batch (as EnCodec does).
- ``dead_code_steps``: a code unused for that many training steps in a row is replaced, at the start
  of the next step, by a random encoder output of that step's batch (Jukebox's "random restarts",
  Dhariwal et al. 2020, sec. 2.3).
- ``cosine``: encoder outputs and codes are l2-normalised, so the nearest code is the most similar
  in angle (Yu et al. 2022, "Vector-quantized Image Modeling with Improved VQGAN", sec. 3.2).

Under data-parallel training (``torchrun``, see :mod:`course_lib.train.distributed`) each process
quantizes its slice of the global batch, but the codebook's state follows the whole batch, so every
copy stays the one a single process would train: the EMA statistics and the usage counts are summed
over processes, the k-means initialisation runs on rank 0 over every process's vectors, and the
restarts draw from every process's vectors, with rank 0's draw.

Notebook: notebooks/02_vq_vae.ipynb
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_lib.errors import AudioInputError, ConfigError
from course_lib.quantize.kmeans import KMeans, nearest_centers
from course_lib.train.distributed import broadcast_from_main, current_context, gather_with_grad, sum_over_processes


class QuantizerOutput(NamedTuple):
    """What ``VectorQuantizer.forward`` returns; the losses and statistics are 0-dim tensors."""

    quantized: Tensor  # (B, D, ...) z_q(x) in value, the gradient goes to z_e(x)
    indices: Tensor  # (B, ...) LongTensor of code indices
    codebook_loss: Tensor  # ||sg[z_e] - e||², zero when the codebook is learnt by EMA
    commitment_loss: Tensor  # β ||z_e - sg[e]||², β included
    loss: Tensor  # codebook_loss + commitment_loss
    perplexity: Tensor  # exp(entropy of the batch's code histogram): K when all codes are used evenly
    usage: Tensor  # fraction of the codes used at least once in the batch


class VectorQuantizer(nn.Module):
    """Nearest-neighbour quantization with a straight-through gradient, for (B, D, T) or (B, D, H, W).

    Example::

        vq = VectorQuantizer(dim=64, codebook_size=512, use_ema=True)
        out = vq(z_e)                                   # z_e: (B, 64, T)
        loss = F.mse_loss(decoder(out.quantized), x) + out.loss

    Args:
        dim: D, the size of each vector (the channel dimension, dim 1 of the input).
        codebook_size: K, the number of codes.
        beta: commitment weight β (0.25 in the paper).
        use_ema: learn the codebook by exponential moving averages instead of the codebook loss.
        decay: EMA decay γ (0.99 in the paper).
        eps: Laplace smoothing of the EMA cluster sizes.
        kmeans_init: set the codebook by k-means on the first training batch (needs N >= K vectors).
        kmeans_iters: Lloyd iterations of that k-means.
        dead_code_steps: replace a code unused for this many training steps in a row (0: never).
        cosine: l2-normalise encoder outputs and codes before the look-up.
        chunk_size: rows per distance block (see ``nearest_centers``).

    Notebook: notebooks/02_vq_vae.ipynb
    """

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        beta: float = 0.25,
        use_ema: bool = False,
        decay: float = 0.99,
        eps: float = 1e-5,
        kmeans_init: bool = False,
        kmeans_iters: int = 10,
        dead_code_steps: int = 0,
        cosine: bool = False,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        if dim < 1 or codebook_size < 1 or beta < 0 or not 0 <= decay < 1 or dead_code_steps < 0:
            raise ConfigError(
                f"VectorQuantizer needs dim >= 1, codebook_size >= 1, beta >= 0, 0 <= decay < 1 and "
                f"dead_code_steps >= 0; got dim={dim}, codebook_size={codebook_size}, beta={beta}, "
                f"decay={decay}, dead_code_steps={dead_code_steps}."
            )
        self.dim, self.codebook_size, self.beta = dim, codebook_size, beta
        self.use_ema, self.decay, self.eps = use_ema, decay, eps
        self.kmeans_init, self.kmeans_iters = kmeans_init, kmeans_iters
        self.dead_code_steps, self.cosine, self.chunk_size = dead_code_steps, cosine, chunk_size

        # Small uniform codes, as in the widely used PyTorch port of the paper's model.
        initial = torch.empty(codebook_size, dim).uniform_(-1 / codebook_size, 1 / codebook_size)  # (K, D)
        if use_ema:
            self.register_buffer("codebook", initial)
            self.register_buffer("cluster_size", torch.ones(codebook_size))  # N_k, eq. 6
            self.register_buffer("embed_sum", initial.clone())  # m_k, eq. 7; m_k / N_k = e_k at the start
        else:
            self.codebook = nn.Parameter(initial)
        if dead_code_steps:
            self.register_buffer("steps_unused", torch.zeros(codebook_size, dtype=torch.long))
        if kmeans_init:
            self.register_buffer("initialised", torch.tensor(False))

    def codes(self) -> Tensor:
        """The codebook as used for look-up, (K, D): l2-normalised rows when ``cosine``."""
        return F.normalize(self.codebook, dim=1) if self.cosine else self.codebook

    def forward(self, z_e: Tensor) -> QuantizerOutput:
        """Quantize ``z_e`` (B, D, T) or (B, D, H, W); in training mode also update the codebook state.

        Runs in the codebook's dtype (float32) whatever the input's, also under autocast: 16-bit
        distances would pick wrong codes.
        """
        with torch.autocast(z_e.device.type, enabled=False):  # float32 distances and EMA, also under AMP
            flat = self._flatten(z_e.to(self.codebook.dtype))  # (N, D), float32 under AMP too
            if self.training and self.kmeans_init and not self.initialised:
                self._init_from_kmeans(flat.detach())
            if self.training and self.dead_code_steps:  # before the codes enter this step's graph
                self._restart_dead_codes(flat.detach())
            codes = self.codes()  # (K, D)
            indices, _ = nearest_centers(flat.detach(), codes.detach(), self.chunk_size)  # (N,)
            z_q = F.embedding(indices, codes)  # (N, D); carries the codebook's gradient

            if self.use_ema:
                codebook_loss = torch.zeros((), dtype=flat.dtype, device=flat.device)
            else:
                codebook_loss = F.mse_loss(z_q, flat.detach())  # ||sg[z_e] - e||²
            commitment_loss = self.beta * F.mse_loss(flat, z_q.detach())  # β ||z_e - sg[e]||²

            counts = torch.bincount(indices, minlength=self.codebook_size)  # (K,) this process's vectors
            if self.training and (self.use_ema or self.dead_code_steps):
                with torch.no_grad():
                    global_counts = sum_over_processes(counts)  # (K,) the global batch's, under torchrun
                    if self.use_ema:
                        self._ema_update(flat, indices, global_counts)
                    if self.dead_code_steps:
                        self.steps_unused.add_(1).masked_fill_(global_counts > 0, 0)

            # Straight-through estimator: the value of z_q, the gradient of z_e. Written as
            # z_q + (z_e - sg[z_e]) rather than z_e + sg[z_q - z_e] so that the value is exactly z_q.
            quantized = z_q.detach() + (flat - flat.detach())  # (N, D)
            probs = counts.to(flat.dtype) / indices.numel()  # (K,)
            return QuantizerOutput(
                quantized=self._unflatten(quantized, z_e.shape),
                indices=indices.view(z_e.shape[0], *z_e.shape[2:]),
                codebook_loss=codebook_loss,
                commitment_loss=commitment_loss,
                loss=codebook_loss + commitment_loss,
                perplexity=torch.special.entr(probs).sum().exp(),
                usage=(counts > 0).to(flat.dtype).mean(),
            )

    @torch.no_grad()
    def encode(self, z_e: Tensor) -> Tensor:
        """Code indices of ``z_e``: (B, D, ...) -> LongTensor (B, ...). Changes no state."""
        with torch.autocast(z_e.device.type, enabled=False):
            indices, _ = nearest_centers(self._flatten(z_e.to(self.codebook.dtype)), self.codes(), self.chunk_size)
        return indices.view(z_e.shape[0], *z_e.shape[2:])

    def decode(self, indices: Tensor) -> Tensor:
        """Codes of ``indices``: LongTensor (B, ...) -> (B, D, ...), as ``forward``'s ``quantized``."""
        return F.embedding(indices, self.codes()).movedim(-1, 1)  # (B, D, ...)

    def _ema_update(self, flat: Tensor, indices: Tensor, counts: Tensor) -> None:
        """Eq. 6-8 of the paper's appendix A.1, with Laplace smoothing of N_k (as Sonnet's VQ-VAE).

        ``counts`` are the global batch's (summed over processes); under data-parallel training the
        sums are added up over all processes here, so every copy of the codebook moves by the
        statistics of the whole global batch.
        """
        gamma, k = self.decay, self.codebook_size
        counts = counts.to(flat.dtype)  # (K,) n_k
        assigned_sum = torch.zeros_like(self.embed_sum).index_add_(0, indices, flat)  # (K, D) Σ_{j→k} z_e_j
        assigned_sum = sum_over_processes(assigned_sum)  # the global batch's, under torchrun
        self.cluster_size.mul_(gamma).add_(counts, alpha=1 - gamma)  # N_k = γ N_k + (1-γ) n_k
        self.embed_sum.mul_(gamma).add_(assigned_sum, alpha=1 - gamma)  # m_k = γ m_k + (1-γ) Σ z_e
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (total + k * self.eps) * total  # (K,) never 0
        torch.div(self.embed_sum, smoothed[:, None], out=self.codebook)  # e_k = m_k / N_k

    @torch.no_grad()
    def _restart_dead_codes(self, flat: Tensor) -> None:
        """Codes unused in the last ``dead_code_steps`` steps become random encoder outputs of this batch.

        Under torchrun the rows are drawn from the global batch (every process's vectors, in rank
        order: the order one process would see them in) with rank 0's draw, so every copy replaces the
        same codes by the same vectors.
        """
        context = current_context()
        rows = flat.shape[0] * context.world_size  # vectors in the global batch (the slices are equal)
        chosen = torch.randint(rows, (self.codebook_size,), device=flat.device)  # (K,) drawn at every step
        dead = (self.steps_unused >= self.dead_code_steps)[:, None]  # (K, 1) the same on every process
        if context.enabled:
            if not dead.any():  # every process answers alike (global counts), so all skip the collectives
                return
            chosen = broadcast_from_main(chosen)
            flat = gather_with_grad(flat)  # (N · world_size, D) the global batch's vectors
        replacement = flat[chosen]  # (K, D)
        self.codebook.copy_(torch.where(dead, replacement, self.codebook))
        if self.use_ema:  # restart the averages too, as if the code had been seen once at `replacement`
            self.embed_sum.copy_(torch.where(dead, replacement, self.embed_sum))
            self.cluster_size.masked_fill_(dead.squeeze(1), 1.0)
        self.steps_unused.masked_fill_(dead.squeeze(1), 0)

    def _init_from_kmeans(self, flat: Tensor) -> None:
        """K-means on the first batch's vectors; under torchrun on the global batch's, run by rank 0."""
        context = current_context()
        rows = flat.shape[0] * context.world_size  # vectors in the global batch (the slices are equal)
        if rows < self.codebook_size:
            raise ConfigError(
                f"kmeans_init needs at least codebook_size={self.codebook_size} vectors in the first "
                f"training batch, got {rows}: use a larger first batch, a smaller codebook, "
                "or kmeans_init=False."
            )
        seed = int(torch.randint(2**31 - 1, (1,)))  # from torch's global generator: seed_everything fixes it
        flat = gather_with_grad(flat)  # (N · world_size, D); unchanged in a single process
        if context.is_main:
            centers = KMeans(self.codebook_size, max_iter=self.kmeans_iters, seed=seed).fit(flat).centers  # (K, D)
        else:
            centers = torch.empty(self.codebook_size, self.dim, dtype=flat.dtype, device=flat.device)
        centers = broadcast_from_main(centers.contiguous())  # rank 0's codebook on every process
        with torch.no_grad():
            self.codebook.copy_(centers)
            if self.use_ema:
                self.embed_sum.copy_(centers)
                self.cluster_size.fill_(1.0)
        self.initialised.fill_(True)

    def _flatten(self, z_e: Tensor) -> Tensor:
        """(B, D, ...) -> (N, D), checked, l2-normalised when ``cosine``."""
        if z_e.ndim not in (3, 4) or z_e.shape[1] != self.dim:
            raise AudioInputError(
                f"VectorQuantizer(dim={self.dim}) expects (B, {self.dim}, T) or (B, {self.dim}, H, W), got "
                f"{tuple(z_e.shape)}: put the {self.dim} features in dim 1 (e.g. x.transpose(1, 2) for a "
                "(B, T, D) tensor), or build the layer with dim equal to your channel count."
            )
        flat = z_e.movedim(1, -1).reshape(-1, self.dim)  # (N, D)
        if not torch.isfinite(flat).all():
            raise AudioInputError(
                "The input of VectorQuantizer contains NaN or infinite values: training probably "
                "diverged; lower the learning rate or clip gradients, and check the encoder's input."
            )
        return F.normalize(flat, dim=1) if self.cosine else flat

    def _unflatten(self, flat: Tensor, shape: torch.Size) -> Tensor:
        """(N, D) -> (B, D, ...), the layout of the input."""
        return flat.view(shape[0], *shape[2:], self.dim).movedim(-1, 1)
