"""Loaders of the chapter's shipped language models (``course_lib/checkpoints/lm_*_tiny.safetensors``).

Each file was written by one command of :mod:`course_lib.lm.train` (README.md, "Shipped checkpoints");
its header holds the model's config, the sequence layout it was trained on, the figures it reached
and the command. The weights are stored in float16 and come back as float32.

- :func:`load_tiny_delay_lm`: the delay-layout model over 4 codec levels (chapter 05).
- :func:`load_tiny_semantic_tokenizer`: AudioLM's semantic tokens (k-means over the joint embedding's frames).
- :func:`load_tiny_audiolm`: the three AudioLM stages with the tokenizer and the codec; its semantic and
  coarse stages are conditioned (MusicLM, chapter 06) and fall back to their null condition when none
  is given (AudioLM, chapter 05).

Notebooks: notebooks/05_audio_language_model.ipynb, 06_text_to_music.ipynb
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from course_lib.config import get_device
from course_lib.errors import CheckpointError
from course_lib.lm.audiolm import AudioLM, SemanticTokenizer, SemanticTokenizerConfig
from course_lib.lm.sequences import CoarseSequence, DelaySequence, FineSequence, SemanticSequence
from course_lib.lm.transformer import LMConfig, TokenLM
from course_lib.train import load_weights
from course_lib.train.weights import read_weights_header, shipped_weights

TINY_FILES = {
    "tokenizer": shipped_weights("lm_semantic_kmeans_tiny.safetensors"),
    "delay": shipped_weights("lm_delay_tiny.safetensors"),
    "semantic": shipped_weights("lm_semantic_tiny.safetensors"),
    "coarse": shipped_weights("lm_coarse_tiny.safetensors"),
    "fine": shipped_weights("lm_fine_tiny.safetensors"),
}
LAYOUTS = {cls.__name__: cls for cls in (DelaySequence, SemanticSequence, CoarseSequence, FineSequence)}


@dataclasses.dataclass
class PretrainedLM:
    """A trained :class:`TokenLM` in eval mode, the sequence layout it reads, and its training metadata."""

    model: TokenLM
    layout: Any
    metadata: dict[str, Any]


def read_header(
    path: str | Path, expected: str | tuple[str, ...] = ("TokenLM", "SemanticTokenizer")
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(model config, metadata)`` of a file written by :mod:`course_lib.lm.train`.

    Args:
        expected: the model class(es) the caller builds: ``"TokenLM"`` or ``"SemanticTokenizer"``.

    Raises:
        CheckpointError: missing, cut-short or foreign file, or another model's weights.
    """
    fix = (
        f"re-create it with `python -m course_lib.lm.train --stage ... --scale tiny --out {path}` "
        "(the commands are in course_lib/lm/train.py and README.md, 'Shipped checkpoints')"
    )
    header = read_weights_header(path, expected, fix=fix)
    return dict(header.config or {}), header.metadata


def load_lm(path: str | Path, device: str | torch.device | None = None) -> PretrainedLM:
    """Load a language model written by :mod:`course_lib.lm.train`, in float32 and eval mode, on ``device``.

    Notebook: notebooks/05_audio_language_model.ipynb, 06_text_to_music.ipynb
    """
    config, metadata = read_header(path, "TokenLM")
    if "layout" not in metadata:
        raise CheckpointError(f"{path} is not a language model of course_lib.lm.train (its metadata has no layout).")
    model = TokenLM(LMConfig(**config))
    load_weights(path, model)  # float16 tensors are copied into the float32 parameters
    layout_fields = dict(metadata["layout"])
    layout = LAYOUTS[layout_fields.pop("name")](**layout_fields)
    return PretrainedLM(model.float().to(get_device(device)).eval(), layout, metadata)


def load_semantic_tokenizer(
    path: str | Path, embedding: Any | None = None, device: str | torch.device | None = None
) -> SemanticTokenizer:
    """The k-means semantic tokenizer at ``path``, reading frames with ``embedding.audio_frames``.

    Args:
        embedding: the joint embedding whose frames it was fitted on (default: the shipped tiny one).
    """
    config, metadata = read_header(path, "SemanticTokenizer")
    if embedding is None:
        from course_lib.joint_embedding import load_tiny_joint_embedding

        embedding = load_tiny_joint_embedding(device)
    tokenizer = SemanticTokenizer(SemanticTokenizerConfig(**config), embedding.audio_frames)
    load_weights(path, tokenizer)
    tokenizer.metadata = metadata
    return tokenizer.to(get_device(device))


def check_embedding(metadata: dict[str, Any], embedding: Any, name: str) -> None:
    """Raise if ``embedding`` is not the joint embedding a file was trained with (when its metadata says)."""
    from course_lib.lm.data import weights_fingerprint

    expected = metadata.get("embedding_fingerprint")
    if expected and weights_fingerprint(embedding) != expected:
        raise CheckpointError(
            f"The {name} was made with another joint embedding (fingerprint {expected}, this one "
            f"{weights_fingerprint(embedding)}): retrain it with `{metadata.get('command', 'python -m course_lib.lm.train')}`, "
            "or load the joint embedding it was made with."
        )


def load_tiny_delay_lm(device: str | torch.device | None = None) -> PretrainedLM:
    """Chapter 05's delay-layout model over the tiny codec's first 4 levels (``lm_delay_tiny.safetensors``).

    Notebook: notebooks/05_audio_language_model.ipynb
    """
    return load_lm(TINY_FILES["delay"], device)


def load_tiny_semantic_tokenizer(
    device: str | torch.device | None = None, embedding: Any | None = None
) -> SemanticTokenizer:
    """AudioLM's semantic tokens of the course (``lm_semantic_kmeans_tiny.safetensors``).

    Notebook: notebooks/05_audio_language_model.ipynb
    """
    return load_semantic_tokenizer(TINY_FILES["tokenizer"], embedding, device)


def load_tiny_audiolm(
    device: str | torch.device | None = None, codec: Any | None = None, embedding: Any | None = None
) -> AudioLM:
    """The shipped AudioLM/MusicLM stages, the semantic tokenizer and the tiny codec, ready to :meth:`~AudioLM.sample`.

    Args:
        codec: the codec the stages were trained on (default :func:`course_lib.codec.pretrained.load_tiny_codec`).
        embedding: the joint embedding (default: the shipped tiny one); its frames feed the tokenizer.

    Notebook: notebooks/05_audio_language_model.ipynb, 06_text_to_music.ipynb
    """
    device = get_device(device)
    if codec is None:
        from course_lib.codec.pretrained import load_tiny_codec

        codec = load_tiny_codec(device)
    stages = {name: load_lm(TINY_FILES[name], device) for name in ("semantic", "coarse", "fine")}
    for name, stage in stages.items():
        expected = stage.metadata.get("codec_fingerprint")
        if expected and hasattr(codec, "fingerprint") and codec.fingerprint() != expected:
            raise CheckpointError(
                f"The {name} stage was trained on the tokens of another codec (fingerprint {expected}, this codec "
                f"{codec.fingerprint()}): retrain it with `{stage.metadata.get('command', 'python -m course_lib.lm.train')}`."
            )
    if embedding is None:
        from course_lib.joint_embedding import load_tiny_joint_embedding

        embedding = load_tiny_joint_embedding(device)
    tokenizer = load_semantic_tokenizer(TINY_FILES["tokenizer"], embedding, device)
    check_embedding(tokenizer.metadata, embedding, "semantic tokenizer")
    for name in ("semantic", "coarse"):
        check_embedding(stages[name].metadata, embedding, f"{name} stage")
    return AudioLM(
        stages["semantic"].model, stages["coarse"].model, stages["fine"].model, tokenizer, codec,
        stages["semantic"].layout, stages["coarse"].layout, stages["fine"].layout,
    )  # fmt: skip
