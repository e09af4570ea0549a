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
import time
from pathlib import Path
from typing import Any

import torch

from course_lib.config import seed_everything
from course_lib.errors import ConfigError
from course_lib.lm.audiolm import SemanticTokenizer, SemanticTokenizerConfig
from course_lib.lm.data import prepare_token_data, weights_fingerprint
from course_lib.lm.evaluation import evaluate_lm
from course_lib.lm.recipes import STAGES, LMRecipe, fit_lm, lm_config, recipe, sequence_layout
from course_lib.lm.transformer import TokenLM
from course_lib.train.command import Run, TrainingCommand, positive_float, positive_int
from course_lib.train.weights import shipped_weights


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
    default=shipped_weights("lm_semantic_kmeans_tiny.safetensors"),
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
