"""MusicLM's text conditioning: train on the audio embedding M_A, generate from the text embedding M_T, with guidance.

MusicLM (Agostinelli et al. 2023) is AudioLM's hierarchy with one more input. A joint audio–text
embedding (MuLan) maps a clip to M_A and a caption to M_T in the same space, and the stages model

    semantic:  p(S_t | S_<t, M_A)          acoustic:  p(A_t | A_<t, S, M_A)

**Training needs no captions**: each clip is conditioned on *its own* audio embedding M_A. **At
inference** the caption's text embedding M_T takes its place — the lecture's trick, which works to the
extent that a clip's M_A and its caption's M_T are close (chapter 06 measures that gap). MusicLM
turns the embedding into 12 MuLan tokens (residual VQ) and prefixes them; here the 128-d vector is
projected to a few memory vectors that every block cross-attends to (MusicGen's way of feeding its
text encoder, :class:`course_lib.lm.transformer.TokenLM`). The fine acoustic stage is not conditioned
(in AudioLM and MusicLM it only sees the coarse tokens).

**Classifier-free guidance** (Ho & Salimans 2022; on token logits as in MusicGen, Copet et al. 2023):
in training the condition is replaced by a learned null memory with probability
``condition_dropout`` (MusicGen: 0.3), so one network learns both p(x | c) and p(x); at inference the
logits are pushed away from the unconditional ones, ``ℓ(∅) + w (ℓ(c) − ℓ(∅))`` with w > 1 (MusicGen:
3), trading diversity for adherence to the caption.

Notebook: notebooks/06_text_to_music.ipynb
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from course_lib.errors import ConfigError
from course_lib.lm.audiolm import AudioLM, AudioLMSample, SamplingOptions


def condition_dropout_mask(batch: int, probability: float, generator: torch.Generator | None = None) -> Tensor:
    """``(batch,)`` bool, True (drop: use the null memory) with ``probability`` for each example.

    Notebook: notebooks/06_text_to_music.ipynb
    """
    if not 0.0 <= probability <= 1.0:
        raise ConfigError(f"condition dropout must be a probability in [0, 1], got {probability}.")
    return torch.rand(batch, generator=generator) < probability  # (B,)


def text_conditions(embedding: Any, captions: Sequence[str]) -> Tensor:
    """M_T: the joint embedding's text vectors of ``captions``, ``(B, D)`` on the CPU.

    Notebook: notebooks/06_text_to_music.ipynb
    """
    if isinstance(captions, str):
        captions = [captions]
    return embedding.embed_text(list(captions)).float().cpu()


def audio_conditions(embedding: Any, audio: Tensor) -> Tensor:
    """M_A: the joint embedding's audio vectors of ``audio`` (B, T), ``(B, D)`` on the CPU (what training uses).

    Notebook: notebooks/06_text_to_music.ipynb
    """
    return embedding.embed_audio(audio).float().cpu()


@torch.no_grad()
def generate_from_text(
    audiolm: AudioLM,
    embedding: Any,
    captions: Sequence[str],
    guidance_scale: float = 3.0,
    seconds: float = 2.0,
    generator: torch.Generator | None = None,
    semantic_options: SamplingOptions | None = None,
    coarse_options: SamplingOptions | None = None,
    fine_options: SamplingOptions | None = None,
    progress: bool = False,
) -> AudioLMSample:
    """MusicLM's inference: condition the semantic and coarse stages on M_T of each caption.

    ``guidance_scale=1`` is plain conditional sampling; ``> 1`` applies classifier-free guidance.

    Notebook: notebooks/06_text_to_music.ipynb
    """
    for name, model in (("semantic", audiolm.semantic_model), ("coarse", audiolm.coarse_model)):
        if model.config.condition_dim == 0:
            raise ConfigError(f"The {name} model is not conditioned (condition_dim=0): load the MusicLM stages.")
    condition = text_conditions(embedding, captions)  # (B, D)
    return audiolm.sample(
        len(condition), seconds, condition=condition, guidance_scale=guidance_scale,
        semantic_options=semantic_options, coarse_options=coarse_options, fine_options=fine_options,
        generator=generator, progress=progress,
    )  # fmt: skip
