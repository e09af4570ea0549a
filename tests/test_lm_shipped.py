"""The shipped language models load, fit the shipped codec, and beat their baselines on clips they never saw.

Checkpoints: ``course_lib/checkpoints/lm_*_tiny.safetensors``, made by ``python -m course_lib.lm.train``
(the commands are in each file's metadata). Baselines: the unigram cross-entropy of each stage's tokens
(each level's code frequencies in the 4,000 training clips, stored with the weights when they were
trained) and, for the conditioned stages, the same model with its null condition. The margins are
several times smaller than the gaps the models reached when trained.
"""

from __future__ import annotations

import math

import pytest
import torch

from course_lib.lm.evaluation import evaluate_lm
from course_lib.lm.pretrained import TINY_FILES, load_lm, load_tiny_audiolm, load_tiny_semantic_tokenizer
from course_lib.lm.recipes import LMRecipe, recipe
from course_lib.lm.transformer import TokenLM


@pytest.fixture(scope="module")
def models():
    from course_lib.codec.pretrained import load_tiny_codec
    from course_lib.joint_embedding import load_tiny_joint_embedding

    codec, embedding = load_tiny_codec("cpu"), load_tiny_joint_embedding("cpu")
    tokenizer = load_tiny_semantic_tokenizer("cpu", embedding)
    return codec, embedding, tokenizer


@pytest.fixture(scope="module")
def validation(models):
    from course_lib.lm.data import prepare_token_data

    codec, embedding, tokenizer = models
    return prepare_token_data(16, codec, 4, "validation", tokenizer=tokenizer, embedding=embedding, cache=False)


def test_every_file_is_small_and_records_its_command():
    for stage, path in TINY_FILES.items():
        assert path.stat().st_size < 5_000_000, (path, path.stat().st_size)
        from course_lib.lm.pretrained import read_header

        _, metadata = read_header(path)
        assert metadata["command"].startswith(f"python -m course_lib.lm.train --stage {stage}"), metadata["command"]
        assert metadata["threads"] == 1 and metadata["train_seconds"] > 0


def test_semantic_tokens_use_the_codebook(models, validation):
    _, _, tokenizer = models
    assert validation.semantic.shape == (16, 50) and int(validation.semantic.max()) < tokenizer.config.n_clusters
    assert validation.semantic.unique().numel() > tokenizer.config.n_clusters // 4


@pytest.mark.parametrize("stage", ["delay", "semantic", "coarse", "fine"])
def test_each_stage_beats_the_unigram_baseline_on_new_clips(stage, models, validation):
    codec, _, _ = models
    shipped = load_lm(TINY_FILES[stage], "cpu")
    if stage != "semantic":
        assert shipped.metadata["codec_fingerprint"] == codec.fingerprint()  # trained on this codec's tokens
    plan = LMRecipe(**{**shipped.metadata["recipe"], "betas": tuple(shipped.metadata["recipe"]["betas"])})
    figures = evaluate_lm(shipped.model, plan, shipped.layout, validation, validation)
    untrained = evaluate_lm(TokenLM(shipped.model.config), plan, shipped.layout, validation, validation)
    assert figures["validation_nll"] < shipped.metadata["unigram_nll"] - 0.2, figures
    assert figures["validation_nll"] < untrained["validation_nll"] - 1.0
    if stage == "semantic":  # the joint embedding M_A of the clip helps (0.27 nats/token when trained)
        assert figures["validation_nll"] < figures["validation_nll_null_condition"] - 0.1, figures
    if stage == "coarse":  # less so once the semantic tokens are given (0.01 nats/token when trained)
        assert figures["validation_nll"] < figures["validation_nll_null_condition"], figures
    assert recipe(stage, "tiny").steps == plan.steps  # the file is the tiny recipe, not a shortened run


def test_the_chain_samples_audio_from_the_shipped_stages(models):
    codec, embedding, _ = models
    audiolm = load_tiny_audiolm("cpu", codec=codec, embedding=embedding)
    condition = embedding.embed_text(["a fast plucked-string melody in A minor with drums"])
    out = audiolm.sample(
        1, seconds=1.0, condition=condition, guidance_scale=3.0, generator=torch.Generator().manual_seed(0)
    )
    assert out.audio.shape == (1, 16_000) and torch.isfinite(out.audio).all() and out.audio.abs().max() > 1e-3
    assert out.codes.shape == (1, 4, 50) and out.semantic.shape == (1, 25)
    assert math.isfinite(sum(out.seconds.values()))
