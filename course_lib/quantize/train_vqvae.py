"""Train the course's VQ-VAEs on SynthMusic: the data, losses and metrics of notebooks 02 and 03, and the
one command behind each shipped checkpoint.

    python -m course_lib.quantize.train_vqvae --model vqvae --scale tiny \\
        --out course_lib/checkpoints/vqvae_tiny.safetensors
    python -m course_lib.quantize.train_vqvae --model hierarchical --scale tiny \\
        --out course_lib/checkpoints/jukebox_tiny.safetensors

Both notebooks train a model for a minute to show it learning, then load the shipped weights (the same
recipe, trained longer) to listen and measure. Everything here is seeded: the same command gives the
same weights on one machine (up to the non-determinism of multi-threaded float sums).

- Data: two-second SynthMusic clips at 16 kHz; training batches are random 4,096-sample crops drawn
  by a generator seeded with the step (so a batch depends only on the step, never on what ran
  before); held-out clips come from another SynthMusic seed, so no training run ever sees them.
- Losses: the lecture's three VQ-VAE terms (van den Oord et al. 2017, eq. 3), logged separately with
  the codebook's perplexity and usage; for Jukebox's hierarchy (Dhariwal et al. 2020, sec. 2.2) the
  sum over levels, with each level's terms logged.
- Metrics: waveform SNR, spectral convergence in dB (Jukebox's reconstruction metric, table 4 of the
  paper) and a log-mel distance in dB (the one notebook 01 uses), from
  :mod:`course_lib.metrics.reconstruction`.

Notebooks: notebooks/02_vq_vae.ipynb, notebooks/03_hierarchical_vqvae.ipynb
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from course_lib.config import get_scale, seed_everything, training_device
from course_lib.data import SynthMusic
from course_lib.errors import ConfigError
from course_lib.metrics.reconstruction import log_mel_distance_db, snr_db, spectral_convergence_db
from course_lib.quantize.hierarchical_vq_vae import HierarchicalVQVAE, HierarchicalVQVAEConfig
from course_lib.quantize.vq_vae import VQVAE, VQVAEConfig
from course_lib.train.command import TrainingCommand

SAMPLE_RATE = 16_000
CLIP_SECONDS = 2.0
TRAIN_SEED, HELD_OUT_SEED = 0, 1  # different SynthMusic seeds: held-out clips are never trained on
CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "checkpoints"


# ----------------------------------------------------------------------------------------------- data
def synth_music_clips(n_clips: int, seed: int = TRAIN_SEED, seconds: float = CLIP_SECONDS) -> Tensor:
    """``n_clips`` SynthMusic clips at 16 kHz as one ``(n_clips, T)`` tensor."""
    return SynthMusic(n_clips=n_clips, seconds=seconds, sample_rate=SAMPLE_RATE, seed=seed).batch(n_clips).audio


def held_out_clips(n_clips: int = 8) -> Tensor:
    """Clips that no training run here sees (another SynthMusic seed): ``(n_clips, T)``."""
    return synth_music_clips(n_clips, seed=HELD_OUT_SEED)


def random_crops(audio: Tensor, batch_size: int = 8, crop: int = 4096, seed: int = 0) -> Callable[[int], Tensor]:
    """A ``step -> (batch_size, crop)`` batch function for ``Trainer.fit``: random crops of random clips.

    Each batch is drawn by a generator seeded with ``(seed, step)``, so it depends only on the step.
    """
    n_clips, length = audio.shape
    if crop > length:
        raise ConfigError(f"crop={crop} is longer than the clips ({length} samples): use a shorter crop.")

    def batch_at(step: int) -> Tensor:
        generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
        clips = torch.randint(n_clips, (batch_size,), generator=generator)  # (B,)
        starts = torch.randint(length - crop + 1, (batch_size,), generator=generator)  # (B,)
        offsets = starts[:, None] + torch.arange(crop)  # (B, crop)
        return audio[clips[:, None], offsets]  # (B, crop)

    return batch_at


# --------------------------------------------------------------------------------------------- losses
def vq_vae_loss(model: VQVAE, wav: Tensor) -> dict[str, Tensor]:
    """Eq. 3 of the VQ-VAE paper for ``Trainer``: the total and each term, perplexity and code usage."""
    out = model(wav)
    return {
        "loss": out.loss,
        "reconstruction": out.reconstruction_loss,  # -log p(x | z_q(x)) as a waveform MSE
        "codebook": out.vq.codebook_loss,  # ||sg[z_e] - e||², 0 with EMA codebooks
        "commitment": out.vq.commitment_loss,  # β ||z_e - sg[e]||²
        "perplexity": out.vq.perplexity,
        "usage": out.vq.usage,
    }


def hierarchical_loss(model: HierarchicalVQVAE, wav: Tensor) -> dict[str, Tensor]:
    """The sum of the levels' VQ-VAE losses for ``Trainer``, with each level's terms (0 = bottom)."""
    out = model(wav)
    terms = {"loss": out.loss}
    for i, level in enumerate(out.levels):
        terms[f"reconstruction_{i}"] = level.reconstruction_loss
        terms[f"commitment_{i}"] = level.vq.commitment_loss
        terms[f"perplexity_{i}"] = level.vq.perplexity
        terms[f"usage_{i}"] = level.vq.usage
    return terms


# ------------------------------------------------------------------------------------------- recipes
@dataclass
class Recipe:
    """Everything that defines a shipped checkpoint: model config, data and training length.

    Training uses AdamW at ``lr`` with a 5% linear warm-up and a cosine decay to zero (``course_lib.train.warmup_cosine_schedule``).
    """

    model: str  # "vqvae" or "hierarchical"
    config: VQVAEConfig | HierarchicalVQVAEConfig
    steps: int
    lr: float = 3e-3
    n_clips: int = 256
    batch_size: int = 8
    crop: int = 4096
    seed: int = 0

    def build(self) -> VQVAE | HierarchicalVQVAE:
        return VQVAE(self.config) if self.model == "vqvae" else HierarchicalVQVAE(self.config)


def vq_vae_config(scale: str | None = None) -> VQVAEConfig:
    """Notebook 02's model: hop 16 (1,000 codes/s at 16 kHz), EMA codebook, k-means init, dead-code restarts."""
    return VQVAEConfig.for_scale(scale, strides=(4, 4), use_ema=True, kmeans_init=True, dead_code_steps=20)


def hierarchical_config(scale: str | None = None) -> HierarchicalVQVAEConfig:
    """Notebook 03's model: the library's preset (hops 8 / 32 / 128, as Jukebox's)."""
    return HierarchicalVQVAEConfig.for_scale(scale)


def recipe(model: str, scale: str | None = None) -> Recipe:
    """The recipe of a shipped checkpoint (``model`` is ``"vqvae"`` or ``"hierarchical"``)."""
    full = get_scale(scale) == "full"
    steps, n_clips = (20_000, 2_000) if full else (3_000, 256)
    if model == "vqvae":  # 2,048-sample crops: 8 x 128 = 1,024 vectors per batch for 256 codes
        return Recipe("vqvae", vq_vae_config(scale), steps, n_clips=n_clips, crop=2048)
    if model == "hierarchical":  # 4,096-sample crops: 8 x 32 = 256 top-level vectors per batch
        return Recipe("hierarchical", hierarchical_config(scale), steps, n_clips=n_clips, crop=4096)
    raise ConfigError(f"Unknown model {model!r}: use 'vqvae' or 'hierarchical'.")


def evaluate(model: VQVAE | HierarchicalVQVAE, audio: Tensor) -> dict[str, list[float]]:
    """Held-out reconstruction figures per level (one level for a plain VQ-VAE), bottom first."""
    levels = model.levels if isinstance(model, HierarchicalVQVAE) else [model]
    result: dict[str, list[float]] = {"snr_db": [], "spectral_convergence_db": [], "log_mel_db": [], "codes_used": []}
    with torch.no_grad():
        for level in levels:
            level.eval()
            codes = level.encode(audio)  # (B, N)
            rebuilt = level.decode(codes)[:, 0, : audio.shape[-1]]  # (B, T)
            result["snr_db"].append(snr_db(audio, rebuilt))
            result["spectral_convergence_db"].append(spectral_convergence_db(audio, rebuilt).mean().item())
            result["log_mel_db"].append(log_mel_distance_db(audio, rebuilt))
            result["codes_used"].append(codes.unique().numel())
    return result


def train(
    model_name: str,
    scale: str | None,
    steps: int | None = None,
    device: str | torch.device | None = None,
    batch_size: int | None = None,
    seed: int | None = None,
    **train_options: Any,
) -> tuple[VQVAE | HierarchicalVQVAE, list[dict]]:
    """Train one recipe from its seed; returns the model (on the CPU) and the history.

    ``train_options`` are :class:`course_lib.train.TrainConfig` fields (checkpoint and resume options
    of :meth:`course_lib.train.command.Run.train_options`, ``progress``).
    """
    from course_lib.train import TrainConfig, Trainer, warmup_cosine_schedule  # imports tqdm: keep it local

    plan = recipe(model_name, scale)
    steps = plan.steps if steps is None else steps
    batch_size = plan.batch_size if batch_size is None else batch_size
    seed = plan.seed if seed is None else seed
    seed_everything(seed)
    model = plan.build()
    loss_fn = vq_vae_loss if plan.model == "vqvae" else hierarchical_loss
    batches = random_crops(synth_music_clips(plan.n_clips), batch_size, plan.crop, seed)
    config = TrainConfig(steps=steps, lr=plan.lr, log_every=50, seed=seed, **train_options)
    optimizer = torch.optim.AdamW(model.parameters(), lr=plan.lr, weight_decay=config.weight_decay)
    scheduler = warmup_cosine_schedule(optimizer, steps, warmup_steps=steps // 20)
    trainer = Trainer(
        model, loss_fn, config, optimizer=optimizer, scheduler=scheduler, device=training_device(device, scale)
    )
    history = trainer.fit(batches)
    return model.cpu(), list(history)


COMMAND = TrainingCommand("course_lib.quantize.train_vqvae", __doc__)
COMMAND.add_argument("--model", choices=("vqvae", "hierarchical"), required=True)


def main(argv: list[str] | None = None) -> dict:
    """Train the recipe of the command line, write its weights and print the held-out figures."""
    from course_lib.train import save_weights

    run = COMMAND.parse(argv)
    args = run.args
    model, history = train(
        args.model, run.scale, args.steps, run.device, args.batch_size, args.seed, **run.train_options()
    )
    figures = evaluate(model, held_out_clips())
    metadata = {
        **run.facts(),
        "model": args.model,
        "steps": run.steps(recipe(args.model, run.scale).steps),
        "final_loss": history[-1]["loss"],
        "held_out": figures,
        "sample_rate": SAMPLE_RATE,
    }
    save_weights(run.out, model, metadata)
    run.finish()
    print(f"trained {metadata['steps']} steps in {metadata['train_seconds']:.0f} s; wrote {run.out}")
    for key, values in figures.items():
        print(f"held-out {key}: " + " / ".join(f"{v:.2f}" for v in values))
    return metadata


if __name__ == "__main__":
    COMMAND.exit(main)
