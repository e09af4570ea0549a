"""Train the course's joint audio–text embedding on SynthMusic: the recipe and the one command behind the shipped weights.

    python -m course_lib.joint_embedding.train --scale tiny --out course_lib/checkpoints/joint_embedding_tiny.safetensors

- Data: :func:`course_lib.data.splits.training_clips` (2-second clips at 16 kHz, none of the held-out
  attribute combinations). Their log-mel spectrograms are computed once; each step draws a batch of
  clips with a generator seeded by the step (so a batch depends only on the step), crops all of them
  to one random length between 1.5 and 2 s at random offsets (the embedding should not depend on
  where a clip starts) and **writes each clip a fresh caption** from its metadata with
  :func:`course_lib.data.captions.make_caption` (a new template and synonyms every time), so the text
  tower learns the words, not one sentence per clip.
- Loss: the symmetric InfoNCE of :func:`course_lib.joint_embedding.model.contrastive_loss` with a
  learnt temperature; AdamW, 5% warm-up, cosine decay (:func:`course_lib.train.warmup_cosine_schedule`).
- Figures (stored in the weights' metadata): text → audio recall@1 / @5 and audio → text recall@1
  among held-out clips (combinations never trained on) and among validation clips (new clips of the
  training combinations); attribute retrieval (each caption searching both sets); zero-shot
  accuracy per attribute; the matching / non-matching cosine gap. ``--evaluate PATH`` prints them for any saved embedding.

Notebook: notebooks/06_text_to_music.ipynb loads the result with
:func:`course_lib.joint_embedding.load_tiny_joint_embedding`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from course_lib.config import get_scale, seed_everything
from course_lib.data.batches import step_generator
from course_lib.data.captions import make_caption
from course_lib.data.splits import held_out_clips, training_clips, validation_clips
from course_lib.data.synth_music import Clip, ClipBatch
from course_lib.errors import ConfigError
from course_lib.joint_embedding.model import (
    JointEmbedding,
    JointEmbeddingConfig,
    contrastive_loss,
)
from course_lib.joint_embedding.retrieval import (
    attribute_retrieval_accuracy,
    embedding_gap,
    retrieval_accuracy,
    zero_shot_accuracy,
)
from course_lib.train.command import TrainingCommand, positive_int


@dataclasses.dataclass
class Recipe:
    """Everything that defines a shipped joint embedding: model config, data and training length."""

    config: JointEmbeddingConfig
    steps: int
    n_clips: int
    batch_size: int = 64
    lr: float = 1e-3
    min_seconds: float = 1.5
    eval_clips: int = 200
    seed: int = 0


def recipe(scale: str | None = None, **changes: Any) -> Recipe:
    """The recipe of the shipped checkpoint at ``scale`` (``tiny``: minutes on one CPU thread), fields overridden by ``changes`` (None: keep)."""
    config = JointEmbeddingConfig.for_scale(scale)
    plan = (
        Recipe(config, steps=20_000, n_clips=20_000, batch_size=128, lr=5e-4)
        if get_scale(scale) == "full"
        else Recipe(config, steps=2_000, n_clips=3_000)
    )
    return dataclasses.replace(plan, **{k: v for k, v in changes.items() if v is not None})


def recaption(clip: Clip, rng: np.random.Generator) -> str:
    """A new caption of ``clip`` from its metadata: another template and other synonyms, the same facts."""
    return make_caption(
        rng, clip.instrument, clip.tempo_class, clip.tempo, f"{clip.key} {clip.mode}", clip.dynamics,
        clip.dynamics_shape, clip.drums,
    )  # fmt: skip


def contrastive_batches(
    model: JointEmbedding, clips: ClipBatch, log_mels: Tensor, plan: Recipe
) -> Callable[[int], dict[str, Tensor]]:
    """A ``step -> batch`` function for ``Trainer.fit``: log-mel crops, fresh captions, their token ids.

    Args:
        log_mels: ``(N, M, F)`` log-mel spectrograms of ``clips``.
    """
    n_clips, _, n_frames = log_mels.shape
    min_frames = min(n_frames, round(plan.min_seconds * model.config.sample_rate / model.config.hop_length))
    if plan.batch_size > n_clips:
        raise ConfigError(f"batch_size {plan.batch_size} is larger than the {n_clips} training clips.")

    def batch_at(step: int) -> dict[str, Tensor]:
        generator = step_generator(plan.seed, step)
        chosen = torch.randperm(n_clips, generator=generator)[: plan.batch_size]  # (B,) distinct clips
        length = int(torch.randint(min_frames, n_frames + 1, (1,), generator=generator))
        starts = torch.randint(n_frames - length + 1, (plan.batch_size,), generator=generator)  # (B,)
        frames = starts[:, None] + torch.arange(length)  # (B, L)
        crops = log_mels[chosen[:, None, None], torch.arange(log_mels.shape[1])[None, :, None], frames[:, None, :]]
        rng = np.random.Generator(np.random.PCG64([plan.seed, step]))
        captions = [recaption(clips.clips[i], rng) for i in chosen.tolist()]
        ids, mask = model.tokenizer(captions)  # (B, L_text), (B, L_text)
        return {"log_mel": crops, "ids": ids, "mask": mask}  # crops: (B, M, L)

    return batch_at


def contrastive_step(model: JointEmbedding, batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """The Trainer's loss_fn: InfoNCE, in-batch text → audio accuracy, and the temperature 1 / exp(τ)."""
    logits = model(batch["log_mel"], batch["ids"], batch["mask"])  # (B, B), clips along rows
    targets = torch.arange(logits.shape[0], device=logits.device)  # (B,)
    return {
        "loss": contrastive_loss(logits),
        "text_to_audio_accuracy": (logits.argmax(dim=0) == targets).float().mean(),
        "temperature": 1.0 / model.logit_scale.detach(),
    }


def log_mels_of(model: JointEmbedding, audio: Tensor, chunk: int = 256) -> Tensor:
    """``(N, T)`` → ``(N, M, F)`` log-mel, a chunk of clips at a time."""
    return torch.cat([model.log_mel(part) for part in audio.split(chunk)])


def evaluate(model: JointEmbedding, n_clips: int = 200) -> dict[str, dict[str, float]]:
    """Retrieval figures on ``n_clips`` held-out clips (unseen combinations) and ``n_clips`` validation clips.

    Recall@k, the gap and zero-shot accuracy are measured within each set; attribute retrieval searches
    the clips of *both* sets for each caption (among held-out clips alone, the instrument would give
    the tempo away: each held-out instrument comes with one tempo class).
    """
    model.eval()
    sets = {"held_out": held_out_clips(n_clips), "validation": validation_clips(n_clips)}
    pool = torch.cat([batch.audio for batch in sets.values()])  # (2N, T)
    pool_labels = {name: torch.cat([batch.labels[name] for batch in sets.values()]) for name in sets["held_out"].labels}
    figures = {}
    for name, batch in sets.items():
        audio, captions = batch.audio, batch.captions
        gap = embedding_gap(model, audio, captions)
        attributes = attribute_retrieval_accuracy(model, pool, pool_labels, captions)
        figures[name] = {
            "clips": n_clips,
            "text_to_audio_r1": retrieval_accuracy(model, audio, captions, k=1),
            "text_to_audio_r5": retrieval_accuracy(model, audio, captions, k=5),
            "audio_to_text_r1": retrieval_accuracy(model, audio, captions, k=1, direction="audio_to_text"),
            **{f"attribute_{k}": v for k, v in attributes.items()},
            **{f"zero_shot_{k}": v for k, v in zero_shot_accuracy(model, audio, batch.labels).items()},
            "matching_cosine": gap["matching"],
            "non_matching_cosine": gap["non_matching"],
        }
    return figures


def train(plan: Recipe, device: str | torch.device | None = None, **train_options: Any) -> tuple[JointEmbedding, list]:
    """Train ``plan`` from its seed; returns the embedding (on the CPU) and the history.

    ``train_options`` are :class:`course_lib.train.TrainConfig` fields (checkpoint and resume options
    of :meth:`course_lib.train.command.Run.train_options`, ``progress``).
    """
    from course_lib.train import fit_with_warmup_cosine  # tqdm: keep local

    seed_everything(plan.seed)
    model = JointEmbedding(plan.config)
    clips = training_clips(plan.n_clips)
    log_mels = log_mels_of(model, clips.audio)  # (N, M, F)
    batches = contrastive_batches(model, clips, log_mels, plan)
    history = fit_with_warmup_cosine(
        model, contrastive_step, batches, plan.steps, plan.lr, plan.seed, device, **train_options
    )
    return model.cpu(), history


COMMAND = TrainingCommand("course_lib.joint_embedding.train", __doc__, out_required=False)
COMMAND.add_argument("--clips", type=positive_int, help="training clips (default: the recipe's)")
COMMAND.add_argument("--evaluate", type=Path, default=None, help="only measure these saved weights (no training)")


def main(argv: list[str] | None = None) -> dict:
    """Train the recipe of the command line (or ``--evaluate`` saved weights) and print the figures."""
    from course_lib.joint_embedding.model import load_joint_embedding

    run = COMMAND.parse(argv)
    if run.args.evaluate is not None:
        figures = evaluate(load_joint_embedding(run.args.evaluate, "cpu"))
        print(json.dumps(figures, indent=1))
        return figures
    args = run.args
    plan = recipe(run.scale, steps=args.steps, batch_size=args.batch_size, seed=args.seed, n_clips=args.clips)
    model, history = train(plan, run.device, **run.train_options())
    metadata = run.write(
        model,
        {
            "recipe": {k: v for k, v in dataclasses.asdict(plan).items() if k != "config"},
            "steps": plan.steps,
            "final_loss": history[-1]["loss"],
            "final_temperature": history[-1]["temperature"],
            "sample_rate": model.sample_rate,
            **evaluate(model, plan.eval_clips),
        },
    )
    print(json.dumps({k: v for k, v in metadata.items() if k != "recipe"}, indent=1))
    print(f"wrote {run.out}")
    return metadata


if __name__ == "__main__":
    COMMAND.exit(main)
