"""A bag-of-tokens probe: which attributes can be read from the tokens a model generated, before any decoder.

Generated audio is judged by a classifier listening to it (``course_lib.metrics``), but between the
language model and the ears sits the codec's decoder, whose artefacts the classifier hears too. To
judge the *language model* — did it keep the prompt's instrument, did it follow the caption? — the
probe here reads the attributes from the **tokens** themselves: each sequence becomes the normalised
histogram of its token ids (a bag of tokens, order ignored), and an attribute is predicted by the
nearest class-average histogram (a nearest-centroid classifier; Tibshirani et al. 2002 call its
shrunken form "nearest shrunken centroids"), fitted on the tokens of real training clips.

It shows what a kind of token carries: the codec's level-0 codes tell instruments apart (timbre is a
spectral property the codec must keep), AudioLM's semantic tokens tell drums and tempo apart (they come
from an encoder trained to hear what captions describe).

Notebooks: notebooks/05_audio_language_model.ipynb, 06_text_to_music.ipynb
"""

from __future__ import annotations

import torch
from torch import Tensor

from course_lib.errors import ConfigError


def token_histograms(tokens: Tensor, vocab_size: int) -> Tensor:
    """Normalised histograms of token ids: ``(N, L) -> (N, vocab_size)``, each row summing to 1."""
    if tokens.ndim != 2 or tokens.shape[1] == 0:
        raise ConfigError(f"token_histograms needs (N, L) token ids with L ≥ 1, got {tuple(tokens.shape)}.")
    offsets = torch.arange(tokens.shape[0], device=tokens.device)[:, None] * vocab_size  # (N, 1)
    counts = torch.bincount((tokens + offsets).reshape(-1), minlength=tokens.shape[0] * vocab_size)  # (N·V,)
    counts = counts.view(tokens.shape[0], vocab_size).float()  # (N, V)
    return counts / counts.sum(dim=1, keepdim=True)


class TokenHistogramProbe:
    """Nearest class-mean classifier on token histograms; ``fit(tokens, labels)`` then ``predict(tokens)``.

    Example::

        probe = TokenHistogramProbe(vocab_size=1024).fit(train.codes[:, 0], train.labels["instrument"])
        probe.predict(generated_codes[:, 0])   # (N,) instrument label ints
        probe.accuracy(valid.codes[:, 0], valid.labels["instrument"])

    Notebook: notebooks/05_audio_language_model.ipynb, 06_text_to_music.ipynb
    """

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = vocab_size
        self.classes: Tensor | None = None
        self.means: Tensor | None = None

    def fit(self, tokens: Tensor, labels: Tensor) -> TokenHistogramProbe:
        """Class-average histograms of ``tokens`` (N, L) grouped by ``labels`` (N,)."""
        if len(tokens) != len(labels):
            raise ConfigError(f"{len(tokens)} token sequences but {len(labels)} labels: pass one label per sequence.")
        histograms = token_histograms(tokens, self.vocab_size)  # (N, V)
        self.classes = labels.unique()  # (C,)
        self.means = torch.stack([histograms[labels == c].mean(0) for c in self.classes])  # (C, V)
        return self

    def predict(self, tokens: Tensor) -> Tensor:
        """The label of the nearest class-average histogram for each sequence: ``(N, L) -> (N,)``."""
        if self.means is None or self.classes is None:
            raise ConfigError("This probe is not fitted: call .fit(tokens, labels) first.")
        distances = torch.cdist(token_histograms(tokens, self.vocab_size), self.means)  # (N, C)
        return self.classes[distances.argmin(dim=1)]

    def accuracy(self, tokens: Tensor, labels: Tensor) -> float:
        return (self.predict(tokens) == labels).float().mean().item()
