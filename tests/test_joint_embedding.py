"""Tests of the joint audio-text embedding: tokenizer, InfoNCE loss, towers, retrieval measures, training, shipped weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from course_lib.data import SynthMusic
from course_lib.data.splits import held_out_clips, training_clips, validation_clips
from course_lib.errors import AudioInputError, CheckpointError, ConfigError
from course_lib.joint_embedding import (
    CaptionTokenizer,
    JointEmbedding,
    JointEmbeddingConfig,
    attribute_retrieval_accuracy,
    contrastive_loss,
    embedding_gap,
    load_joint_embedding,
    load_tiny_joint_embedding,
    retrieval_accuracy,
    zero_shot_accuracy,
    zero_shot_predictions,
)
from course_lib.joint_embedding.model import TINY_JOINT_EMBEDDING
from course_lib.joint_embedding.retrieval import ZERO_SHOT_PROMPTS
from course_lib.joint_embedding.train import Recipe, contrastive_batches, contrastive_step, log_mels_of, recaption
from course_lib.train import TrainConfig, Trainer, save_weights

SMALL = JointEmbeddingConfig(audio_channels=32, audio_layers=1, text_channels=32, text_layers=1, heads=2, dim=16)


@pytest.fixture(scope="module")
def held_out():
    return held_out_clips(48)


@pytest.fixture(scope="module")
def shipped():
    return load_tiny_joint_embedding("cpu")


# ------------------------------------------------------------------------------------- tokenizer
def test_the_vocabulary_covers_every_caption_synthmusic_writes():
    tokenizer = CaptionTokenizer()
    dataset = SynthMusic(n_clips=300, seconds=0.5, seed=11)
    rng = np.random.default_rng(0)
    captions = [dataset[i].caption for i in range(300)] + [recaption(dataset[i], rng) for i in range(300)]
    ids, mask = tokenizer(captions)
    assert not (ids == tokenizer.unk_id).any()
    assert (ids[:, 0] == tokenizer.bos_id).all() and mask.sum(1).max() < tokenizer.max_tokens


def test_tokenizer_normalises_spelling_splits_digits_and_marks_unknown_words():
    tokenizer = CaptionTokenizer(max_tokens=8)
    assert tokenizer.encode("FM-bell") == tokenizer.encode("fm bell") == tokenizer.encode("Fm_Bell")
    assert tokenizer.encode("in D# minor") == tokenizer.encode("in Eb minor")
    assert tokenizer.decode(tokenizer.encode("at 144 BPM")) == "[BOS] at 1 4 4 bpm"
    assert tokenizer.encode("a banjo")[-1] == tokenizer.unk_id
    assert tokenizer.encode("") == [tokenizer.bos_id]
    assert len(tokenizer.encode("slow " * 20)) == 8  # cut at max_tokens
    ids, mask = tokenizer(["slow", "a slow fast tune"])
    assert ids.shape == mask.shape == (2, 5) and mask.sum().item() == 2 + 5 and ids[0, 2:].eq(0).all()
    with pytest.raises(ConfigError, match="strings"):
        tokenizer([3])  # type: ignore[list-item]


# ------------------------------------------------------------------------------------------ loss
def test_contrastive_loss_is_the_symmetric_infonce_by_hand():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 0.3], [1.5, -0.5, 0.2]])
    rows = -np.mean([math.log(math.exp(logits[i, i]) / logits[i].exp().sum()) for i in range(3)])
    cols = -np.mean([math.log(math.exp(logits[i, i]) / logits[:, i].exp().sum()) for i in range(3)])
    assert contrastive_loss(logits).item() == pytest.approx((rows + cols) / 2, rel=1e-6)
    assert contrastive_loss(torch.zeros(8, 8)).item() == pytest.approx(math.log(8))  # no information: log B
    assert contrastive_loss(20 * torch.eye(8)).item() < 1e-6  # every pair found


# ---------------------------------------------------------------------------------------- towers
def test_embeddings_are_unit_vectors_of_dim_d_for_any_input_shape():
    torch.manual_seed(0)
    model = JointEmbedding(SMALL).eval()
    audio = 0.1 * torch.randn(3, 32_000)
    a = model.embed_audio(audio)
    assert a.shape == (3, 16) and torch.allclose(a.norm(dim=1), torch.ones(3), atol=1e-5)
    torch.testing.assert_close(model.embed_audio(audio[1]), a[1:2], atol=1e-5, rtol=1e-4)  # (T,) is one clip
    torch.testing.assert_close(model.embed_audio(audio[:, None], batch_size=2), a, atol=1e-5, rtol=1e-4)
    assert model.audio_frames(audio).shape == (3, 50, 32)  # 2 s at 25 frames per second
    assert model.frame_rate == 25.0 and model.dim == 16 and model.sample_rate == 16_000
    assert model.embed_audio(0.1 * torch.randn(2, 24_000)).shape == (2, 16)  # other lengths too
    t = model.embed_text(["a slow FM-bell melody", "a banjo solo", ""])
    assert t.shape == (3, 16) and torch.allclose(t.norm(dim=1), torch.ones(3), atol=1e-5)
    torch.testing.assert_close(model.embed_text("a slow FM-bell melody"), t[:1])
    assert not a.requires_grad and not t.requires_grad


def test_bad_audio_gets_a_course_error():
    model = JointEmbedding(SMALL).eval()
    with pytest.raises(AudioInputError, match="too short"):
        model.embed_audio(torch.zeros(2, 500))
    with pytest.raises(AudioInputError, match="mono"):
        model.embed_audio(torch.zeros(2, 2, 16_000))
    with pytest.raises(AudioInputError, match="NaN"):
        model.embed_audio(torch.full((1, 16_000), float("nan")))


def test_temperature_is_learnt_and_capped():
    model = JointEmbedding(SMALL)
    assert 1 / model.logit_scale.item() == pytest.approx(0.07, rel=1e-4)
    ids, mask = model.tokenizer(["a", "b"])
    contrastive_loss(model(torch.full((2, 64, 50), -5.0), ids, mask)).backward()
    assert model.log_scale.grad is not None and model.log_scale.grad.abs() > 0
    with torch.no_grad():
        model.log_scale.fill_(10.0)
    assert model.logit_scale.item() == 100.0


# ------------------------------------------------------------------------------------- retrieval
class FixedEmbedding(torch.nn.Module):
    """Stands in for JointEmbedding: clip i has embedding e_i; captions are looked up in a table."""

    def __init__(self, audio: torch.Tensor, text: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.audio, self.text = audio, text

    def embed_audio(self, audio: torch.Tensor) -> torch.Tensor:
        return self.audio[audio[:, 0].long()]

    def embed_text(self, captions: list[str]) -> torch.Tensor:
        return torch.stack([self.text[c] for c in captions])


def test_retrieval_accuracy_and_gap_by_hand():
    eye = torch.eye(3)
    # caption "c0" points at clip 0, "c1" at clip 2 (wrong, clip 1 second), "c2" at clip 2
    text = {"c0": eye[0], "c1": torch.tensor([0.0, 0.6, 0.8]), "c2": eye[2]}
    model = FixedEmbedding(eye, text)
    audio = torch.arange(3.0)[:, None].repeat(1, 4)  # clip i is recognised by its first sample
    captions = ["c0", "c1", "c2"]
    assert retrieval_accuracy(model, audio, captions, k=1) == pytest.approx(2 / 3)
    assert retrieval_accuracy(model, audio, captions, k=2) == pytest.approx(1.0)
    # from the clips' side every clip's best caption is its own (clip 1's column is [0, 0.6, 0])
    assert retrieval_accuracy(model, audio, captions, k=1, direction="audio_to_text") == pytest.approx(1.0)
    gap = embedding_gap(model, audio, captions)
    assert gap["matching"] == pytest.approx((1 + 0.6 + 1) / 3)
    assert gap["non_matching"] == pytest.approx((0 + 0 + 0 + 0.8 + 0 + 0) / 6)
    with pytest.raises(ConfigError, match="caption i"):
        retrieval_accuracy(model, audio, captions[:2])


def test_attribute_retrieval_scores_the_attributes_a_caption_names():
    eye = torch.eye(2)
    text = {"a slow FM-bell melody": eye[0], "a fast FM-bell melody, no drums": eye[0]}
    model = FixedEmbedding(eye, text)
    audio = torch.arange(2.0)[:, None].repeat(1, 4)
    labels = {"instrument": torch.tensor([1, 2]), "tempo_class": torch.tensor([0, 2]), "drums": torch.tensor([1, 0])}
    result = attribute_retrieval_accuracy(model, audio, labels, list(text))  # both retrieve clip 0
    assert result == {"instrument": 1.0, "tempo_class": 0.5, "drums": 0.0, "all": 0.5}


def test_zero_shot_gives_each_clip_the_class_of_its_nearest_prompt():
    prompts = [p for group in ZERO_SHOT_PROMPTS.values() for p in group]
    vectors = torch.nn.functional.normalize(
        torch.randn(len(prompts), 64, generator=torch.Generator().manual_seed(0)), dim=1
    )
    table = dict(zip(prompts, vectors, strict=True))
    # clip 0: plucked string, fast, drums, loud, D minor; clip 1: additive, slow, no drums, soft, Ab major
    wanted = [
        ("plucked-string melody", "a fast melody", "a melody with drums", "loud tune", "a melody in D minor"),
        ("additive-synth melody", "a slow melody", "a melody without drums", "soft tune", "a melody in Ab major"),
    ]
    clips = torch.nn.functional.normalize(torch.stack([sum(table[p] for p in row) for row in wanted]), dim=1)
    model = FixedEmbedding(clips, table)
    audio = torch.arange(2.0)[:, None].repeat(1, 4)
    predicted = zero_shot_predictions(model, audio)
    expected = {
        "instrument": [2, 0],
        "tempo_class": [2, 0],
        "drums": [1, 0],
        "dynamics": [2, 0],
        "key": [2, 8],
        "mode": [1, 0],
    }
    assert {name: value.tolist() for name, value in predicted.items()} == expected
    labels = {name: torch.tensor(value) for name, value in expected.items()}
    labels["key"] = torch.tensor([2, 9])
    accuracy = zero_shot_accuracy(model, audio, labels)
    assert accuracy["key"] == 0.5 and accuracy["instrument"] == 1.0


# -------------------------------------------------------------------------------------- training
def test_a_short_training_run_learns_to_match_clips_and_captions():
    torch.manual_seed(0)
    model = JointEmbedding(SMALL)
    clips = training_clips(48)
    plan = Recipe(SMALL, steps=60, n_clips=48, batch_size=16, lr=3e-3)
    batches = contrastive_batches(model, clips, log_mels_of(model, clips.audio), plan)
    first, again = batches(3), batches(3)
    torch.testing.assert_close(first["log_mel"], again["log_mel"])  # a batch depends only on its step
    assert first["log_mel"].shape[:2] == (16, 64) and 150 <= first["log_mel"].shape[2] <= 201
    config = TrainConfig(steps=60, lr=3e-3, log_every=10, progress=False)
    history = Trainer(model, contrastive_step, config, device="cpu").fit(batches)
    assert history[0]["loss"] > 0.8 * math.log(16)  # starts near chance
    assert history[-1]["loss"] < 0.6 * history[0]["loss"], [h["loss"] for h in history]


def test_weights_round_trip_and_missing_files_get_a_course_error(tmp_path):
    torch.manual_seed(1)
    model = JointEmbedding(SMALL).eval()
    path = save_weights(tmp_path / "joint.safetensors", model, {"note": "test"})
    loaded = load_joint_embedding(path, "cpu")
    assert loaded.metadata == {"note": "test"} and not loaded.training
    torch.testing.assert_close(loaded.embed_text(["a slow tune"]), model.embed_text(["a slow tune"]))
    with pytest.raises(CheckpointError, match="joint_embedding.train"):
        load_joint_embedding(tmp_path / "missing.safetensors")


# ------------------------------------------------------------------------------- shipped weights
def test_shipped_embedding_retrieves_held_out_clips_from_their_captions(shipped, held_out):
    audio, captions = held_out.audio, held_out.captions
    chance = 1 / len(captions)
    assert retrieval_accuracy(shipped, audio, captions, k=1) > 15 * chance  # about 30x chance when shipped
    assert retrieval_accuracy(shipped, audio, captions, k=5) > 0.6
    seen = validation_clips(
        48
    )  # search seen combinations too: among held-out clips the instrument gives the tempo away
    pool = torch.cat([audio, seen.audio])
    labels = {name: torch.cat([held_out.labels[name], seen.labels[name]]) for name in held_out.labels}
    attributes = attribute_retrieval_accuracy(shipped, pool, labels, captions)
    assert attributes["all"] > 0.8, attributes  # the retrieved clip has the caption's instrument, tempo, drums
    gap = embedding_gap(shipped, audio, captions)
    assert gap["matching"] > 0.6 and gap["matching"] - gap["non_matching"] > 0.5, gap


def test_shipped_embedding_classifies_attributes_zero_shot(shipped, held_out):
    accuracy = zero_shot_accuracy(shipped, held_out.audio, held_out.labels)
    # chance: 1/3 instrument, tempo class, dynamics; 1/2 drums
    assert accuracy["instrument"] > 0.9 and accuracy["drums"] > 0.9, accuracy
    assert accuracy["tempo_class"] > 0.6 and accuracy["dynamics"] > 0.6, accuracy


def test_shipped_embedding_file_is_small_and_says_how_it_was_made(shipped):
    assert TINY_JOINT_EMBEDDING.stat().st_size < 5 * 2**20
    assert shipped.metadata["recipe"].startswith("python -m course_lib.joint_embedding.train")
    assert shipped.metadata["threads"] == 1 and shipped.metadata["train_seconds"] > 0
    assert shipped.metadata["held_out"]["text_to_audio_r1"] > 0.2
