"""Trained by ``tests/test_distributed.py``: under torchrun (gloo, CPU) or in one process, the same recipe.

    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/ddp_worker.py OUT_DIR

writes ``OUT_DIR/{function,loader,vq}.pt`` (rank 0: the weights after training on a batch function, on
a DataLoader, and of a model with an EMA codebook) and ``OUT_DIR/history.json`` (the logged losses).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from course_lib.quantize import VectorQuantizer
from course_lib.train import TrainConfig, Trainer
from course_lib.train.distributed import current_context, distributed_loader, init_distributed

GLOBAL_BATCH = 8
STEPS = 6


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))


class TinyVQModel(torch.nn.Module):
    """A 1x1-conv encoder, an EMA vector quantizer and a decoder: EMA statistics must cover the global batch."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder, self.decoder = torch.nn.Conv1d(4, 2, 1), torch.nn.Conv1d(2, 4, 1)
        self.quantizer = VectorQuantizer(dim=2, codebook_size=8, use_ema=True, decay=0.5)
        with torch.no_grad():
            self.quantizer.codebook.normal_()
            self.quantizer.embed_sum.copy_(self.quantizer.codebook)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.quantizer(self.encoder(x))  # (B, 2, T)
        return torch.nn.functional.mse_loss(self.decoder(out.quantized), x) + out.loss


def make_dataset(n: int = 64) -> TensorDataset:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(n, 4, generator=generator)
    return TensorDataset(x, x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]))


def mse(model: torch.nn.Module, batch) -> torch.Tensor:
    x, y = batch
    return torch.nn.functional.mse_loss(model(x), y)


def global_batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole batch of ``step``; under torchrun each process keeps its slice."""
    x, y = make_dataset().tensors
    rows = torch.randperm(len(x), generator=torch.Generator().manual_seed(step))[:GLOBAL_BATCH]
    return x[rows], y[rows]


def global_vq_batch(step: int) -> torch.Tensor:
    return torch.randn(GLOBAL_BATCH, 4, 16, generator=torch.Generator().manual_seed(step))  # (B, C, T)


def train(data, model: torch.nn.Module | None = None, loss_fn=mse) -> tuple[torch.nn.Module, list]:
    config = TrainConfig(steps=STEPS, lr=0.05, log_every=2, progress=False, grad_clip=0.5)
    trainer = Trainer(model or make_model(), loss_fn, config, device="cpu")
    history = trainer.fit(data)
    return trainer.model, history


def main(out_dir: Path) -> None:
    torch.set_num_threads(1)
    context = init_distributed()
    by_function, history = train(global_batch)
    loader = distributed_loader(make_dataset(), batch_size=GLOBAL_BATCH // context.world_size, seed=3)
    by_loader, _ = train(loader)
    vq_model, _ = train(global_vq_batch, TinyVQModel(), lambda model, x: model(x))
    if current_context().is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        torch.save(by_function.state_dict(), out_dir / "function.pt")
        torch.save(by_loader.state_dict(), out_dir / "loader.pt")
        torch.save(vq_model.state_dict(), out_dir / "vq.pt")
        (out_dir / "history.json").write_text(json.dumps(list(history)))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
