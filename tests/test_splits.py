"""Tests of the held-out attribute combinations (course_lib.data.splits) and of reading captions back (caption_attributes)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from course_lib.data import SynthMusic
from course_lib.data.captions import DYNAMICS_WORDS, caption_attributes, make_caption
from course_lib.data.music_theory import TEMPO_CLASSES
from course_lib.data.splits import (
    HELD_OUT_COMBINATIONS,
    combination,
    held_out_captions,
    held_out_clips,
    is_held_out,
    training_clips,
    training_dataset,
    training_indices,
    validation_clips,
)
from course_lib.data.timbres import INSTRUMENTS
from course_lib.errors import ConfigError


@pytest.fixture(scope="module")
def clips():
    """400 clips of two seeds, rendered once (0.5 s: their attributes and captions are what matters)."""
    return [SynthMusic(n_clips=200, seconds=0.5, seed=seed)[i] for seed in (0, 7) for i in range(200)]


def test_caption_attributes_reads_back_every_label_a_generated_caption_names(clips):
    named = {"dynamics": 0}
    for clip in clips:
        found = caption_attributes(clip.caption)
        # instrument, tempo class (word or BPM), drums, key and mode are in every template
        assert {"instrument", "tempo_class", "drums", "key", "mode"} <= found.keys(), clip.caption
        assert all(found[name] == clip.labels[name] for name in found), (clip.caption, found, clip.labels)
        named["dynamics"] += "dynamics" in found
    assert named["dynamics"] > len(clips) // 2  # two of the three templates name the dynamics


def test_caption_attributes_over_every_wording_of_every_attribute():
    rng = np.random.default_rng(0)
    for instrument, tempo, dynamics, drums in itertools.product(INSTRUMENTS, TEMPO_CLASSES, DYNAMICS_WORDS, (0, 1)):
        bpm = {"slow": 72.0, "medium": 104.0, "fast": 141.0}[tempo]
        for _ in range(6):  # several templates and synonyms
            caption = make_caption(rng, instrument, tempo, bpm, "F# minor", dynamics, "crescendo", bool(drums))
            found = caption_attributes(caption)
            assert found["instrument"] == INSTRUMENTS.index(instrument), caption
            assert found["tempo_class"] == TEMPO_CLASSES.index(tempo), caption
            assert found["drums"] == drums, caption
            assert (found["key"], found["mode"]) == (6, 1), caption
            assert found.get("dynamics", tuple(DYNAMICS_WORDS).index(dynamics)) == tuple(DYNAMICS_WORDS).index(dynamics)


def test_caption_attributes_is_lenient_about_spelling_and_strict_about_contradictions():
    assert caption_attributes("Loud FM bell in D# minor") == {"instrument": 1, "key": 3, "mode": 1, "dynamics": 2}
    assert caption_attributes("a medium-loud plucked string tune at 100 BPM, no drums") == {
        "instrument": 2, "tempo_class": 1, "drums": 0, "dynamics": 1,
    }  # fmt: skip
    assert caption_attributes("slow, then fast") == {}  # contradicting words: the attribute is left out
    assert caption_attributes("getting louder") == {}  # a dynamics *shape*, not the level
    assert caption_attributes("") == {}
    with pytest.raises(ConfigError, match="str"):
        caption_attributes(["a list"])  # type: ignore[arg-type]


def test_held_out_triples_leave_every_value_and_every_pair_in_training():
    triples = set(itertools.product(INSTRUMENTS, TEMPO_CLASSES, (False, True)))
    held = set(HELD_OUT_COMBINATIONS)
    assert held < triples and len(held) == 3
    kept = triples - held
    for i, j in itertools.combinations(range(3), 2):  # every pair of attribute values is still heard
        assert {(t[i], t[j]) for t in kept} == {(t[i], t[j]) for t in triples}


def test_training_clips_never_hold_out_combinations_and_held_out_clips_only_do(clips):
    assert sum(is_held_out(c) for c in clips) == pytest.approx(len(clips) / 6, rel=0.35)  # 3 of 18 triples
    train, held, valid = (
        training_clips(40, seconds=0.5),
        held_out_clips(20, seconds=0.5),
        validation_clips(20, seconds=0.5),
    )
    assert not any(is_held_out(c) for c in train.clips + valid.clips)
    assert all(is_held_out(c) for c in held.clips)
    assert all(is_held_out(caption) for caption in held.captions)  # the caption says it too
    assert not any(is_held_out(caption) for caption in train.captions)
    assert {c.seed for c in held.clips} == {1} and {c.seed for c in train.clips} == {0}


def test_splits_are_deterministic_prefixes():
    assert training_indices(30) == training_indices(60)[:30]
    small, large = training_clips(5, seconds=0.5), training_clips(12, seconds=0.5)
    assert small.captions == large.captions[:5]
    assert held_out_captions(6, seconds=0.5) == held_out_clips(6, seconds=0.5).captions
    dataset = training_dataset(10, seconds=0.5)
    assert len(dataset) == 10 and dataset[3].caption == large.captions[3]
    assert not set(training_indices(50)) & set(training_indices(10, held_out=True))


def test_is_held_out_on_labels_and_partial_captions():
    assert is_held_out({"instrument": 1, "tempo_class": 0, "drums": 1})  # fm_bell, slow, drums
    assert not is_held_out({"instrument": 1, "tempo_class": 0, "drums": 0})
    assert is_held_out("a slow FM-bell melody in C major with drums")
    assert not is_held_out("a slow FM-bell melody in C major")  # no word about drums: seen music fits it too
    assert combination({"instrument": 2, "tempo_class": 1, "drums": 0, "key": 3}) == (2, 1, 0)
    with pytest.raises(ConfigError, match="drums"):
        is_held_out({"instrument": 1, "tempo_class": 0})
    with pytest.raises(ConfigError, match="positive"):
        training_indices(0)
