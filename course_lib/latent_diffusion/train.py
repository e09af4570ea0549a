"""Train the latent-diffusion chapter's models: the commands behind the shipped checkpoints of notebooks 08 and 09.

One stage per model, each one command (run from the repository root, one CPU thread; seeded)::

    python -m course_lib.latent_diffusion.train --stage vae --scale tiny --out course_lib/checkpoints/mel_vae_tiny.safetensors
    python -m course_lib.latent_diffusion.train --stage vocoder --scale tiny --out course_lib/checkpoints/hifigan_tiny.safetensors
    python -m course_lib.latent_diffusion.train --stage ldm --scale tiny --out course_lib/checkpoints/latent_diffusion_tiny.safetensors
    python -m course_lib.latent_diffusion.train --stage controlnet --scale tiny --out course_lib/checkpoints/controlnet_music_tiny.safetensors

The later stages read earlier stages' files (``ldm`` needs the VAE and the joint embedding,
``controlnet`` the latent diffusion model and the same VAE and embedding), so run them in this order. By
default they read the shipped tiny files; a full-scale chain passes its own with ``--vae``,
``--embedding`` and ``--base``::

    python -m course_lib.latent_diffusion.train --stage ldm --scale full --out ldm_full.safetensors \
        --vae mel_vae_full.safetensors --embedding joint_embedding_full.safetensors
    python -m course_lib.latent_diffusion.train --stage controlnet --scale full --out controlnet_full.safetensors \
        --base ldm_full.safetensors --vae mel_vae_full.safetensors --embedding joint_embedding_full.safetensors

- ``vae`` (:class:`~course_lib.latent_diffusion.MelVAE`): random 64-frame crops of the scaled log-mel
  spectrograms of ``SynthMusic(seed=0)`` clips (audio only: the autoencoder never sees a caption),
  AdamW with warm-up and cosine decay, L1 + β·KL + spectral convergence. At the end the latent scale
  factor is fitted on whole training clips (:meth:`MelVAE.fit_latent_scale`).
- ``vocoder``, ``ldm``, ``controlnet``: see :mod:`course_lib.latent_diffusion.vocoder`,
  :mod:`course_lib.latent_diffusion.model` and :mod:`course_lib.latent_diffusion.controlnet`.

Each file is written by :func:`course_lib.train.save_weights` with the model's config and the training
facts (steps, losses reached, evaluation figures, train seconds, threads, the command) in its metadata.

Notebooks: notebooks/08_latent_diffusion.ipynb, 09_controlnet.ipynb.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from course_lib.audio import MelConfig
from course_lib.config import seed_everything, stage_recipe
from course_lib.data import SynthMusic
from course_lib.data.batches import GeneratorBatches, random_crops
from course_lib.data.splits import HELD_OUT_SEED, TRAINING_SEED, training_clips
from course_lib.diffusion.losses import DiffusionLoss
from course_lib.diffusion.mel_patches import MelPatches, SpectrogramScaling
from course_lib.diffusion.schedules import NoiseSchedule
from course_lib.diffusion.unet import UNet
from course_lib.latent_diffusion.controlnet import (
    CONTROLS,
    ControlledUNet,
    ControlNet,
    ControlNetConfig,
    ControlNetLoss,
)
from course_lib.latent_diffusion.evaluation import evaluate_text_to_audio, evaluate_vae, evaluate_vocoder
from course_lib.latent_diffusion.latent_data import encode_clips
from course_lib.latent_diffusion.mel_vae import MelVAE, MelVAEConfig, pad_frames
from course_lib.latent_diffusion.model import (
    TINY_JOINT_EMBEDDING,
    TINY_LDM,
    TINY_VAE,
    check_trained_on,
    file_sha256,
    latent_unet_config,
    load_latent_diffusion,
    load_mel_vae,
)
from course_lib.latent_diffusion.vocoder import (
    DiscriminatorSizes,
    HiFiGAN,
    HiFiGANConfig,
    HiFiGANDiscriminators,
    HiFiGANTrainingLoss,
)
from course_lib.train import EMALoss, TrainConfig, Trainer, save_weights, warmup_cosine_schedule
from course_lib.train.command import Run, TrainingCommand, positive_float, positive_int

STAGES = ("vae", "vocoder", "ldm", "controlnet")


@dataclasses.dataclass
class RecipeConfig:
    """One stage's recipe; :func:`recipe` gives every stage at both scales."""

    steps: int = 2000
    batch_size: int = 16
    lr: float = 1e-3
    warmup_steps: int = 50
    final_lr_fraction: float = 0.05
    ema_decay: float = 0.0
    train_clips: int = 512
    crop_frames: int = 64
    eval_clips: int = 32
    gan_steps: int = 0  # vocoder: the last gan_steps steps add the discriminators (the first ones: mel loss only)
    crop_samples: int = 6400  # vocoder: audio segment per example
    cond_drop_prob: float = 0.1  # ldm: AudioLDM's condition dropout (controlnet: 0.5, ControlNet's prompt dropout)
    schedule: str = "scaled_linear"  # ldm: AudioLDM's betas 0.0015 -> 0.0195
    num_timesteps: int = 1000
    prediction_type: str = "epsilon"
    eval_steps: int = 50  # DDIM steps of the evaluation samples
    eval_guidance: float = 3.0
    seed: int = 0


TINY: dict[str, dict[str, Any]] = {
    "vae": {},
    "vocoder": {"steps": 1400, "batch_size": 8, "lr": 1e-3, "warmup_steps": 20, "gan_steps": 300, "crop_samples": 6400},
    "ldm": {"steps": 1500, "batch_size": 16, "lr": 1e-3, "ema_decay": 0.995, "train_clips": 1024},
    "controlnet": {"steps": 1000, "batch_size": 16, "lr": 1e-3, "train_clips": 1024, "cond_drop_prob": 0.5},
}
# The VAE's crop_frames must fit in one 2-second clip (201 frames at hop 160): 192 = 1.92 s.
FULL: dict[str, dict[str, Any]] = {
    "vae": {"steps": 100_000, "batch_size": 32, "lr": 4.5e-5, "warmup_steps": 1000, "train_clips": 8192, "crop_frames": 192},
    "vocoder": {"steps": 500_000, "batch_size": 16, "lr": 2e-4, "gan_steps": 400_000, "crop_samples": 8000, "train_clips": 8192},
    "ldm": {"steps": 200_000, "batch_size": 64, "lr": 1e-4, "warmup_steps": 1000, "ema_decay": 0.9999, "train_clips": 8192},
    "controlnet": {"steps": 50_000, "batch_size": 64, "lr": 1e-4, "train_clips": 8192, "cond_drop_prob": 0.5},
}  # fmt: skip


def recipe(stage: str, scale: str | None = None, **changes: Any) -> RecipeConfig:
    """The recipe of ``stage`` at ``scale`` (default ``$COURSE_SCALE``), single fields overridden by ``changes``."""
    return stage_recipe(RecipeConfig, TINY, FULL, stage, scale, changes)


def fit(
    model: nn.Module, loss_fn: Any, batches: Any, config: RecipeConfig, run: Run, log_every: int = 25
) -> tuple[nn.Module, list]:
    """AdamW + warm-up/cosine through :class:`course_lib.train.Trainer`, resumable; returns the EMA (or the model) and the history."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    wrapped = EMALoss(loss_fn, config.ema_decay) if config.ema_decay > 0 else loss_fn
    train_config = TrainConfig(
        steps=config.steps, lr=config.lr, log_every=log_every, seed=config.seed, weight_decay=0.0,
        **run.train_options(),
    )  # fmt: skip
    trainer = Trainer(
        model,
        wrapped,
        train_config,
        optimizer=optimizer,
        scheduler=warmup_cosine_schedule(optimizer, config.steps, config.warmup_steps, config.final_lr_fraction),
        device=run.device,
    )
    history = trainer.fit(batches)
    if isinstance(wrapped, EMALoss):
        return wrapped.update(model), history
    return model, history


def metadata_for(stage: str, config: RecipeConfig, run: Run, history: list) -> dict:
    """The training facts every shipped file carries."""
    last = history[-1] if history else {}
    return {
        **run.facts(),
        "stage": stage,
        **dataclasses.asdict(config),
        "mel_config": dataclasses.asdict(MelConfig()),
        "scaling": dataclasses.asdict(SpectrogramScaling()),
        "final": {k: round(v, 5) for k, v in last.items() if k not in ("step", "lr")},
    }


# ------------------------------------------------------------------------------------------------ VAE
def run_vae(config: RecipeConfig, run: Run) -> dict:
    seed_everything(config.seed)
    data = MelPatches(config.train_clips, seed=TRAINING_SEED, frames=config.crop_frames)
    vae = MelVAE(MelVAEConfig.for_scale(run.scale))
    batches = GeneratorBatches.seeded(lambda generator: data.random_batch(config.batch_size, generator), config.seed)
    vae, history = fit(vae, lambda model, batch: model.loss(batch), batches, config, run)
    vae = vae.eval()
    whole = pad_frames(data.scaling.to_model(data.log_mels).unsqueeze(1), vae.frame_multiple).to(run.device)
    scale_factor = vae.fit_latent_scale(whole)
    metadata = metadata_for("vae", config, run, history)
    held_out = MelPatches(config.eval_clips, seed=HELD_OUT_SEED).log_mels
    metadata.update(latent_scale=scale_factor, **{k: round(v, 4) for k, v in evaluate_vae(vae, held_out).items()})
    save_weights(run.out, vae, metadata)
    return metadata


# -------------------------------------------------------------------------------------------- vocoder
def run_vocoder(config: RecipeConfig, run: Run) -> dict:
    """HiFi-GAN on random segments of ``SynthMusic(seed=0)`` clips: mel loss alone first, then with the discriminators.

    The generator trains in :class:`course_lib.train.Trainer` (AdamW with HiFi-GAN's betas, gradient
    norm clipped at 10); the discriminators take their step inside :class:`HiFiGANTrainingLoss`.
    """
    seed_everything(config.seed)
    audio = SynthMusic(n_clips=config.train_clips, seconds=2.0, seed=TRAINING_SEED).batch(config.train_clips).audio
    generator_net = HiFiGAN(HiFiGANConfig.for_scale(run.scale))
    discriminators = HiFiGANDiscriminators(DiscriminatorSizes.for_scale(run.scale))
    betas = (0.8, 0.99)  # HiFi-GAN's AdamW betas
    opt_g = torch.optim.AdamW(generator_net.parameters(), config.lr, betas=betas, weight_decay=0.0)
    opt_d = torch.optim.AdamW(discriminators.parameters(), config.lr, betas=betas, weight_decay=0.0)
    sched_d = warmup_cosine_schedule(opt_d, config.gan_steps, 0, config.final_lr_fraction)
    loss = HiFiGANTrainingLoss(discriminators, opt_d, sched_d, mel_steps=config.steps - config.gan_steps)
    hop = MelConfig().hop_length
    trainer = Trainer(
        generator_net,
        loss,
        TrainConfig(steps=config.steps, lr=config.lr, log_every=50, seed=None, grad_clip=10.0, **run.train_options()),
        optimizer=opt_g,
        scheduler=warmup_cosine_schedule(opt_g, config.steps, config.warmup_steps, config.final_lr_fraction),
        device=run.device,
    )
    batches = GeneratorBatches.seeded(
        lambda generator: random_crops(audio, config.batch_size, config.crop_samples, generator, hop), config.seed
    )
    history = trainer.fit(batches)
    generator_net = generator_net.cpu().eval()
    metadata = metadata_for("vocoder", config, run, history)
    held_out = SynthMusic(n_clips=config.eval_clips // 2, seconds=2.0, seed=HELD_OUT_SEED).batch(config.eval_clips // 2)
    metadata.update({k: round(v, 4) for k, v in evaluate_vocoder(generator_net, held_out.audio).items()})
    save_weights(run.out, generator_net, metadata)
    return metadata


# ------------------------------------------------------------------------------------ latent diffusion
def run_ldm(
    config: RecipeConfig,
    run: Run,
    vae_path: Path = TINY_VAE,
    embedding_path: Path = TINY_JOINT_EMBEDDING,
) -> dict:
    """AudioLDM's training: ε-prediction on VAE latents of training clips, conditioned on their own E^x, 10% dropped.

    ``vae_path`` and ``embedding_path`` are the frozen VAE and joint embedding (default: the shipped tiny ones).
    """
    from course_lib.joint_embedding.model import load_joint_embedding

    device = run.device
    seed_everything(config.seed)
    vae_path, embedding_path = Path(vae_path), Path(embedding_path)
    vae = load_mel_vae(vae_path, device)
    embedding = load_joint_embedding(embedding_path, device)
    unet = UNet(latent_unet_config(vae.config.latent_channels, embedding.dim, run.scale))
    data = encode_clips(
        training_clips(config.train_clips), vae, embedding, vae.frame_multiple * unet.size_multiple, device
    )
    schedule = NoiseSchedule.from_name(config.schedule, config.num_timesteps)
    loss = DiffusionLoss(schedule, prediction_type=config.prediction_type, cond_drop_prob=config.cond_drop_prob)
    batches = GeneratorBatches.seeded(lambda generator: data.batch(config.batch_size, generator), config.seed)
    ema, history = fit(unet, loss, batches, config, run)
    metadata = metadata_for("ldm", config, run, history)
    metadata.update(
        vae=vae_path.name, vae_sha256=file_sha256(vae_path), embedding=embedding_path.name,
        embedding_sha256=file_sha256(embedding_path), latent_scale=data.latent_scale,
    )  # fmt: skip
    save_weights(run.out, ema, metadata)
    pipeline = load_latent_diffusion(run.out, device, vae_path=vae_path, vocoder_path=None, embedding=embedding)
    metadata.update(evaluate_text_to_audio(pipeline, config.eval_clips, config.eval_steps, config.eval_guidance))
    save_weights(run.out, ema, metadata)
    return metadata


# ------------------------------------------------------------------------------------------ ControlNet
def run_controlnet(
    config: RecipeConfig,
    run: Run,
    base_path: Path = TINY_LDM,
    vae_path: Path = TINY_VAE,
    embedding_path: Path = TINY_JOINT_EMBEDDING,
) -> dict:
    """A ControlNet for melody, dynamics and rhythm (with masks) on a frozen latent diffusion model.

    ``base_path`` is that model (default: the shipped tiny one); ``vae_path`` and ``embedding_path`` must be
    the VAE and joint embedding it was trained with (a warning says when their hashes differ).
    """
    from course_lib.joint_embedding.model import load_joint_embedding

    device = run.device
    seed_everything(config.seed)
    base_path, embedding_path = Path(base_path), Path(embedding_path)
    embedding = load_joint_embedding(embedding_path, device)
    pipeline = load_latent_diffusion(base_path, device, vae_path=vae_path, vocoder_path=None, embedding=embedding)
    check_trained_on(pipeline.metadata, "embedding_sha256", embedding_path, "joint embedding", "ldm")
    controlnet = ControlNet(pipeline.unet, ControlNetConfig.for_scale(run.scale))
    model = ControlledUNet(pipeline.unet, controlnet)
    frame_multiple = pipeline.vae.frame_multiple * pipeline.unet.size_multiple
    data = encode_clips(
        training_clips(config.train_clips), pipeline.vae, embedding, frame_multiple, device, controls=True
    )
    schedule = NoiseSchedule.from_name(pipeline.metadata["schedule"], pipeline.metadata["num_timesteps"])
    loss = ControlNetLoss(schedule, pipeline.prediction_type, config.cond_drop_prob)
    batches = GeneratorBatches.seeded(
        lambda generator: data.batch(config.batch_size, generator, signal=True), config.seed
    )
    _, history = fit(model, loss, batches, config, run)
    metadata = metadata_for("controlnet", config, run, history)
    metadata.update(base=base_path.name, base_sha256=file_sha256(base_path), controls=list(CONTROLS))
    save_weights(run.out, controlnet.eval(), metadata)
    return metadata


# ----------------------------------------------------------------------------------------------- main
COMMAND = TrainingCommand("course_lib.latent_diffusion.train", __doc__)
COMMAND.add_argument("--stage", choices=STAGES, required=True)
COMMAND.add_argument("--lr", type=positive_float)
COMMAND.add_argument("--clips", type=positive_int, help="training clips to synthesize")
COMMAND.add_argument("--vae", type=Path, default=TINY_VAE, help="the Mel VAE (stages ldm, controlnet; default: tiny)")
COMMAND.add_argument(
    "--embedding", type=Path, default=TINY_JOINT_EMBEDDING, help="the joint embedding (ldm, controlnet; default: tiny)"
)
COMMAND.add_argument(
    "--base", type=Path, default=TINY_LDM, help="the latent diffusion model (controlnet; default: tiny)"
)


def main(argv: list[str] | None = None) -> dict:
    """Train the stage of the command line and write its weights."""
    run = COMMAND.parse(argv)
    args = run.args
    config = recipe(
        args.stage,
        run.scale,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        train_clips=args.clips,
        seed=args.seed,
    )
    runners = {"vae": run_vae, "vocoder": run_vocoder, "ldm": run_ldm, "controlnet": run_controlnet}
    parents = {
        "ldm": {"vae_path": args.vae, "embedding_path": args.embedding},
        "controlnet": {"base_path": args.base, "vae_path": args.vae, "embedding_path": args.embedding},
    }.get(args.stage, {})
    metadata = runners[args.stage](config, run, **parents)
    run.finish()
    size = run.out.stat().st_size / 1e6
    print(f"wrote {run.out} ({size:.2f} MB) in {metadata['train_seconds']:.0f} s; final {metadata['final']}")
    return metadata


if __name__ == "__main__":
    COMMAND.exit(main)
