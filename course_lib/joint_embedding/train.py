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

import argparse
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from course_lib.config import add_device_argument, get_scale, seed_everything, training_device
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

CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "checkpoints"


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


def recipe(scale: str | None = None) -> Recipe:
    """The recipe of the shipped checkpoint at ``scale`` (``tiny``: minutes on one CPU thread)."""
    config = JointEmbeddingConfig.for_scale(scale)
    if get_scale(scale) == "full":
        return Recipe(config, steps=20_000, n_clips=20_000, batch_size=128, lr=5e-4)
    return Recipe(config, steps=2_000, n_clips=3_000)


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
        generator = torch.Generator().manual_seed(plan.seed * 1_000_003 + step)
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


def train(
    scale: str | None, out: Path | None, steps: int | None = None, threads: int | None = 1, device: str | None = None
) -> dict:
    """Train the recipe from its seed, save the weights to ``out`` and return the figures it reached."""
    from course_lib.train import TrainConfig, Trainer, save_weights, warmup_cosine_schedule  # tqdm: keep local

    if threads:
        torch.set_num_threads(threads)
    plan = recipe(scale)
    steps = steps or plan.steps
    seed_everything(plan.seed)
    model = JointEmbedding(plan.config)
    started = time.perf_counter()
    cpu_started = time.process_time()
    clips = training_clips(plan.n_clips)
    log_mels = log_mels_of(model, clips.audio)  # (N, M, F)
    data_seconds = time.perf_counter() - started
    config = TrainConfig(steps=steps, lr=plan.lr, log_every=50, seed=plan.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=plan.lr, weight_decay=config.weight_decay)
    scheduler = warmup_cosine_schedule(optimizer, steps, warmup_steps=steps // 20)
    trainer = Trainer(
        model, contrastive_step, config, optimizer=optimizer, scheduler=scheduler, device=training_device(device, scale)
    )
    history = trainer.fit(contrastive_batches(model, clips, log_mels, plan))
    train_seconds = time.perf_counter() - started
    model.cpu()
    metadata = {
        "recipe": f"python -m course_lib.joint_embedding.train --scale {get_scale(scale)}"
        + (f" --steps {steps}" if steps != plan.steps else ""),
        "steps": steps,
        "n_clips": plan.n_clips,
        "batch_size": plan.batch_size,
        "train_seconds": round(train_seconds),
        "cpu_seconds": round(time.process_time() - cpu_started),  # what the wall time would be on an idle core
        "data_seconds": round(data_seconds),
        "threads": torch.get_num_threads(),
        "final_loss": history[-1]["loss"],
        "final_temperature": history[-1]["temperature"],
        "sample_rate": model.sample_rate,
        **evaluate(model, plan.eval_clips),
    }
    if out is not None:
        save_weights(out, model, metadata)
    return metadata


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=("tiny", "full"), default=None, help="default: $COURSE_SCALE or tiny")
    parser.add_argument("--steps", type=int, default=None, help="override the recipe's number of steps")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (shipped weights: 1; 0 = torch's default)"
    )
    add_device_argument(parser)
    parser.add_argument("--out", type=Path, default=None, help="where to write the safetensors weights")
    parser.add_argument("--evaluate", type=Path, default=None, help="only measure these saved weights (no training)")
    args = parser.parse_args(argv)
    if args.evaluate is not None:
        from course_lib.joint_embedding.model import load_joint_embedding

        torch.set_num_threads(args.threads or torch.get_num_threads())
        print(json.dumps(evaluate(load_joint_embedding(args.evaluate, "cpu")), indent=1))
        return
    metadata = train(args.scale, args.out, args.steps, args.threads, args.device)
    print(json.dumps({k: v for k, v in metadata.items() if k != "recipe"}, indent=1))
    if args.out is not None:
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
