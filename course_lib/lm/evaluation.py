"""How the chapter's language models are measured: held-out cross-entropy, and a bag-of-tokens probe of what tokens carry.

**Cross-entropy.** The validation cross-entropy in nats per token (:func:`evaluate_lm`) is set
against the unigram baseline (:func:`unigram_nll`: each level's code frequencies in the training data,
what a model that ignores context achieves) and, for conditioned stages, against the same model given
the null condition (what the condition is worth).

**The probe.** Generated audio is judged by a classifier listening to it (``course_lib.attributes``), but
between the language model and the ears sits the codec's decoder, whose artefacts the classifier hears
too. To judge the *language model* — did it keep the prompt's instrument, did it follow the caption? —
:class:`TokenHistogramProbe` reads the attributes from the **tokens** themselves: each sequence becomes
the normalised histogram of its token ids (a bag of tokens, order ignored), and an attribute is
predicted by the nearest class-average histogram (a nearest-centroid classifier; Tibshirani et al.
2002 call its shrunken form "nearest shrunken centroids"), fitted on the tokens of real training clips.
It shows what a kind of token carries: the codec's level-0 codes tell instruments apart (timbre is a
spectral property the codec must keep), AudioLM's semantic tokens tell drums and tempo apart (they come
from an encoder trained to hear what captions describe).

Notebooks: notebooks/05_audio_language_model.ipynb, 06_text_to_music.ipynb
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor

from course_lib.errors import ConfigError
from course_lib.lm.data import TokenData
from course_lib.lm.recipes import LMRecipe, lm_loss, stage_batch
from course_lib.lm.transformer import TokenLM


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
