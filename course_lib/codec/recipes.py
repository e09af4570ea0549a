"""The codec's training recipe: SoundStream's losses on SynthMusic, and the function that trains a codec by it.

The shipped checkpoint is trained by ``python -m course_lib.codec.train`` (:mod:`course_lib.codec.train`)
with this recipe; the held-out figures come from :func:`course_lib.codec.evaluation.evaluate`.

- **Data**: two-second SynthMusic clips at 16 kHz (``SynthMusic(seed=0)``, the clips of chapters 02 and
  03); batches of random half-second crops that depend only on the step
  (:func:`course_lib.data.batches.random_crops`, :class:`~course_lib.data.batches.StepBatches`). Held-out clips come from ``seed=1``.
- **Generator loss**: λ_rec L_G^rec (the multi-scale spectral loss, windows 2^6 ... 2^11) plus the
  RVQ's commitment losses from the first step; after ``adversarial_start`` steps also
  λ_adv L_G^adv + λ_feat L_G^feat against a multi-scale STFT discriminator (EnCodec's), trained with
  the hinge loss L_D (:mod:`course_lib.adversarial.losses`). A reconstruction-only warm-up before the GAN
  starts is common practice: the discriminator has little to learn from random noise.
- **The discriminator step** runs inside the loss function that :class:`course_lib.train.Trainer`
  calls once per step: first L_D on ``G(x).detach()`` and one step of its own Adam, then the
  generator's terms with the discriminator frozen. The Trainer then back-propagates L_G and steps
  the codec's optimizer (with its warm-up/cosine schedule, gradient clipping and AMP on CUDA). To save
  CPU time the discriminator sees only the first ``disc_batch`` clips of each batch (of each process's
  slice under ``torchrun``, where its gradients are averaged over the processes so that its copies
  stay equal, as DDP keeps the codec's).
- **Weights**: λ_rec is scaled down because L_G^rec, as the lecture writes it, is a *sum* over frames
  and windows (about 10^4 for a half-second crop at the start of training); SoundStream's
  λ_feat / λ_adv = 100 ratio is kept.
- **Codebooks**: before the first step, :meth:`Codec.initialise_codebooks` runs every RVQ level's
  k-means initialisation on 32 clips (3,200 frames for 1,024 codes); dead codes are restarted during
  training (``CodecConfig.dead_code_steps``).

Notebook: notebooks/04_neural_codec.ipynb (trains for a minute with :func:`train_codec`, then loads
the shipped weights).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, NamedTuple

import torch
from torch import Tensor

from course_lib.adversarial import (
    DiscriminatorStep,
    MultiScaleSTFTDiscriminator,
    feature_matching_loss,
    hinge_discriminator_loss,
    hinge_generator_loss,
)
from course_lib.codec.losses import multi_scale_spectral_loss
from course_lib.codec.model import Codec, CodecConfig
from course_lib.config import get_scale, seed_everything
from course_lib.data.batches import StepBatches, random_crops
from course_lib.data.splits import synth_music_audio


@dataclasses.dataclass
class CodecRecipe:
    """How the codec is trained. Defaults: the tiny recipe; :func:`recipe` gives the full one."""

    steps: int = 4000
    adversarial_start: int = 3500  # reconstruction-only steps before the GAN terms switch on
    batch_size: int = 8
    crop: int = 8000  # samples per training example (0.5 s)
    lr: float = 2e-3
    warmup_steps: int = 100
    final_lr_fraction: float = 0.05
    disc_lr: float = 2e-4
    disc_windows: tuple[int, ...] = (512, 256, 128)
    disc_channels: int = 8
    disc_batch: int = 4  # clips of each batch the discriminator sees
    lambda_rec: float = 1e-3
    lambda_adv: float = 1.0
    lambda_feat: float = 100.0
    grad_clip: float | None = 10.0
    train_clips: int = 512
    init_clips: int = 32  # clips for the k-means initialisation of the codebooks
    log_every: int = 25  # steps per entry of the history
    seed: int = 0


FULL = {
    "steps": 200_000,
    "adversarial_start": 10_000,
    "batch_size": 32,
    "crop": 16_000,
    "lr": 3e-4,
    "warmup_steps": 1000,
    "disc_lr": 3e-4,
    "disc_windows": (2048, 1024, 512, 256, 128),
    "disc_channels": 32,
    "disc_batch": 32,
    "train_clips": 8192,
    "init_clips": 64,
}


def recipe(scale: str | None = None, **changes: Any) -> CodecRecipe:
    """The codec recipe at ``scale`` (default ``$COURSE_SCALE``), with single fields overridden (None: keep).

    Notebook: notebooks/04_neural_codec.ipynb
    """
    base = FULL if get_scale(scale) == "full" else {}
    return CodecRecipe(**{**base, **{k: v for k, v in changes.items() if v is not None}})


class CodecTrainingLoss:
    """``loss_fn(codec, batch)`` for :class:`course_lib.train.Trainer`: SoundStream's L_G, with the L_D step inside.

    Calls count the steps: from call ``adversarial_start`` on, each call first takes one optimizer
    step of the discriminator on L_D, then adds the adversarial and feature-matching terms to the
    generator's loss. Returns the total and every term (for the Trainer's history). The
    discriminator, its optimizer and the call count are part of a training checkpoint
    (:meth:`state_dict`), so a resumed GAN stage continues exactly.
    """

    def __init__(self, recipe: CodecRecipe, sample_rate: int = 16_000) -> None:
        self.recipe, self.sample_rate, self.calls = recipe, sample_rate, 0
        discriminator = MultiScaleSTFTDiscriminator(recipe.disc_windows, recipe.disc_channels)
        optimizer = torch.optim.Adam(discriminator.parameters(), lr=recipe.disc_lr, betas=(0.5, 0.9))
        self.critic = DiscriminatorStep(discriminator, optimizer)

    @property
    def discriminator(self) -> MultiScaleSTFTDiscriminator:
        return self.critic.discriminator

    def state_dict(self) -> dict[str, Any]:
        """The number of calls (steps) so far, the discriminator and its optimizer."""
        return {"calls": self.calls, "critic": self.critic.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.calls = state["calls"]
        self.critic.load_state_dict(state["critic"])

    def __call__(self, codec: Codec, batch: Tensor) -> dict[str, Tensor]:
        r = self.recipe
        out = codec(batch)  # a random number of RVQ levels in training (quantizer dropout)
        reconstruction = multi_scale_spectral_loss(batch, out.audio, self.sample_rate)
        loss = r.lambda_rec * reconstruction + out.vq.loss
        terms = {
            "reconstruction": reconstruction,
            "commitment": out.vq.commitment_loss,
            "n_q": torch.tensor(float(out.vq.n_q)),
            "perplexity_level_1": out.vq.perplexity[0],
        }
        if self.calls >= r.adversarial_start:
            real, fake = batch[: r.disc_batch], out.audio[: r.disc_batch]  # (b, T)
            loss_d = self.critic.step(
                lambda d: hinge_discriminator_loss(d(real).logits, d(fake.detach()).logits), batch.device
            )  # then frozen: the generator's terms below train the codec only
            with torch.no_grad():
                target = self.discriminator(real)
            judged = self.discriminator(fake)
            adversarial = hinge_generator_loss(judged.logits)
            feature = feature_matching_loss(target.features, judged.features)
            loss = loss + r.lambda_adv * adversarial + r.lambda_feat * feature
            terms.update(discriminator=loss_d, adversarial=adversarial, feature=feature)
        self.calls += 1
        return {"loss": loss, **terms}


class TrainingRun(NamedTuple):
    """What :func:`train_codec` returns."""

    codec: Codec  # in eval mode
    history: list[dict]  # the Trainer's log, one entry per ``log_every`` steps
    seconds: float  # wall time
    cpu_seconds: float  # CPU time of the process (all threads)


def train_codec(
    config: CodecConfig, plan: CodecRecipe, device: str | torch.device | None = None, **train_options: Any
) -> TrainingRun:
    """Train a codec from its seed with ``plan``; returns the codec (eval mode), history and times.

    ``train_options`` are :class:`course_lib.train.TrainConfig` fields (``progress=False``; the
    checkpoint and resume options of :meth:`course_lib.train.command.Run.train_options`).

    Notebook: notebooks/04_neural_codec.ipynb
    """
    from course_lib.train import TrainConfig, Trainer, warmup_cosine_schedule  # imports tqdm: keep it local

    started, cpu_started = time.perf_counter(), time.process_time()
    seed_everything(plan.seed)
    codec = Codec(config)
    clips = synth_music_audio(plan.train_clips)  # (N, 32000)
    if config.kmeans_init:
        codec.initialise_codebooks(clips[: plan.init_clips])
    loss = CodecTrainingLoss(plan, config.sample_rate)
    optimizer = torch.optim.Adam(codec.parameters(), lr=plan.lr, betas=(0.5, 0.9))
    scheduler = warmup_cosine_schedule(optimizer, plan.steps, plan.warmup_steps, plan.final_lr_fraction)
    train_config = TrainConfig(
        steps=plan.steps,
        lr=plan.lr,
        log_every=plan.log_every,
        seed=plan.seed,
        grad_clip=plan.grad_clip,
        **train_options,
    )
    trainer = Trainer(codec, loss, train_config, optimizer=optimizer, scheduler=scheduler, device=device)
    history = trainer.fit(StepBatches(lambda g: random_crops(clips, plan.batch_size, plan.crop, g), plan.seed))
    cpu_seconds = time.process_time() - cpu_started  # CPU time of this process, all its threads
    return TrainingRun(codec.eval(), list(history), time.perf_counter() - started, cpu_seconds)
