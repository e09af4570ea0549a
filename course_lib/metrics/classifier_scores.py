"""Measures read off a classifier's outputs: the Inception Score and caption adherence.

The classifier is the course's judge, :class:`course_lib.attributes.AttributeClassifier` (a trained
model with its own package); these functions only take its outputs (``probabilities``) or call its
``predict``, so any object with ``heads`` and ``predict`` can stand in for it.

**Inception Score** (Salimans et al. 2016, "Improved Techniques for Training GANs", sec. 4):
``IS = exp(E_x KL(p(y|x) ‖ p(y)))`` with ``p(y) = E_x p(y|x)``. It is high when each clip is
classified confidently (low-entropy p(y|x)) *and* the clips cover the classes (high-entropy p(y));
it ranges from 1 to the number of classes K. Here it is computed per attribute (MusicLM lists IS
among its metrics as a measure of diversity).

**Caption adherence**: does the audio have the attributes its caption asked for? The caption is read
with :func:`course_lib.data.captions.caption_attributes`, the audio with the classifier, and the
score is the classifier's accuracy on the requested attributes (a noisy judge: compare it with the
classifier's accuracy on real held-out clips, the ceiling a perfect generator would reach).

Notebooks: notebooks/06_text_to_music.ipynb, notebooks/08_latent_diffusion.ipynb.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from course_lib.data.captions import caption_attributes
from course_lib.errors import ConfigError

if TYPE_CHECKING:  # the measures need only the classifier's outputs, not the model's code
    from course_lib.attributes.model import AttributeClassifier


def inception_score(probabilities: Tensor | dict[str, Tensor], splits: int = 1) -> float | dict[str, float]:
    """``exp(E_x KL(p(y|x) ‖ p(y)))`` of class probabilities ``(N, K)`` (or a dict of them: one score each).

    Salimans et al. 2016 average the score over ``splits`` equal parts of the set (10 for 50,000
    images); with a few hundred clips one split is the honest choice. Between 1 (every clip gets the
    same distribution) and K (each clip certain, all classes equally often).

    Notebook: notebooks/06_text_to_music.ipynb
    """
    if isinstance(probabilities, dict):
        return {name: inception_score(p, splits) for name, p in probabilities.items()}  # type: ignore[misc]
    p = torch.as_tensor(probabilities, dtype=torch.float64)
    if (
        p.dim() != 2
        or p.shape[0] < splits
        or (p < 0).any()
        or not torch.allclose(p.sum(1), torch.ones(1, dtype=p.dtype), atol=1e-4)
    ):
        raise ConfigError(
            f"inception_score needs (N, K) probabilities (rows summing to 1, N ≥ splits = {splits}), "
            f"got shape {tuple(p.shape)}: pass classifier.probabilities(audio)[name]."
        )
    scores = []
    for part in p.chunk(splits):
        marginal = part.mean(dim=0, keepdim=True)  # (1, K): p(y)
        kl = (part * (part.clamp_min(1e-12).log() - marginal.clamp_min(1e-12).log())).sum(dim=1)  # (n,)
        scores.append(kl.mean().exp())
    return torch.stack(scores).mean().item()


def caption_adherence(
    classifier: AttributeClassifier,
    audio: Tensor,
    captions: Sequence[str],
    attributes: Sequence[str] = ("instrument", "tempo_class", "drums"),
) -> dict[str, float]:
    """How often the classifier hears in clip i what caption i asked for.

    Args:
        classifier: the judge, e.g. :func:`course_lib.attributes.load_tiny_attribute_classifier` (eval mode).
        audio: ``(N, T)`` clips (generated from the captions), 16 kHz.
        captions: the N captions, read with :func:`course_lib.data.captions.caption_attributes`.
        attributes: which requested attributes to score (the issue's three by default; add
            ``"dynamics"``, ``"mode"``, ``"key"`` for more).

    Returns:
        ``{attribute: accuracy}`` over the captions that ask for it; ``"mean"``: the accuracy over all
        (clip, requested attribute) pairs; ``"all"``: the fraction of clips with every requested one right.

    Notebooks: notebooks/06_text_to_music.ipynb, 08_latent_diffusion.ipynb
    """
    if isinstance(captions, str) or len(captions) != audio.shape[0]:
        raise ConfigError(
            f"caption_adherence needs one caption per clip (a list of {audio.shape[0]} strings), "
            f"got {1 if isinstance(captions, str) else len(captions)}."
        )
    missing = [name for name in attributes if name not in classifier.heads]
    if missing:
        raise ConfigError(f"the classifier has no head for {missing}: choose from {', '.join(classifier.heads)}.")
    predicted = classifier.predict(audio)
    wanted = [caption_attributes(caption) for caption in captions]
    result: dict[str, float] = {}
    hits = torch.zeros(len(captions))
    asked_count = torch.zeros(len(captions))
    for name in attributes:
        asked = torch.tensor([name in w for w in wanted])  # (N,)
        if not asked.any():
            continue
        correct = (predicted[name] == torch.tensor([w.get(name, -1) for w in wanted])) & asked  # (N,)
        result[name] = correct[asked].float().mean().item()
        hits += correct.float()
        asked_count += asked.float()
    if asked_count.sum() == 0:
        raise ConfigError(f"none of the captions names any of {list(attributes)}: nothing to score.")
    result["mean"] = (hits.sum() / asked_count.sum()).item()
    result["all"] = (hits == asked_count).float().mean().item()
    return result
