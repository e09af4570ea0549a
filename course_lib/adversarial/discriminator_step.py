"""GAN training inside the one training loop: a discriminator that takes its step within the generator's loss.

:class:`course_lib.train.Trainer` steps one optimizer, the generator's. SoundStream's codec (Zeghidour
et al. 2021, sec. 3.4) and HiFi-GAN (Kong et al. 2020, sec. 2.3) alternate: one discriminator step on
``L_D``, then one generator step on ``L_G`` against the updated discriminator. Their ``loss_fn`` objects
(:class:`course_lib.codec.recipes.CodecTrainingLoss`, :class:`course_lib.latent_diffusion.vocoder.HiFiGANTrainingLoss`)
call :meth:`DiscriminatorStep.step` first, then compute ``L_G``; the Trainer back-propagates it.

What a :class:`DiscriminatorStep` adds to a bare optimizer step:

- **Several processes**: under ``torchrun`` the discriminator is one model kept equal on every
  process, as DDP keeps the generator: its weights are broadcast from rank 0 before its first step
  and its gradients averaged before each step.
- **Exact resume**: the discriminator, its optimizer and its scheduler are in the run's checkpoint
  (:meth:`state_dict`, saved by the Trainer with the loss), so a GAN stage killed mid-run resumes bit
  for bit.

Notebooks: notebooks/04_neural_codec.ipynb and 08_latent_diffusion.ipynb (through their training commands).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from course_lib.train.distributed import average_gradients, broadcast_parameters


class DiscriminatorStep:
    """A discriminator, its optimizer (and scheduler), stepped once per call of a generator's ``loss_fn``."""

    def __init__(
        self, discriminator: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any | None = None
    ) -> None:
        self.discriminator, self.optimizer, self.scheduler = discriminator, optimizer, scheduler
        self._placed = False
        self._optimizer_state: dict | None = None  # from load_state_dict: loaded once the parameters are placed

    def step(self, loss_fn: Callable[[nn.Module], Tensor], device: torch.device) -> Tensor:
        """One optimizer step of the discriminator on ``loss_fn(discriminator)`` (L_D); returns L_D detached.

        Afterwards the discriminator's parameters do not require gradients, so the generator's terms
        computed next train the generator only; the next call switches them back on.
        """
        if not self._placed:
            self.discriminator.to(device)
            broadcast_parameters(self.discriminator)  # one discriminator on every process (a no-op in one)
            if self._optimizer_state is not None:  # Adam moves its moments to its parameters' device
                self.optimizer.load_state_dict(self._optimizer_state)
                self._optimizer_state = None
            self._placed = True
        self.discriminator.requires_grad_(True)
        self.optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(self.discriminator)
        loss.backward()
        average_gradients(self.discriminator)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.discriminator.requires_grad_(False)
        return loss.detach()

    def state_dict(self) -> dict[str, Any]:
        """The discriminator's, its optimizer's and its scheduler's states."""
        return {
            "discriminator": self.discriminator.state_dict(),
            "optimizer": self._optimizer_state or self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.discriminator.load_state_dict(state["discriminator"])
        self._optimizer_state, self._placed = state["optimizer"], False
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
