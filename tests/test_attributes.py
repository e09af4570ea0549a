"""Tests of the attribute classifier (course_lib.attributes), the Inception Score and caption adherence (course_lib.metrics)."""

from __future__ import annotations

import math

import pytest
import torch

from course_lib.attributes import (
    ATTRIBUTE_CLASSES,
    TINY_ATTRIBUTE_CLASSIFIER,
    AttributeClassifier,
    AttributeClassifierConfig,
    load_attribute_classifier,
    load_tiny_attribute_classifier,
    onset_autocorrelation,
)
from course_lib.attributes.train import Recipe, classifier_batches, classifier_step
from course_lib.data.splits import held_out_clips, training_clips, validation_clips
from course_lib.errors import AudioInputError, CheckpointError, ConfigError
from course_lib.metrics import caption_adherence, frechet_audio_distance, inception_score
from course_lib.train import TrainConfig, Trainer, save_weights

SMALL = AttributeClassifierConfig(channels=(8, 16), embedding_dim=32)


@pytest.fixture(scope="module")
def held_out():
    return held_out_clips(64)


@pytest.fixture(scope="module")
def shipped():
    return load_tiny_attribute_classifier("cpu")


# ------------------------------------------------------------------------------- inception score
def test_inception_score_by_hand():
    k = 4
    confident_and_balanced = torch.eye(k).repeat(5, 1)  # every clip certain, every class equally often
    assert inception_score(confident_and_balanced) == pytest.approx(k)
    same_for_all = torch.tensor([[0.7, 0.1, 0.1, 0.1]]).repeat(20, 1)
    assert inception_score(same_for_all) == pytest.approx(1.0)  # no diversity at all
    # two clips, two classes: p(y|x) = (0.9, 0.1) and (0.5, 0.5), so p(y) = (0.7, 0.3)
    p = torch.tensor([[0.9, 0.1], [0.5, 0.5]])
    kl = [sum(pi * math.log(pi / mi) for pi, mi in zip(row, (0.7, 0.3), strict=True)) for row in p.tolist()]
    assert inception_score(p) == pytest.approx(math.exp(sum(kl) / 2))
    assert inception_score({"a": p, "b": same_for_all}) == pytest.approx({"a": math.exp(sum(kl) / 2), "b": 1.0})
    assert inception_score(confident_and_balanced, splits=5) == pytest.approx(k)  # each split of 4 is balanced too
    with pytest.raises(ConfigError, match="probabilities"):
        inception_score(torch.ones(3, 2))


# ---------------------------------------------------------------------------------- adherence
class FixedClassifier:
    """Stands in for AttributeClassifier: predicts given labels."""

    heads = dict.fromkeys(ATTRIBUTE_CLASSES)

    def __init__(self, predictions: dict[str, list[int]]) -> None:
        self.predictions = {name: torch.tensor(v) for name, v in predictions.items()}

    def predict(self, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.predictions


def test_caption_adherence_scores_only_the_attributes_asked_for():
    captions = [
        "a slow FM-bell melody in C major with drums",  # instrument 1, tempo 0, drums 1
        "a fast plucked-string tune",  # instrument 2, tempo 2 (no word about drums)
    ]
    judge = FixedClassifier({"instrument": [1, 0], "tempo_class": [0, 2], "drums": [0, 1]})
    result = caption_adherence(judge, torch.zeros(2, 100), captions)  # type: ignore[arg-type]
    assert result["instrument"] == 0.5 and result["tempo_class"] == 1.0 and result["drums"] == 0.0
    assert result["mean"] == pytest.approx(3 / 5)  # 2 + 1 of 3 + 2 requested attributes right
    assert result["all"] == 0.0
    with pytest.raises(ConfigError, match="one caption per clip"):
        caption_adherence(judge, torch.zeros(3, 100), captions)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="names any"):
        caption_adherence(judge, torch.zeros(1, 100), ["a nice tune"])  # type: ignore[arg-type]


# --------------------------------------------------------------------------------- classifier
def test_onset_autocorrelation_matches_the_direct_sum_and_peaks_at_the_beat_period():
    log_mel = torch.randn(2, 8, 90, generator=torch.Generator().manual_seed(0))
    acf = onset_autocorrelation(log_mel, (3, 40))
    onset = (log_mel[..., 1:] - log_mel[..., :-1]).clamp_min(0).mean(dim=1)  # (2, 89)
    onset = (onset - onset.mean(1, keepdim=True)) / onset.std(1, keepdim=True)
    direct = torch.stack([(onset[:, lag:] * onset[:, :-lag]).mean(1) for lag in range(3, 41)], dim=1)
    torch.testing.assert_close(acf, direct, atol=1e-5, rtol=1e-4)
    assert onset_autocorrelation(log_mel, (3, 120))[:, 89 - 3 :].abs().max() == 0  # beyond the clip: 0
    clicks = torch.full((1, 8, 200), -10.0)
    clicks[..., ::25] = 0.0  # an onset every 25 frames (0.25 s at hop 160)
    acf = onset_autocorrelation(clicks, (10, 60))
    assert acf.argmax().item() + 10 in (25, 50)  # the period or its double, never in between
    assert acf[0, 25 - 10] > 0.5 and acf[0, 37 - 10] < 0


def test_classifier_shapes_and_input_checks():
    torch.manual_seed(0)
    model = AttributeClassifier(SMALL).eval()
    audio = 0.1 * torch.randn(3, 32_000)
    assert model.embed(audio).shape == (3, 32 + 32)  # the CNN's hidden layer and the tempo head's
    probabilities = model.probabilities(audio)
    assert {name: p.shape[1] for name, p in probabilities.items()} == {n: len(c) for n, c in ATTRIBUTE_CLASSES.items()}
    assert all(torch.allclose(p.sum(1), torch.ones(3)) for p in probabilities.values())
    assert model.predict(audio[0])["key"].shape == (1,)
    with pytest.raises(AudioInputError, match="at least"):
        model.embed(torch.zeros(2, 200))
    with pytest.raises(ConfigError, match="eval"):
        model.train().embed(audio)
    with pytest.raises(ConfigError, match="unknown attribute"):
        AttributeClassifier(AttributeClassifierConfig(attributes=("genre",)))


def test_a_short_training_run_lowers_the_loss(tmp_path):
    torch.manual_seed(0)
    config = AttributeClassifierConfig(channels=(8, 16), embedding_dim=32, attributes=("instrument", "drums"))
    model = AttributeClassifier(config)
    clips = training_clips(48)
    mels = model.log_mel(clips.audio).exp()  # (48, 64, 201) mel magnitudes
    plan = Recipe(config, steps=40, n_clips=48, batch_size=16, lr=3e-3)
    batches = classifier_batches(model, mels, clips.labels, plan)
    torch.testing.assert_close(batches(5)["log_mel"], batches(5)["log_mel"])  # a batch depends only on its step
    train_config = TrainConfig(steps=40, lr=3e-3, log_every=10, progress=False)
    history = Trainer(model, classifier_step, train_config, device="cpu").fit(batches)
    assert history[0]["loss"] > 0.6 * (math.log(3) + math.log(2))  # starts near chance
    assert history[-1]["loss"] < 0.5 * history[0]["loss"], [h["loss"] for h in history]
    path = save_weights(tmp_path / "clf.safetensors", model.eval(), {"note": "test"})
    loaded = load_attribute_classifier(path, "cpu")
    torch.testing.assert_close(loaded.embed(clips.audio[:2]), model.embed(clips.audio[:2]))
    with pytest.raises(CheckpointError, match=r"python -m course_lib\.attributes\.train "):
        load_attribute_classifier(tmp_path / "missing.safetensors")


# ---------------------------------------------------------------------------- shipped weights
def test_shipped_classifier_recognises_held_out_combinations(shipped, held_out):
    accuracy = shipped.accuracy(held_out.audio, held_out.labels)
    # chance: 1/3 instrument, tempo, dynamics; 1/2 drums, mode; 1/12 key
    assert accuracy["instrument"] > 0.9 and accuracy["drums"] > 0.9, accuracy
    assert accuracy["tempo_class"] > 0.6 and accuracy["dynamics"] > 0.6, accuracy
    assert accuracy["key"] > 0.25, accuracy
    adherence = caption_adherence(shipped, held_out.audio, held_out.captions)
    assert adherence["mean"] > 0.8, adherence  # real clips follow their captions: the ceiling for generators
    diversity = inception_score(shipped.probabilities(held_out.audio))
    assert diversity["instrument"] > 2.0  # 3 instruments, recognised with confidence


def test_shipped_embedding_gives_a_small_fad_for_real_music_and_a_large_one_for_a_mismatch(shipped, held_out):
    reference = shipped.embed(validation_clips(64).audio)  # real clips of the training combinations
    other_real = shipped.embed(validation_clips(128).audio[64:])
    noise = shipped.embed(0.1 * torch.randn(64, 32_000, generator=torch.Generator().manual_seed(0)))
    same = frechet_audio_distance(reference, other_real)  # > 0: 64 clips in 128 dimensions (the sample-size bias)
    assert frechet_audio_distance(reference, noise) > 5 * same  # about 8x when shipped
    assert frechet_audio_distance(reference, shipped.embed(held_out.audio)) > same  # unseen combinations differ


def test_shipped_classifier_file_is_small_and_says_how_it_was_made(shipped):
    assert TINY_ATTRIBUTE_CLASSIFIER.stat().st_size < 5 * 2**20
    # The file records the command that made it, under its name then (since course_lib.attributes.train):
    # the header is history, left as it was written (its checksum covers the tensors, which did not change).
    assert shipped.metadata["recipe"] == "python -m course_lib.metrics.train_attributes --scale tiny"
    assert shipped.metadata["threads"] == 1 and shipped.metadata["held_out"]["instrument"] > 0.9
