"""Tests of SynthMusic: determinism, what a clip holds, batching, and argument checks.

How its controls agree with its metadata is tested in test_controls.py."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from course_lib.control import num_frames
from course_lib.data import Clip, ClipBatch, Note, SynthMusic
from course_lib.data.music_theory import BASS_RANGE, CHORD_RANGE, MELODY_RANGE
from course_lib.data.synth_music import DYNAMICS_PEAK
from course_lib.errors import ConfigError

N = 12


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small tensors: one thread is fastest, and on a busy 2-core machine two threads are ~40× slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def dataset(one_thread) -> SynthMusic:
    return SynthMusic(n_clips=N, seconds=2.0, seed=0)


def same_clip(a: Clip, b: Clip) -> bool:
    return (
        torch.equal(a.audio, b.audio)
        and a.notes == b.notes
        and (a.caption, a.instrument, a.tempo, a.key, a.mode, a.drums, a.dynamics)
        == (b.caption, b.instrument, b.tempo, b.key, b.mode, b.drums, b.dynamics)
    )


def test_same_seed_same_clips_other_seed_other_clips(dataset):
    again = SynthMusic(n_clips=N, seconds=2.0, seed=0)
    assert all(same_clip(dataset[i], again[i]) for i in range(N))
    other = SynthMusic(n_clips=N, seconds=2.0, seed=1)
    assert not any(torch.equal(dataset[i].audio, other[i].audio) for i in range(N))
    assert len({clip.caption for clip in (dataset[i] for i in range(N))}) > N // 2  # clips differ too


def test_a_clip_depends_only_on_seed_and_index(dataset):
    bigger = SynthMusic(n_clips=500, seconds=2.0, seed=0)
    assert same_clip(bigger[7], dataset[7])  # n_clips does not matter
    _ = [bigger[i] for i in (400, 3, 250)]  # nor which clips were drawn before
    assert same_clip(bigger[7], dataset[7])
    assert same_clip(dataset[-1], dataset[N - 1])


def test_a_clip_holds_audio_score_metadata_and_caption(dataset):
    for i in range(N):
        clip = dataset[i]
        assert clip.audio.dtype == torch.float32 and clip.audio.shape == (32_000,)
        assert torch.isfinite(clip.audio).all()
        assert clip.audio.abs().max().item() == pytest.approx(DYNAMICS_PEAK[clip.dynamics], rel=1e-5)
        assert clip.sample_rate == 16_000 and clip.seconds == 2.0
        assert clip.instrument in SynthMusic.INSTRUMENTS and clip.mode in SynthMusic.MODES
        assert 60 <= clip.tempo <= 160
        onsets = [note.onset for note in clip.notes]
        assert onsets == sorted(onsets) and onsets[0] == 0.0
        assert all(0 <= note.onset < 2.0 and note.onset + note.duration <= 2.0 + 1e-6 for note in clip.notes)
        assert all(0 < note.velocity <= 1 for note in clip.notes)
        ranges = {"melody": MELODY_RANGE, "chord": CHORD_RANGE, "bass": BASS_RANGE}
        for note in clip.notes:
            if note.voice in ranges:
                low, high = ranges[note.voice]
                assert low <= note.pitch <= high
        assert any(note.voice == "drums" for note in clip.notes) == clip.drums
        assert f"{clip.key} {clip.mode}" in clip.caption
        assert ("without drums" in clip.caption or "no drums" in clip.caption) != clip.drums
        assert clip.labels["instrument"] == SynthMusic.INSTRUMENTS.index(clip.instrument)
        assert clip.labels["drums"] == int(clip.drums)
        assert all(isinstance(value, int) for value in clip.labels.values())


def test_melody_notes_are_in_the_key(dataset):
    scales = {"major": {0, 2, 4, 5, 7, 9, 11}, "minor": {0, 2, 3, 5, 7, 8, 10}}
    names = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
    for i in range(N):
        clip = dataset[i]
        tonic = names.index(clip.key)
        pitched = [note for note in clip.notes if note.voice != "drums"]
        assert all((note.pitch - tonic) % 12 in scales[clip.mode] for note in pitched)


def test_the_captions_vary_in_wording_and_name_the_instrument(dataset):
    words = {"additive": "additive-synth", "fm_bell": "FM-bell", "plucked_string": "plucked-string"}
    captions = [SynthMusic(n_clips=30, seed=3)[i] for i in range(30)]
    assert all(words[clip.instrument] in clip.caption for clip in captions)
    assert len({clip.caption.split(" ")[0] for clip in captions}) >= 3  # several templates


def test_instruments_can_be_chosen():
    plucked = SynthMusic(n_clips=6, instruments=["plucked_string"], seed=2)
    assert {plucked[i].instrument for i in range(6)} == {"plucked_string"}
    assert SynthMusic(n_clips=2, instruments="fm_bell")[0].instrument == "fm_bell"


def test_batch_and_dataloader_collate_clips(dataset):
    batch = dataset.batch(4, start=2)
    assert isinstance(batch, ClipBatch) and len(batch) == 4
    assert batch.audio.shape == (4, 32_000)
    assert torch.equal(batch.audio[0], dataset[2].audio)
    assert batch.captions[1] == dataset[3].caption
    assert batch.labels["instrument"].shape == (4,) and batch.labels["instrument"].dtype == torch.int64
    frames = num_frames(32_000)
    assert batch.controls["melody"].shape == (4, 12, frames)
    assert batch.controls["loudness_db"].shape == (4, frames)
    assert batch.controls["onsets"].shape == batch.controls["beats"].shape == (4, frames)
    assert len(batch.controls["beat_times"]) == 4

    loader = DataLoader(dataset, batch_size=5, collate_fn=SynthMusic.collate)
    sizes = [len(b) for b in loader]
    assert sizes == [5, 5, 2]


def test_other_sample_rates_and_lengths():
    clip = SynthMusic(n_clips=1, seconds=1.5, sample_rate=22_050)[0]
    assert clip.audio.shape == (round(1.5 * 22_050),) and clip.sample_rate == 22_050
    assert torch.isfinite(clip.audio).all()
    assert clip.controls["melody"].shape == (12, num_frames(len(clip.audio), clip.hop_length))


def test_note_knows_its_pitch_class():
    assert Note(onset=0.0, duration=0.5, pitch=69, velocity=0.8, voice="melody").pitch_class == 9


@pytest.mark.parametrize(
    ("kwargs", "fix"),
    [
        ({"seconds": -1.0}, "seconds=2.0"),
        ({"seconds": 0}, "seconds=2.0"),
        ({"instruments": ["banjo"]}, "choose from additive, fm_bell, plucked_string"),
        ({"instruments": []}, "choose from"),
        ({"sample_rate": 0}, "sample_rate=16000"),
        ({"sample_rate": -16000}, "sample_rate=16000"),
        ({"sample_rate": 16000.5}, "sample_rate=16000"),
        ({"n_clips": 0}, "n_clips=1000"),
        ({"seed": -1}, "seed=0"),
        ({"drums_probability": 1.5}, "[0, 1]"),
    ],
)
def test_bad_arguments_raise_config_errors_that_name_the_fix(kwargs, fix):
    with pytest.raises(ConfigError) as error:
        SynthMusic(**kwargs)
    assert fix in str(error.value)


def test_bad_indices(dataset):
    with pytest.raises(IndexError):
        dataset[N]
    with pytest.raises(ConfigError, match="start \\+ n"):
        dataset.batch(4, start=N - 2)
