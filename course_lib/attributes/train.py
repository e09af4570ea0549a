"""Train the course's SynthMusic attribute classifier: the recipe and the one command behind the shipped weights.

    python -m course_lib.attributes.train --scale tiny --out course_lib/checkpoints/attribute_classifier_tiny.safetensors

- Data: :func:`course_lib.data.splits.training_clips` (2-second clips at 16 kHz, none of the held-out
  attribute combinations); log-mel spectrograms computed once; each step draws a batch with a
  generator seeded by the step and crops it to one random length between 1.5 and 2 s at random
  offsets (so the classifier does not rely on where a clip starts), then raises the floor of each
  mel spectrogram by a constant 30–60 dB below the clip's mean mel level: a cheap stand-in for
  white noise (the area-normalised mel filters answer a flat spectrum with about equal values), a
  little robustness to the hiss of generated audio.
- Loss: the sum over attributes of the cross-entropy of each head; AdamW, 5% warm-up, cosine decay.
- Figures (stored in the weights' metadata): accuracy per attribute on held-out clips (combinations
  never trained on: a fair judge of generations from held-out captions needs to recognise them) and
  on validation clips (new clips of the training combinations).

Notebooks: notebooks/06_text_to_music.ipynb and 08_latent_diffusion.ipynb load the result with
:func:`course_lib.attributes.load_tiny_attribute_classifier`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from course_lib.attributes.model import AttributeClassifier, AttributeClassifierConfig
from course_lib.audio.spectral import mel_spectrogram
from course_lib.config import get_scale, seed_everything
from course_lib.data.batches import step_generator
from course_lib.data.splits import held_out_clips, training_clips, validation_clips
from course_lib.errors import ConfigError
from course_lib.train.command import TrainingCommand, positive_int


@dataclasses.dataclass
class Recipe:
    """Everything that defines a shipped attribute classifier: config, data and training length."""

    config: AttributeClassifierConfig
    steps: int
    n_clips: int
    batch_size: int = 32
    lr: float = 2e-3
    min_seconds: float = 1.5
    noise_db: tuple[float, float] = (30.0, 60.0)
    eval_clips: int = 300
    seed: int = 0


def recipe(scale: str | None = None, **changes: Any) -> Recipe:
    """The recipe of the shipped checkpoint at ``scale`` (``tiny``: minutes on one CPU thread), fields overridden by ``changes`` (None: keep)."""
    config = AttributeClassifierConfig.for_scale(scale)
    plan = (
        Recipe(config, steps=20_000, n_clips=20_000, batch_size=64, lr=1e-3)
        if get_scale(scale) == "full"
        else Recipe(config, steps=2_000, n_clips=3_000)
    )
    return dataclasses.replace(plan, **{k: v for k, v in changes.items() if v is not None})


def with_noise_floor(mel: Tensor, noise_db: tuple[float, float], generator: torch.Generator) -> Tensor:
    """Mel magnitudes ``(B, M, F)`` plus a flat floor ``noise_db`` dB (drawn per clip) below each clip's mean level."""
    level_db = noise_db[0] + (noise_db[1] - noise_db[0]) * torch.rand(
        mel.shape[0], 1, 1, generator=generator
    )  # (B, 1, 1)
    return mel + mel.mean(dim=(1, 2), keepdim=True) * 10 ** (-level_db / 20)  # (B, M, F)


def classifier_batches(
    model: AttributeClassifier, mels: Tensor, labels: dict[str, Tensor], plan: Recipe
) -> Callable[[int], dict]:
    """A ``step -> batch`` function for ``Trainer.fit``: log-mel crops with a noise floor, and their labels.

    Args:
        mels: ``(N, M, F)`` mel magnitudes of the training clips; ``labels``: their ``{name: (N,)}`` labels.
    """
    n_clips, n_mels, n_frames = mels.shape
    min_frames = min(n_frames, round(plan.min_seconds * model.sample_rate / model.config.hop_length))
    if plan.batch_size > n_clips:
        raise ConfigError(f"batch_size {plan.batch_size} is larger than the {n_clips} training clips.")

    def batch_at(step: int) -> dict:
        generator = step_generator(plan.seed, step)
        chosen = torch.randperm(n_clips, generator=generator)[: plan.batch_size]  # (B,)
        length = int(torch.randint(min_frames, n_frames + 1, (1,), generator=generator))
        starts = torch.randint(n_frames - length + 1, (plan.batch_size,), generator=generator)  # (B,)
        frames = starts[:, None] + torch.arange(length)  # (B, L)
        crops = mels[chosen[:, None, None], torch.arange(n_mels)[None, :, None], frames[:, None, :]]  # (B, M, L)
        log_mel = with_noise_floor(crops, plan.noise_db, generator).clamp_min(model.config.mel.log_floor).log()
        return {"log_mel": log_mel, "labels": {name: labels[name][chosen] for name in model.config.attributes}}

    return batch_at


def classifier_step(model: AttributeClassifier, batch: dict) -> dict[str, Tensor]:
    """The Trainer's loss_fn: the sum of the heads' cross-entropies, and each head's batch accuracy."""
    logits = model(batch["log_mel"])
    terms = {}
    total = torch.zeros((), device=batch["log_mel"].device)
    for name, head_logits in logits.items():
        target = batch["labels"][name]  # (B,)
        total = total + F.cross_entropy(head_logits, target)
        terms[f"accuracy_{name}"] = (head_logits.argmax(dim=-1) == target).float().mean()
    return {"loss": total, **terms}


def evaluate(model: AttributeClassifier, n_clips: int = 300) -> dict[str, dict[str, float]]:
    """Accuracy per attribute on ``n_clips`` held-out clips and ``n_clips`` validation clips."""
    model.eval()
    return {
        name: model.accuracy(batch.audio, batch.labels)
        for name, batch in (("held_out", held_out_clips(n_clips)), ("validation", validation_clips(n_clips)))
    }


def train(
    plan: Recipe, device: str | torch.device | None = None, **train_options: Any
) -> tuple[AttributeClassifier, list]:
    """Train ``plan`` from its seed; returns the classifier (on the CPU) and the history.

    ``train_options`` are :class:`course_lib.train.TrainConfig` fields (checkpoint and resume options
    of :meth:`course_lib.train.command.Run.train_options`, ``progress``).
    """
    from course_lib.train import fit_with_warmup_cosine  # tqdm: keep local

    seed_everything(plan.seed)
    model = AttributeClassifier(plan.config)
    clips = training_clips(plan.n_clips)
    mels = torch.cat([mel_spectrogram(part, model.config.mel) for part in clips.audio.split(256)])  # (N, M, F)
    batches = classifier_batches(model, mels, clips.labels, plan)
    history = fit_with_warmup_cosine(
        model, classifier_step, batches, plan.steps, plan.lr, plan.seed, device, **train_options
    )
    return model.cpu(), history


COMMAND = TrainingCommand("course_lib.attributes.train", __doc__)
COMMAND.add_argument("--clips", type=positive_int, help="training clips (default: the recipe's)")


def main(argv: list[str] | None = None) -> dict:
    """Train the recipe of the command line, write the weights and print the figures they reach."""
    run = COMMAND.parse(argv)
    args = run.args
    plan = recipe(run.scale, steps=args.steps, batch_size=args.batch_size, seed=args.seed, n_clips=args.clips)
    model, history = train(plan, run.device, **run.train_options())
    metadata = run.write(
        model,
        {
            "recipe": {k: v for k, v in dataclasses.asdict(plan).items() if k != "config"},
            "steps": plan.steps,
            "final_loss": history[-1]["loss"],
            "sample_rate": model.sample_rate,
            **evaluate(model, plan.eval_clips),
        },
    )
    print(json.dumps({k: v for k, v in metadata.items() if k != "recipe"}, indent=1))
    print(f"wrote {run.out}")
    return metadata


if __name__ == "__main__":
    COMMAND.exit(main)
