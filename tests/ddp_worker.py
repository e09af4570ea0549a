"""Trained by ``tests/test_distributed.py``: under torchrun (gloo, CPU) or in one process, the same recipe.

    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/ddp_worker.py OUT_DIR

writes ``OUT_DIR/{function,loader,vq,contrastive,inner}.pt`` (rank 0: the weights after training on a
batch function, on a DataLoader, of a model with an EMA codebook, of a small joint audio-text
embedding whose contrastive loss needs every process's examples as negatives, and of a model whose
loss steps its own module outside DDP, as the codec's discriminator) and ``OUT_DIR/history.json``;
then ``OUT_DIR/{vqvae,hierarchical}_recipe.pt``: the shipped VQ-VAE recipes of
``course_lib.quantize.recipes`` (EMA, k-means init, dead-code restarts) for a few steps, with
``OUT_DIR/recipe_events.json`` (how many codes each recipe restarted, whether k-means ran).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from course_lib.data import SynthMusic
from course_lib.joint_embedding import CaptionTokenizer, JointEmbedding, JointEmbeddingConfig
from course_lib.joint_embedding.train import contrastive_step
from course_lib.quantize import VectorQuantizer
from course_lib.quantize import recipes as vqvae_recipes
from course_lib.train import TrainConfig, Trainer, warmup_cosine_schedule
from course_lib.train.distributed import (
    average_gradients,
    broadcast_parameters,
    current_context,
    distributed_loader,
    init_distributed,
)

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


CAPTIONS = [
    "a slow plucked-string melody without drums",
    "a fast FM-bell tune with drums",
    "a loud additive-synth line in C major",
    "a gentle medium-tempo melody with a drum beat",
]

TOKENIZER = CaptionTokenizer(JointEmbeddingConfig().max_tokens)


def make_embedding() -> JointEmbedding:
    """A small joint embedding without dropout (its random masks would differ between processes)."""
    torch.manual_seed(0)
    config = JointEmbeddingConfig(audio_channels=16, text_channels=16, audio_layers=1, text_layers=1, heads=2, dim=8)
    return JointEmbedding(dataclasses.replace(config, dropout=0.0))


def global_contrastive_batch(step: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(step)
    ids, mask = TOKENIZER([f"{CAPTIONS[i % 4]} at {60 + i} BPM" for i in range(GLOBAL_BATCH)])  # (B, L) each
    log_mel = torch.randn(GLOBAL_BATCH, 64, 24, generator=generator) - 4.0  # (B, M, F)
    return {"log_mel": log_mel, "ids": ids, "mask": mask}


class InnerStep:
    """The codec's pattern: a loss function that first steps its own module (a "discriminator") outside DDP."""

    def __init__(self) -> None:
        torch.manual_seed(1 + current_context().rank)  # different starts: broadcast_parameters must align them
        self.critic = torch.nn.Linear(1, 1)
        self.optimizer = torch.optim.SGD(self.critic.parameters(), lr=0.1)
        self.calls = 0

    def __call__(self, model: torch.nn.Module, batch) -> torch.Tensor:
        x, y = batch
        prediction = model(x)  # (b, 1)
        if self.calls == 0:
            broadcast_parameters(self.critic)
        self.calls += 1
        self.optimizer.zero_grad()
        torch.nn.functional.mse_loss(self.critic(prediction.detach()), y).backward()
        average_gradients(self.critic)
        self.optimizer.step()
        return torch.nn.functional.mse_loss(prediction, y) + 0.1 * self.critic(prediction).square().mean()


def train(data, model: torch.nn.Module | None = None, loss_fn=mse, sgd: bool = False) -> tuple[torch.nn.Module, list]:
    """``sgd``: plain SGD instead of the Trainer's AdamW, whose m/√v turns float noise in a near-zero
    gradient into a full-size step (the transformer has many such weights after a few steps)."""
    config = TrainConfig(steps=STEPS, lr=0.5 if sgd else 0.05, log_every=2, progress=False, grad_clip=0.5)
    model = model or make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr) if sgd else None
    trainer = Trainer(model, loss_fn, config, optimizer=optimizer, device="cpu")
    history = trainer.fit(data)
    return trainer.model, history


RECIPE_STEPS = 22  # k-means runs at step 1; with dead_code_steps=20 the first restarts come at step 21


def train_recipe(name: str) -> tuple[torch.nn.Module, dict]:
    """``course_lib.quantize.recipes``' recipe ``name`` at the tiny scale for RECIPE_STEPS steps, as its ``train`` runs it.

    In float64, so that the two runs' rounding differences (each process sums its half of the batch)
    stay near 1e-15 and the test can compare tightly; in float32 they reach 1e-7 in a few AdamW steps,
    and a vector near the midpoint of two codes then picks either. See ``RECIPE_TOLERANCE`` in
    ``test_distributed.py`` for the one tie that float64 does not remove.

    Returns the trained model and what its quantizers did: codes restarted, k-means initialisations.
    """
    plan = vqvae_recipes.recipe(name, "tiny")
    torch.manual_seed(plan.seed)
    model = plan.build().double()
    events = {"restarted": 0, "kmeans": 0}
    for quantizer in (m for m in model.modules() if isinstance(m, VectorQuantizer)):
        _count_events(quantizer, events)
    clips = SynthMusic(n_clips=16, seconds=2.0, sample_rate=16_000).batch(16).audio.double()  # (16, T)
    config = TrainConfig(steps=RECIPE_STEPS, lr=plan.lr, log_every=RECIPE_STEPS, seed=plan.seed, progress=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=plan.lr, weight_decay=config.weight_decay)
    scheduler = warmup_cosine_schedule(optimizer, RECIPE_STEPS, warmup_steps=RECIPE_STEPS // 20)
    trainer = Trainer(model, recipe_loss, config, optimizer=optimizer, scheduler=scheduler, device="cpu")
    trainer.fit(lambda step: random_crops(clips, plan.batch_size, plan.crop, step))
    return model, events


def recipe_loss(model: torch.nn.Module, wav: torch.Tensor) -> torch.Tensor:
    """The recipes' total loss (the recipes log each term too; the weights do not depend on that)."""
    return model(wav).loss


def random_crops(clips: torch.Tensor, batch_size: int, crop: int, step: int) -> torch.Tensor:
    """Step ``step``'s global batch, (batch_size, crop): random crops of random clips, as the recipe draws them."""
    generator = torch.Generator().manual_seed(step)
    rows = torch.randint(clips.shape[0], (batch_size,), generator=generator)  # (B,)
    starts = torch.randint(clips.shape[1] - crop + 1, (batch_size,), generator=generator)  # (B,)
    return clips[rows[:, None], starts[:, None] + torch.arange(crop)]  # (B, crop)


def _count_events(quantizer: VectorQuantizer, events: dict) -> None:
    restart, init = quantizer._restart_dead_codes, quantizer._init_from_kmeans

    def counted_restart(flat: torch.Tensor) -> None:
        events["restarted"] += int((quantizer.steps_unused >= quantizer.dead_code_steps).sum())
        restart(flat)

    def counted_init(flat: torch.Tensor) -> None:
        events["kmeans"] += 1
        init(flat)

    quantizer._restart_dead_codes, quantizer._init_from_kmeans = counted_restart, counted_init


def main(out_dir: Path) -> None:
    torch.set_num_threads(1)
    context = init_distributed()
    by_function, history = train(global_batch)
    loader = distributed_loader(make_dataset(), batch_size=GLOBAL_BATCH // context.world_size, seed=3)
    by_loader, _ = train(loader)
    vq_model, _ = train(global_vq_batch, TinyVQModel(), lambda model, x: model(x))
    inner = InnerStep()
    by_inner, _ = train(global_batch, loss_fn=inner)
    embedding, _ = train(global_contrastive_batch, make_embedding(), contrastive_step, sgd=True)
    if current_context().is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        torch.save(by_function.state_dict(), out_dir / "function.pt")
        torch.save(by_loader.state_dict(), out_dir / "loader.pt")
        torch.save(vq_model.state_dict(), out_dir / "vq.pt")
        torch.save(embedding.state_dict(), out_dir / "contrastive.pt")
        torch.save(
            {**by_inner.state_dict(), **{f"critic.{k}": v for k, v in inner.critic.state_dict().items()}},
            out_dir / "inner.pt",
        )
        (out_dir / "history.json").write_text(json.dumps(list(history)))
    recipe_events = {}
    for name in ("vqvae", "hierarchical"):
        model, recipe_events[name] = train_recipe(name)
        if current_context().is_main:
            torch.save(model.state_dict(), out_dir / f"{name}_recipe.pt")
    if current_context().is_main:
        (out_dir / "recipe_events.json").write_text(json.dumps(recipe_events))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
