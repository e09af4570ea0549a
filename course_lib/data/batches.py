"""Training batches drawn at random, reproducibly: random crops, and the two ways a run draws them.

Every training recipe of the course draws its batches from a seeded ``torch.Generator``, in one of two
ways, and both resume exactly (:class:`course_lib.train.Trainer` checkpoints the second's generator):

- :class:`StepBatches`: a fresh generator per step, seeded by ``(seed, step)`` (:func:`step_generator`),
  so a batch depends on the step alone — any step can be drawn again without the ones before it.
- :class:`GeneratorBatches`: one generator for the whole run, whose state travels in the checkpoint.

:func:`random_crops` is the one random-crop helper: random clips, random start times (optionally on
a hop grid), along the last axis of waveforms ``(N, T)`` or spectrograms ``(N, M, F)``.

Notebooks: 02_vq_vae, 03_hierarchical_vqvae (crops of SynthMusic clips); every training command.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from course_lib.errors import ConfigError

STEP_SEED_STRIDE = 1_000_003  # a prime: the generators of (seed, step) and (seed + 1, step') never coincide in practice


def step_generator(seed: int, step: int) -> torch.Generator:
    """The generator of step ``step`` of a run seeded with ``seed``: seeded with ``seed · 1,000,003 + step``."""
    return torch.Generator().manual_seed(seed * STEP_SEED_STRIDE + step)


def random_crops(
    x: Tensor, batch_size: int, length: int, generator: torch.Generator | None = None, hop: int = 1
) -> Tensor:
    """``batch_size`` random windows of ``length`` along the last axis of random items of ``x``.

    Args:
        x: ``(N, T)`` audio or ``(N, ..., T)`` (e.g. ``(N, M, F)`` spectrograms).
        hop: windows start on multiples of ``hop`` (a vocoder's crops start on its frame grid).

    Returns:
        ``(batch_size, ..., length)``; draws the items, then the starts, from ``generator``.

    Notebooks: notebooks/02_vq_vae.ipynb, 03_hierarchical_vqvae.ipynb, 08_latent_diffusion.ipynb
    """
    n, total = x.shape[0], x.shape[-1]
    if length > total:
        raise ConfigError(
            f"A crop of {length} is longer than the clips ({total} along the last axis): use a shorter crop."
        )
    items = torch.randint(n, (batch_size,), generator=generator)  # (B,)
    starts = torch.randint((total - length) // hop + 1, (batch_size,), generator=generator) * hop  # (B,)
    offsets = starts[:, None] + torch.arange(length)  # (B, length)
    if x.ndim == 2:
        return x[items[:, None], offsets]  # (B, length)
    picked = x[items]  # (B, ..., T)
    index = offsets.view(batch_size, *([1] * (x.ndim - 2)), length).expand(*picked.shape[:-1], length)
    return torch.gather(picked, -1, index)  # (B, ..., length)


class StepBatches:
    """A ``step -> batch`` data function: ``draw(step_generator(seed, step))``, so a batch depends on the step alone.

    Notebooks: notebooks/02_vq_vae.ipynb, 03_hierarchical_vqvae.ipynb
    """

    def __init__(self, draw: Callable[[torch.Generator], Any], seed: int = 0) -> None:
        self.draw, self.seed = draw, seed

    def __call__(self, step: int) -> Any:
        return self.draw(step_generator(self.seed, step))


class GeneratorBatches:
    """A ``step -> batch`` data function that draws every batch from one ``torch.Generator``.

    ``draw(generator)`` makes a batch; the trainer saves and restores ``generator``'s state with its
    checkpoints (as it does a shuffling DataLoader's), so a resumed run draws the same batches as a
    run that never stopped.

    Notebook: notebooks/08_latent_diffusion.ipynb
    """

    def __init__(self, draw: Callable[[torch.Generator], Any], generator: torch.Generator) -> None:
        self.draw, self.generator = draw, generator

    @classmethod
    def seeded(cls, draw: Callable[[torch.Generator], Any], seed: int) -> GeneratorBatches:
        """Draws from a new generator seeded with ``seed``."""
        return cls(draw, torch.Generator().manual_seed(seed))

    def __call__(self, step: int) -> Any:
        return self.draw(self.generator)
