"""Held-out figures of a language-model stage: validation cross-entropy against a unigram baseline and the null condition.

The validation cross-entropy in nats per token is set against the unigram baseline (each level's code
frequencies in the training data: what a model that ignores context achieves) and, for conditioned
stages, against the same model given the null condition (what the condition is worth).

Notebooks: notebooks/05_audio_language_model.ipynb, 06_text_to_music.ipynb
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor

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
