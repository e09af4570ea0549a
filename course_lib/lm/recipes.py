"""The chapter's language-model recipes: each stage's training plan, its token layout, model and loss.

A recipe (:class:`LMRecipe`, presets per stage and scale from :func:`recipe`) fixes the data, the
optimiser (AdamW with MusicGen's betas (0.9, 0.95) and weight decay 0.1, a linear warm-up and a
cosine decay) and the model; :func:`sequence_layout` and :func:`lm_config` turn it into a token layout
and a :class:`~course_lib.lm.transformer.TokenLM`; :func:`fit_lm` trains one. The commands that train
the shipped models are in :mod:`course_lib.lm.train`; their held-out figures in :mod:`course_lib.lm.evaluation`.

Notebooks: notebooks/05_audio_language_model.ipynb, 06_text_to_music.ipynb
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import Tensor

from course_lib.config import stage_recipe
from course_lib.errors import ConfigError
from course_lib.lm.data import TokenData, random_batches
from course_lib.lm.musiclm import condition_dropout_mask
from course_lib.lm.sequences import CoarseSequence, DelaySequence, FineSequence, SemanticSequence
from course_lib.lm.transformer import LMConfig, TokenLM, next_token_loss

STAGES = ("tokenizer", "delay", "semantic", "coarse", "fine")
MODEL_STAGES = STAGES[1:]


@dataclasses.dataclass
class LMRecipe:
    """One stage's recipe; :func:`recipe` gives every stage at every scale."""

    stage: str = "delay"
    steps: int = 2000
    batch_size: int = 16
    lr: float = 1e-3
    warmup_steps: int = 100
    final_lr_fraction: float = 0.1
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    condition_dropout: float = 0.0
    train_clips: int = 4000
    validation_clips: int = 64
    tokenizer_clips: int = 1000
    n_q: int = 4  # codec levels the models see
    n_coarse: int = 2  # Q': AudioLM's coarse levels
    chunk_frames: int = 50  # the fine stage's chunks (1 s at 50 Hz)
    n_semantic: int = 64  # semantic clusters
    seed: int = 0
    model: dict = dataclasses.field(default_factory=dict)  # LMConfig fields that differ from the preset

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ConfigError(f"Unknown stage {self.stage!r}: use one of {', '.join(STAGES)}.")


TINY: dict[str, dict[str, Any]] = {
    "tokenizer": {"steps": 0},
    "delay": {"steps": 2500, "batch_size": 16},
    "semantic": {"steps": 1200, "batch_size": 32, "condition_dropout": 0.3, "model": {"n_layers": 3}},
    "coarse": {"steps": 1200, "batch_size": 12, "condition_dropout": 0.3},
    "fine": {"steps": 1200, "batch_size": 12},
}
FULL: dict[str, dict[str, Any]] = {
    "tokenizer": {"steps": 0, "tokenizer_clips": 8000, "n_semantic": 256},
    "delay": {"steps": 100_000, "batch_size": 64, "lr": 3e-4, "warmup_steps": 2000, "train_clips": 100_000},
    "semantic": {"steps": 50_000, "batch_size": 64, "lr": 3e-4, "warmup_steps": 2000, "train_clips": 100_000, "condition_dropout": 0.3, "n_semantic": 256},
    "coarse": {"steps": 100_000, "batch_size": 32, "lr": 3e-4, "warmup_steps": 2000, "train_clips": 100_000, "condition_dropout": 0.3, "n_semantic": 256},
    "fine": {"steps": 100_000, "batch_size": 32, "lr": 3e-4, "warmup_steps": 2000, "train_clips": 100_000, "n_semantic": 256},
}  # fmt: skip


def recipe(stage: str, scale: str | None = None, **changes: Any) -> LMRecipe:
    """The recipe of ``stage`` at ``scale`` (default ``$COURSE_SCALE``), with single fields overridden.

    Notebooks: notebooks/05_audio_language_model.ipynb, 06_text_to_music.ipynb
    """
    return stage_recipe(LMRecipe, TINY, FULL, stage, scale, changes, stage=stage)


# ------------------------------------------------------------------------------------------ sequences
def sequence_layout(plan: LMRecipe, codebook_size: int = 1024) -> Any:
    """The :mod:`course_lib.lm.sequences` layout of a stage.

    Notebooks: notebooks/05_audio_language_model.ipynb, 06_text_to_music.ipynb
    """
    if plan.stage == "delay":
        return DelaySequence(plan.n_q, codebook_size)
    if plan.stage == "semantic":
        return SemanticSequence(plan.n_semantic)
    if plan.stage == "coarse":
        return CoarseSequence(plan.n_semantic, plan.n_coarse, codebook_size)
    if plan.stage == "fine":
        return FineSequence(plan.n_coarse, plan.n_q - plan.n_coarse, codebook_size, plan.chunk_frames)
    raise ConfigError(f"Stage {plan.stage!r} has no token sequence (the tokenizer is k-means, not a language model).")


def lm_config(
    plan: LMRecipe,
    layout: Any,
    scale: str | None = None,
    condition_dim: int = 0,
    n_frames: int = 100,
    n_semantic_tokens: int = 50,
) -> LMConfig:
    """The :class:`LMConfig` of a stage: the scale's preset, the layout's vocabulary and length.

    ``n_frames`` and ``n_semantic_tokens`` are the codec frames and semantic tokens of one training clip
    (100 and 50 for 2 seconds); ``max_seq_len`` is the next power of two above the longest sequence.

    Notebooks: notebooks/05_audio_language_model.ipynb, 06_text_to_music.ipynb
    """
    streams = layout.n_q if isinstance(layout, DelaySequence) else 1
    lengths = {
        "delay": n_frames + plan.n_q,
        "semantic": n_semantic_tokens + 1,
        "coarse": n_semantic_tokens + 2 + plan.n_coarse * n_frames,
        "fine": 2 + plan.n_q * plan.chunk_frames,
    }
    conditioned = plan.stage in ("semantic", "coarse") and condition_dim > 0
    fields = {
        "vocab_size": layout.vocab_size,
        "n_streams": streams,
        "max_seq_len": 2 ** math.ceil(math.log2(lengths[plan.stage])),
        "condition_dim": condition_dim if conditioned else 0,
        **plan.model,
    }
    return LMConfig.for_scale(scale, **fields)


def stage_batch(plan: LMRecipe, layout: Any, data: TokenData) -> Any:
    """``make(rows, generator) -> batch dict`` for :func:`course_lib.lm.data.random_batches` (and evaluation)."""

    def make(rows: Tensor, generator: torch.Generator | None) -> dict[str, Tensor]:
        codes = data.codes[rows]  # (B, Q, T)
        batch: dict[str, Tensor] = {}
        if plan.stage == "delay":
            batch["tokens"], batch["mask"] = layout.build(codes[:, : plan.n_q])
        elif plan.stage == "semantic":
            batch["tokens"], batch["mask"] = layout.build(data.semantic[rows])
        elif plan.stage == "coarse":
            batch["tokens"], batch["mask"] = layout.build(data.semantic[rows], codes[:, : plan.n_coarse])
        else:  # fine: a random chunk of each clip
            frames = codes.shape[2]
            starts = torch.randint(frames - plan.chunk_frames + 1, (len(rows),), generator=generator)  # (B,)
            window = starts[:, None] + torch.arange(plan.chunk_frames)  # (B, chunk)
            chunk = codes.gather(2, window[:, None].expand(-1, codes.shape[1], -1))  # (B, Q, chunk)
            batch["tokens"], batch["mask"] = layout.build(chunk[:, : plan.n_coarse], chunk[:, plan.n_coarse : plan.n_q])
        if plan.stage in ("semantic", "coarse") and data.embeddings is not None:
            batch["condition"] = data.embeddings[rows]  # (B, D): M_A
            batch["drop"] = condition_dropout_mask(len(rows), plan.condition_dropout, generator)  # (B,)
        return batch

    return make


def lm_loss(model: TokenLM, batch: dict[str, Tensor]) -> Tensor:
    """The loss the Trainer minimises: next-token cross-entropy on the batch's targets."""
    condition = batch.get("condition") if model.config.condition_dim else None
    return next_token_loss(
        model, batch["tokens"], target_mask=batch["mask"], condition=condition, drop_condition=batch.get("drop")
    )


def fit_lm(
    model: TokenLM,
    plan: LMRecipe,
    layout: Any,
    data: TokenData,
    steps: int | None = None,
    device: str | torch.device | None = None,
    log_every: int = 25,
    **train_options: Any,
) -> list[dict]:
    """Train ``model`` on ``data`` with the recipe's optimiser and schedule; returns the loss history.

    ``train_options`` are :class:`course_lib.train.TrainConfig` fields (``progress=False``; the checkpoint
    and resume options of :meth:`course_lib.train.command.Run.train_options`).

    Notebook: notebooks/05_audio_language_model.ipynb, 06_text_to_music.ipynb
    """
    from course_lib.train import TrainConfig, Trainer, warmup_cosine_schedule

    steps = plan.steps if steps is None else steps
    optimizer = torch.optim.AdamW(model.parameters(), lr=plan.lr, betas=plan.betas, weight_decay=plan.weight_decay)
    scheduler = warmup_cosine_schedule(optimizer, steps, min(plan.warmup_steps, steps // 10), plan.final_lr_fraction)
    config = TrainConfig(steps=steps, lr=plan.lr, log_every=min(log_every, steps), seed=plan.seed, **train_options)
    trainer = Trainer(model, lm_loss, config, optimizer=optimizer, scheduler=scheduler, device=device)
    return trainer.fit(random_batches(len(data), plan.batch_size, stage_batch(plan, layout, data), plan.seed))
