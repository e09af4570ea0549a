"""Train the chapter's language models on codec tokens of SynthMusic: the commands behind the shipped checkpoints.

Five commands, run in this order from the repository root (one CPU thread by default, seeded)::

    python -m course_lib.lm.train --stage tokenizer --scale tiny --out course_lib/checkpoints/lm_semantic_kmeans_tiny.safetensors
    python -m course_lib.lm.train --stage delay     --scale tiny --out course_lib/checkpoints/lm_delay_tiny.safetensors
    python -m course_lib.lm.train --stage semantic  --scale tiny --out course_lib/checkpoints/lm_semantic_tiny.safetensors
    python -m course_lib.lm.train --stage coarse    --scale tiny --out course_lib/checkpoints/lm_coarse_tiny.safetensors
    python -m course_lib.lm.train --stage fine      --scale tiny --out course_lib/checkpoints/lm_fine_tiny.safetensors

- ``tokenizer``: AudioLM's semantic tokens, k-means (64 clusters) over the joint embedding's audio-tower
  frames (25 Hz) of training clips (:class:`course_lib.lm.audiolm.SemanticTokenizer`).
- ``delay``: one model over the codec's first ``n_q`` = 4 levels in MusicGen's delay layout (chapter 05's
  prompt continuation); unconditional.
- ``semantic`` and ``coarse``: AudioLM's first two stages, conditioned on each clip's joint audio
  embedding M_A with condition dropout (MusicLM + classifier-free guidance, chapter 06); with the null
  condition they are AudioLM's unconditional stages (chapter 05).
- ``fine``: AudioLM's third stage on 1-second chunks, unconditional.

Every stage reads the frozen models it needs: the joint embedding (``--embedding``), the codec
(``--codec``) and the semantic tokenizer (``--tokenizer``), by default the shipped tiny files. A
full-scale chain passes its own (the tokenizer must be fitted on the same embedding; a stage that uses
semantic tokens checks both)::

    python -m course_lib.lm.train --stage tokenizer --scale full --out kmeans_full.safetensors \
        --embedding joint_embedding_full.safetensors
    python -m course_lib.lm.train --stage coarse --scale full --out coarse_full.safetensors \
        --codec codec_full.safetensors --embedding joint_embedding_full.safetensors --tokenizer kmeans_full.safetensors

Data: :func:`course_lib.lm.data.prepare_token_data` on training clips (no held-out attribute
combination), cached in ``$COURSE_DATA/lm_tokens`` so the stages share one pass of the codec and the
embedding; batches drawn as a function of the step. Optimiser: AdamW with MusicGen's betas (0.9, 0.95)
and weight decay 0.1, a linear warm-up and a cosine decay (:func:`course_lib.train.warmup_cosine_schedule`).
After training, the held-out figures go into the file's metadata: the validation cross-entropy in
nats per token against a unigram baseline (each level's code frequencies in the training data), and,
for conditioned stages, the cross-entropy with the null condition (what the condition is worth).

The weights are stored in float16 (half the size: every tiny model stays well under 5 MB) and loaded
back into float32 by :mod:`course_lib.lm.pretrained`.

Notebooks: notebooks/05_audio_language_model.ipynb, 06_text_to_music.ipynb
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from course_lib.config import get_scale, seed_everything
from course_lib.errors import ConfigError
from course_lib.lm.audiolm import SemanticTokenizer, SemanticTokenizerConfig
from course_lib.lm.data import TokenData, prepare_token_data, random_batches, weights_fingerprint
from course_lib.lm.musiclm import condition_dropout_mask
from course_lib.lm.sequences import CoarseSequence, DelaySequence, FineSequence, SemanticSequence
from course_lib.lm.transformer import LMConfig, TokenLM, next_token_loss
from course_lib.train.command import Run, TrainingCommand, positive_float, positive_int

STAGES = ("tokenizer", "delay", "semantic", "coarse", "fine")
MODEL_STAGES = STAGES[1:]
CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "checkpoints"


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
    """The recipe of ``stage`` at ``scale`` (default ``$COURSE_SCALE``), with single fields overridden."""
    if stage not in STAGES:
        raise ConfigError(f"Unknown stage {stage!r}: use one of {', '.join(STAGES)}.")
    presets = FULL if get_scale(scale) == "full" else TINY
    return LMRecipe(stage=stage, **{**presets[stage], **{k: v for k, v in changes.items() if v is not None}})


# ------------------------------------------------------------------------------------------ sequences
def sequence_layout(plan: LMRecipe, codebook_size: int = 1024) -> Any:
    """The :mod:`course_lib.lm.sequences` layout of a stage."""
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


# ------------------------------------------------------------------------------------------ evaluation
def unigram_nll(train_tokens: Tensor, eval_tokens: Tensor, vocab_size: int) -> float:
    """Cross-entropy (nats/token) of ``eval_tokens`` under each row-level's code frequencies in ``train_tokens``.

    Both are ``(N, L, T)``: L levels (or 1), each with its own unigram distribution (add-one smoothed).
    The baseline a language model must beat: it knows how often each code occurs, nothing about context.

    Notebook: notebooks/05_audio_language_model.ipynb
    """
    total, count = 0.0, 0
    for level in range(train_tokens.shape[1]):
        frequencies = torch.bincount(train_tokens[:, level].reshape(-1), minlength=vocab_size).double() + 1.0  # (V,)
        log_p = (frequencies / frequencies.sum()).log()  # (V,)
        values = eval_tokens[:, level].reshape(-1)
        total -= log_p[values].sum().item()
        count += values.numel()
    return total / count


@torch.no_grad()
def evaluate_lm(
    model: TokenLM, plan: LMRecipe, layout: Any, validation: TokenData, train: TokenData
) -> dict[str, float]:
    """Validation cross-entropy (nats/token) of a stage, its unigram baseline, and the null-condition figure.

    Notebook: notebooks/05_audio_language_model.ipynb, 06_text_to_music.ipynb
    """
    model.eval()
    device = next(model.parameters()).device
    rows = torch.arange(len(validation))
    make = stage_batch(dataclasses.replace(plan, condition_dropout=0.0), layout, validation)
    batches = []
    if plan.stage == "fine":  # every chunk of every clip
        frames = validation.codes.shape[2]
        for start in range(0, frames - plan.chunk_frames + 1, plan.chunk_frames):
            chunk = validation.codes[:, :, start : start + plan.chunk_frames]
            tokens, mask = layout.build(chunk[:, : plan.n_coarse], chunk[:, plan.n_coarse : plan.n_q])
            batches.append({"tokens": tokens, "mask": mask})
    else:
        batches.append(make(rows, None))

    def nll(drop: bool) -> float:
        losses = []
        for batch in batches:
            batch = {name: value.to(device) for name, value in batch.items()}
            if "drop" in batch:
                batch["drop"] = torch.full_like(batch["drop"], drop)
            losses.append(lm_loss(model, batch).item())
        return sum(losses) / len(losses)

    figures = {"validation_nll": nll(False)}
    if model.config.condition_dim:
        figures["validation_nll_null_condition"] = nll(True)
    if plan.stage == "semantic":
        baseline = unigram_nll(train.semantic[:, None], validation.semantic[:, None], layout.vocab_size)
    elif plan.stage == "coarse":
        baseline = unigram_nll(
            train.codes[:, : plan.n_coarse], validation.codes[:, : plan.n_coarse], layout.codebook_size
        )
    elif plan.stage == "fine":
        levels = slice(plan.n_coarse, plan.n_q)
        baseline = unigram_nll(train.codes[:, levels], validation.codes[:, levels], layout.codebook_size)
    else:
        baseline = unigram_nll(train.codes[:, : plan.n_q], validation.codes[:, : plan.n_q], layout.codebook_size)
    figures["unigram_nll"] = baseline
    return figures


# ---------------------------------------------------------------------------------------------- running
def _embedding(path: Path | None, device: torch.device) -> Any:
    """The joint embedding at ``path``, or the shipped tiny one."""
    from course_lib.joint_embedding import load_joint_embedding, load_tiny_joint_embedding

    return load_tiny_joint_embedding(device) if path is None else load_joint_embedding(path, device)


def _models(
    device: torch.device,
    needs_codec: bool,
    needs_embedding: bool,
    tokenizer_path: Path | None,
    codec_path: Path | None = None,
    embedding_path: Path | None = None,
) -> tuple[Any, Any, Any]:
    """The frozen codec, joint embedding and semantic tokenizer of a stage (None paths: the shipped tiny files)."""
    from course_lib.lm.pretrained import check_embedding, load_semantic_tokenizer, read_header

    codec = None
    if needs_codec:
        from course_lib.codec.pretrained import load_codec, load_tiny_codec

        codec = load_tiny_codec(device) if codec_path is None else load_codec(codec_path, device)
    embedding = _embedding(embedding_path, device) if needs_embedding or tokenizer_path is not None else None
    tokenizer = None
    if tokenizer_path is not None:
        check_embedding(read_header(tokenizer_path)[1], embedding, f"semantic tokenizer {tokenizer_path}")
        tokenizer = load_semantic_tokenizer(tokenizer_path, embedding, device)
    return codec, embedding, tokenizer


def run_tokenizer(plan: LMRecipe, run: Run, embedding_path: Path | None = None) -> dict:
    """Fit the semantic k-means on the joint embedding's frames (``embedding_path``, default: the tiny one).

    k-means has no optimizer steps to checkpoint: a stopped fit starts again (it takes seconds to minutes).
    """
    from course_lib.data.splits import training_clips
    from course_lib.train import save_weights

    device = run.device
    seed_everything(plan.seed)
    embedding = _embedding(embedding_path, device)
    tokenizer = SemanticTokenizer(
        SemanticTokenizerConfig(
            n_clusters=plan.n_semantic, feature_dim=embedding.config.audio_channels, seed=plan.seed
        ),
        embedding.audio_frames,
    ).to(device)
    audio = training_clips(plan.tokenizer_clips).audio  # (N, 32000)
    tokenizer.fit(audio)
    tokens = tokenizer.encode(audio[:256])
    metadata = {
        "stage": "tokenizer",
        "recipe": dataclasses.asdict(plan),
        "encoder": f"course_lib.joint_embedding ({embedding_path or 'tiny'}): audio_frames, 25 Hz",
        "embedding_fingerprint": weights_fingerprint(embedding),
        "inertia_per_frame": tokenizer.inertia_,
        "clusters_used": int(tokens.unique().numel()),
        **run.facts(),
    }
    save_weights(run.out, tokenizer, metadata)
    return metadata


def run_stage(
    plan: LMRecipe,
    run: Run,
    tokenizer_path: Path,
    codec_path: Path | None = None,
    embedding_path: Path | None = None,
) -> dict:
    """Prepare the tokens, train one stage, evaluate it and save it (float16) with its metadata.

    ``codec_path`` and ``embedding_path``: the frozen codec and joint embedding (None: the shipped tiny ones).
    """
    from course_lib.train import save_weights

    device, scale = run.device, run.scale
    seed_everything(plan.seed)
    conditioned = plan.stage in ("semantic", "coarse")
    # Every stage that needs codes also computes the semantic tokens and M_A, so that delay, coarse and
    # fine share one cached pass over the clips (the semantic stage needs no codec).
    codec, embedding, tokenizer = _models(
        device, plan.stage != "semantic", True, tokenizer_path, codec_path, embedding_path
    )
    clusters = tokenizer.config.n_clusters if tokenizer is not None else plan.n_semantic
    if plan.stage in ("semantic", "coarse") and clusters != plan.n_semantic:
        raise ConfigError(
            f"The semantic tokenizer {tokenizer_path} has {clusters} clusters but this {scale} recipe expects "
            f"{plan.n_semantic}: pass --tokenizer with the file of `python -m course_lib.lm.train --stage tokenizer "
            f"--scale {scale}`."
        )
    data_args = {"codec": codec, "n_q": plan.n_q, "tokenizer": tokenizer, "embedding": embedding, "progress": True}
    train_data = prepare_token_data(plan.train_clips, split="training", **data_args)
    validation = prepare_token_data(plan.validation_clips, split="validation", **data_args)
    prepared = time.perf_counter() - run.started
    layout = sequence_layout(plan, 1024 if codec is None else codec.codebook_size)
    n_frames = train_data.codes.shape[2] if codec is not None else 0
    n_semantic_tokens = train_data.semantic.shape[1] if train_data.semantic is not None else n_frames // 2
    config = lm_config(plan, layout, scale, embedding.dim if conditioned else 0, n_frames, n_semantic_tokens)
    model = TokenLM(config)
    history = fit_lm(model, plan, layout, train_data, device=device, **run.train_options())
    figures = evaluate_lm(model, plan, layout, validation, train_data)
    metadata = {
        "stage": plan.stage,
        "scale": scale,
        "recipe": dataclasses.asdict(plan),
        "layout": {"name": type(layout).__name__, **dataclasses.asdict(layout)},
        "codec_fingerprint": None if codec is None else codec.fingerprint(),
        "embedding_fingerprint": weights_fingerprint(embedding),
        "frame_rate": None if codec is None else codec.frame_rate,
        "n_frames": n_frames,
        "n_semantic_tokens": n_semantic_tokens,
        "parameters": model.num_parameters(),
        "final_loss": history[-1]["loss"],
        "history": [[entry["step"], round(entry["loss"], 4)] for entry in history],
        "data_seconds": round(prepared, 1),
        **figures,
        **run.facts(),
    }
    save_weights(run.out, copy.deepcopy(model).cpu().half(), metadata)
    return metadata


COMMAND = TrainingCommand("course_lib.lm.train", __doc__)
COMMAND.add_argument("--stage", choices=STAGES, required=True)
COMMAND.add_argument(
    "--tokenizer",
    type=Path,
    default=CHECKPOINT_DIR / "lm_semantic_kmeans_tiny.safetensors",
    help="the semantic tokenizer (stages semantic and coarse)",
)
COMMAND.add_argument("--codec", type=Path, default=None, help="the codec (default: the shipped tiny one)")
COMMAND.add_argument("--embedding", type=Path, default=None, help="the joint embedding (default: the shipped tiny one)")
COMMAND.add_argument("--lr", type=positive_float)
COMMAND.add_argument("--clips", type=positive_int, help="training clips")
COMMAND.add_argument("--validation-clips", type=positive_int, help="validation clips (the held-out figures)")


def main(argv: list[str] | None = None) -> dict:
    """Fit the tokenizer or train the stage of the command line, and write its weights."""
    run = COMMAND.parse(argv)
    args = run.args
    plan = recipe(
        args.stage,
        run.scale,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        train_clips=args.clips,
        validation_clips=args.validation_clips,
        seed=args.seed,
    )
    if plan.stage == "tokenizer":
        metadata = run_tokenizer(plan, run, args.embedding)
        print(
            f"wrote {run.out}: {metadata['clusters_used']} of {plan.n_semantic} clusters used, in {metadata['train_seconds']:.0f} s"
        )
        return metadata
    metadata = run_stage(plan, run, args.tokenizer, args.codec, args.embedding)
    run.finish()
    size = run.out.stat().st_size / 1e6
    extra = (
        f", null condition {metadata['validation_nll_null_condition']:.3f}"
        if "validation_nll_null_condition" in metadata
        else ""
    )
    print(
        f"wrote {run.out} ({size:.2f} MB) in {metadata['train_seconds']:.0f} s: validation {metadata['validation_nll']:.3f} "
        f"nats/token{extra}, unigram baseline {metadata['unigram_nll']:.3f}"
    )
    return metadata


if __name__ == "__main__":
    COMMAND.exit(main)
