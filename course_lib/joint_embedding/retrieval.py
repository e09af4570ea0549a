"""How good a joint embedding is: text → audio retrieval, attribute-level retrieval, and the audio–text gap.

- **Retrieval accuracy (recall@k)**: embed N clips and their N captions; for each caption rank the
  clips by cosine similarity; the accuracy is the fraction of captions whose own clip is among the
  top k (MuLan reports text → music retrieval this way; CLAP reports R@1, R@5, R@10). Chance is k / N.
- **Attribute retrieval**: the fraction of captions whose top-1 clip has the attributes the caption
  names (instrument, tempo class, drums): a caption fits many clips, so this is the fairer score
  when captions leave details out.
- **Zero-shot classification** (CLAP's headline evaluation): embed one short prompt per class
  ("a slow melody", "a fast melody", ...) and give each clip the class of its most similar prompt.
  No classifier is trained; the accuracy says which attributes the shared space holds.
- **The gap**: mean cosine of matching (clip, caption) pairs against that of non-matching pairs. A
  generator trained on audio embeddings and driven by text embeddings (MusicLM, AudioLDM) sees
  inputs that differ by exactly this gap: the higher the matching cosine, the smaller the surprise.

Notebook: notebooks/06_text_to_music.ipynb.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from course_lib.data.captions import INSTRUMENT_WORDS, caption_attributes
from course_lib.data.music_theory import MODES, NOTE_NAMES, TEMPO_CLASSES
from course_lib.data.timbres import INSTRUMENTS
from course_lib.errors import ConfigError
from course_lib.joint_embedding.model import JointEmbedding

COMBINATION = ("instrument", "tempo_class", "drums")
KEYS = [(key, mode) for mode in range(len(MODES)) for key in range(len(NOTE_NAMES))]  # the 24 prompts' (key, mode)
ZERO_SHOT_PROMPTS: dict[str, list[str]] = {
    "instrument": [f"{INSTRUMENT_WORDS[name]} melody" for name in INSTRUMENTS],
    "tempo_class": [f"a {'medium-tempo' if word == 'medium' else word} melody" for word in TEMPO_CLASSES],
    "drums": ["a melody without drums", "a melody with drums"],
    "dynamics": ["soft tune", "moderate tune", "loud tune"],
    "key_mode": [f"a melody in {NOTE_NAMES[key]} {MODES[mode]}" for key, mode in KEYS],
}
"""One prompt per class, in label order; ``key_mode`` has 24 (key, mode) prompts, read back as ``key`` and ``mode``."""


def similarity_matrix(model: JointEmbedding, audio: Tensor, captions: Sequence[str]) -> Tensor:
    """Cosine similarities ``(N_captions, N_clips)`` of each caption's embedding with each clip's (on the CPU)."""
    _check_pairs(audio, captions, same_length=False)
    text = model.embed_text(list(captions)).cpu()  # (N_c, D)
    clips = model.embed_audio(audio).cpu()  # (N_a, D)
    return text @ clips.T  # (N_c, N_a)


def retrieval_accuracy(
    model: JointEmbedding, audio: Tensor, captions: Sequence[str], k: int = 1, direction: str = "text_to_audio"
) -> float:
    """Recall@k of retrieval between N clips ``(N, T)`` and their N captions (caption i describes clip i).

    Args:
        k: a hit when the right item is among the k most similar (chance: k / N).
        direction: ``"text_to_audio"`` (rank clips for each caption, MuLan's text → music) or
            ``"audio_to_text"`` (rank captions for each clip).

    Returns:
        The fraction of queries whose match is in the top k, in [0, 1].

    Notebook: notebooks/06_text_to_music.ipynb
    """
    _check_pairs(audio, captions)
    if direction not in ("text_to_audio", "audio_to_text"):
        raise ConfigError(f"direction must be 'text_to_audio' or 'audio_to_text', got {direction!r}.")
    if not 1 <= k <= len(captions):
        raise ConfigError(f"k must be between 1 and the number of pairs ({len(captions)}), got {k}.")
    scores = similarity_matrix(model, audio, captions)  # (N, N): captions along rows
    if direction == "audio_to_text":
        scores = scores.T  # (N, N): clips along rows
    top = scores.topk(k, dim=1).indices  # (N, k)
    hits = (top == torch.arange(len(captions))[:, None]).any(dim=1)  # (N,)
    return hits.float().mean().item()


def attribute_retrieval_accuracy(
    model: JointEmbedding,
    audio: Tensor,
    labels: dict[str, Tensor],
    captions: Sequence[str],
    attributes: Sequence[str] = COMBINATION,
) -> dict[str, float]:
    """For each caption, does the most similar clip have the attributes the caption names?

    Args:
        audio: ``(N, T)`` clips to search.
        labels: their label ints (``ClipBatch.labels``: ``{name: (N,)}``).
        captions: queries (any number; need not describe the clips), read with
            :func:`course_lib.data.captions.caption_attributes`.
        attributes: which attributes to score.

    Returns:
        ``{attribute: accuracy}`` over the captions that name it, and ``"all"``: the fraction of captions
        whose retrieved clip matches every listed attribute they name.

    Notebook: notebooks/06_text_to_music.ipynb
    """
    _check_pairs(audio, captions, same_length=False)
    best = similarity_matrix(model, audio, captions).argmax(dim=1)  # (N_c,) the retrieved clip of each caption
    wanted = [caption_attributes(caption) for caption in captions]
    result: dict[str, float] = {}
    all_match = torch.ones(len(captions), dtype=torch.bool)
    for name in attributes:
        asked = torch.tensor([name in w for w in wanted])  # (N_c,)
        target = torch.tensor([w.get(name, -1) for w in wanted])  # (N_c,)
        match = labels[name].cpu()[best] == target  # (N_c,)
        all_match &= match | ~asked
        if asked.any():
            result[name] = match[asked].float().mean().item()
    result["all"] = all_match.float().mean().item()
    return result


def zero_shot_predictions(model: JointEmbedding, audio: Tensor) -> dict[str, Tensor]:
    """Each clip's class per attribute from the most similar of :data:`ZERO_SHOT_PROMPTS`: ``{name: (N,)}`` label ints.

    Covers ``instrument``, ``tempo_class``, ``drums``, ``dynamics``, and ``key`` and ``mode`` (from the
    best of the 24 "a melody in <key> <mode>" prompts).
    """
    clips = model.embed_audio(audio).cpu()  # (N, D)
    predictions = {}
    for name, prompts in ZERO_SHOT_PROMPTS.items():
        best = (clips @ model.embed_text(prompts).cpu().T).argmax(dim=1)  # (N,)
        if name == "key_mode":
            table = torch.tensor(KEYS)  # (24, 2)
            predictions["key"], predictions["mode"] = table[best, 0], table[best, 1]
        else:
            predictions[name] = best
    return predictions


def zero_shot_accuracy(model: JointEmbedding, audio: Tensor, labels: dict[str, Tensor]) -> dict[str, float]:
    """Accuracy of :func:`zero_shot_predictions` against known labels (``ClipBatch.labels``), per attribute.

    Chance: 1/3 for instrument, tempo class and dynamics, 1/2 for drums and mode, 1/12 for the key.
    """
    predicted = zero_shot_predictions(model, audio)
    return {name: (value == labels[name].cpu()).float().mean().item() for name, value in predicted.items()}


def embedding_gap(model: JointEmbedding, audio: Tensor, captions: Sequence[str]) -> dict[str, float]:
    """Mean cosine of matching pairs (clip i, caption i) and of non-matching pairs (i ≠ j).

    Returns:
        ``{"matching": ..., "non_matching": ..., "difference": matching − non_matching}``, cosines in [-1, 1].

    Notebooks: notebooks/06_text_to_music.ipynb, 08_latent_diffusion.ipynb
    """
    _check_pairs(audio, captions)
    scores = similarity_matrix(model, audio, captions)  # (N, N)
    n = scores.shape[0]
    if n < 2:
        raise ConfigError("embedding_gap needs at least two pairs (one to compare with the other).")
    matching = scores.diagonal().mean().item()
    non_matching = (scores.sum() - scores.diagonal().sum()).item() / (n * n - n)
    return {"matching": matching, "non_matching": non_matching, "difference": matching - non_matching}


def _check_pairs(audio: Tensor, captions: Sequence[str], same_length: bool = True) -> None:
    if isinstance(captions, str):
        raise ConfigError("captions must be a list of strings (one per query), not one string: wrap it in [...].")
    if same_length and audio.shape[0] != len(captions):
        raise ConfigError(
            f"{audio.shape[0]} clips but {len(captions)} captions: caption i must describe clip i "
            "(use a ClipBatch's .audio and .captions)."
        )
