"""Tests of course_lib.control: each control on signals with a known answer, then against SynthMusic's
metadata (the score a clip was rendered from). Tolerances are stated next to each check."""

from __future__ import annotations

import math

import pytest
import torch

from course_lib.control import (
    HOP_LENGTH,
    all_controls,
    beat_times,
    chromagram,
    detect_onsets,
    estimate_tempo,
    loudness_db,
    melody_chroma,
    num_frames,
    onset_strength,
)
from course_lib.data import SynthMusic
from course_lib.errors import AudioInputError, ConfigError

SR = 16_000
FRAME_RATE = SR / HOP_LENGTH  # 100 frames/s

# Agreement thresholds against the metadata. Measured on seeds 0–3 (60 two-second clips each): melody
# 99.8–99.9 % of frames overall and ≥ 93.8 % in every clip; onsets precision ≥ 99.7 %, recall ≥ 99.2 %;
# every beat found in 96.7–100 % of the clips. The thresholds leave a margin, so a harmless change to
# the synthesis does not fail them.
MELODY_MIN_PER_CLIP = 0.90  # frames inside a melody note whose top chroma is that note's pitch class
MELODY_MIN_OVERALL = 0.97
ONSET_TOLERANCE_S = 0.05  # the usual onset-evaluation window (MIREX)
ONSET_MIN_PRECISION = ONSET_MIN_RECALL = 0.9
BEAT_TOLERANCE_S = 0.07  # Music ControlNet's beat F1 window
BEAT_MIN_CLIPS = 0.9  # share of clips whose every beat is found within the tolerance


def tone(frequency: float, seconds: float = 1.0, amplitude: float = 0.5) -> torch.Tensor:
    t = torch.arange(round(seconds * SR)) / SR
    return amplitude * torch.sin(2 * math.pi * frequency * t)


def clicks(times: list[float], seconds: float) -> torch.Tensor:
    """Short decaying 1 kHz bursts at ``times``."""
    audio = torch.zeros(round(seconds * SR))
    burst = tone(1000.0, 0.05) * torch.exp(-torch.arange(800) / 160.0)
    for t in times:
        start = round(t * SR)
        audio[start : start + 800] += burst[: len(audio) - start]
    return audio


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small tensors: one thread is fastest, and on a busy 2-core machine two threads are ~40× slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def clips(one_thread) -> list:
    return [SynthMusic(n_clips=60, seed=1)[i] for i in range(60)]


# --- each control on signals with a known answer -------------------------------------------------


def test_shapes_follow_the_frame_grid_for_one_clip_and_a_batch():
    audio = torch.randn(3, 2, 8000) * 0.1
    frames = num_frames(8000, HOP_LENGTH)
    assert frames == 51
    assert melody_chroma(audio, SR).shape == (3, 2, 12, frames)
    assert loudness_db(audio, SR).shape == (3, 2, frames)
    assert onset_strength(audio, SR).shape == (3, 2, frames)
    batched = melody_chroma(audio[0], SR)
    single = melody_chroma(audio[0, 1], SR)
    assert torch.equal(batched[1], single)  # rows are independent
    assert torch.allclose(loudness_db(audio[0], SR)[1], loudness_db(audio[0, 1], SR), atol=1e-4)


def test_melody_is_the_strongest_pitch_class_above_middle_c():
    a4 = melody_chroma(tone(440.0), SR)  # (12, F)
    assert a4.sum(0).eq(1).all()  # one-hot in every frame
    assert a4.argmax(0)[10:-10].eq(9).all()  # 9 = A, away from the edges
    # A loud G3 (196 Hz, below the 261 Hz high-pass) under a soft C5: the melody is C.
    mix = tone(196.0, amplitude=0.8) + tone(523.25, amplitude=0.1)
    assert melody_chroma(mix, SR).argmax(0)[10:-10].eq(0).all()
    assert chromagram(mix, SR)[7].sum() < chromagram(mix, SR)[0].sum()  # G barely counts
    assert melody_chroma(torch.zeros(SR), SR).sum() == 0  # silence: no made-up pitch


def test_loudness_is_the_rms_in_db_and_follows_a_crescendo():
    # A sine of amplitude a has RMS a/√2: 0.5 → −9.03 dB; half the amplitude is 6.02 dB less.
    loud = loudness_db(tone(440.0, 2.0, 0.5), SR)
    soft = loudness_db(tone(440.0, 2.0, 0.25), SR)
    middle = slice(50, 150)
    assert torch.allclose(loud[middle], torch.tensor(-9.03), atol=0.1)
    assert torch.allclose(loud[middle] - soft[middle], torch.tensor(6.02), atol=0.05)
    assert torch.allclose(loudness_db(torch.zeros(SR), SR), torch.tensor(-100.0))  # the floor
    ramp = tone(440.0, 3.0) * torch.linspace(0.05, 1.0, 3 * SR)
    curve = loudness_db(ramp, SR)
    assert (curve[60:-60].diff() > 0).all()  # smoothed over 1 s, the crescendo rises monotonically


def test_onsets_and_tempo_of_a_click_track():
    times = [0.25 + 0.5 * k for k in range(8)]  # 120 BPM
    audio = clicks(times, 4.0)
    found = detect_onsets(audio, SR)
    assert len(found) == len(times)
    assert torch.allclose(found, torch.tensor(times), atol=0.02)  # within two frames
    envelope = onset_strength(audio, SR)
    assert estimate_tempo(envelope, FRAME_RATE).item() == pytest.approx(120.0, rel=0.03)
    beats = beat_times(audio, SR)  # tempo estimated from the audio
    assert torch.allclose(beats, torch.tensor(times), atol=0.03)


def test_batched_onsets_return_one_tensor_per_row():
    audio = torch.stack([clicks([0.2, 0.7], 1.0), clicks([0.4], 1.0)])
    found = detect_onsets(audio, SR)
    assert [len(t) for t in found] == [2, 1]


def test_bad_inputs_raise_course_errors_that_name_the_fix():
    with pytest.raises(AudioInputError, match="NaN"):
        melody_chroma(torch.tensor([0.0, float("nan")] * 1000), SR)
    with pytest.raises(AudioInputError, match="empty"):
        loudness_db(torch.zeros(0), SR)
    with pytest.raises(ConfigError, match="sample_rate"):
        onset_strength(tone(440.0), 0)
    with pytest.raises(ConfigError, match="hop_length"):
        melody_chroma(tone(440.0), SR, hop_length=0)
    with pytest.raises(ConfigError, match="smooth_seconds"):
        loudness_db(tone(440.0), SR, smooth_seconds=-1.0)


# --- controls against SynthMusic's metadata -------------------------------------------------------


def melody_agreement(clip) -> tuple[int, int]:
    """(frames where the top chroma equals the sounding melody note's pitch class, frames with a melody note)."""
    found = clip.controls["melody"].argmax(0)  # (F,)
    centres = torch.arange(found.shape[0]) / FRAME_RATE  # (F,) seconds
    expected = torch.full_like(found, -1)
    for note in clip.notes:
        if note.voice == "melody":
            expected[(centres >= note.onset) & (centres < note.onset + note.duration)] = note.pitch_class
    sounding = expected >= 0
    return int((found[sounding] == expected[sounding]).sum()), int(sounding.sum())


def matches(found: list[float], expected: list[float], tolerance: float) -> int:
    """Pairs found ↔ expected within ``tolerance``, each used at most once (greedy in time order)."""
    unused, hits = list(found), 0
    for t in expected:
        near = [f for f in unused if abs(f - t) <= tolerance]
        if near:
            unused.remove(min(near, key=lambda f: abs(f - t)))
            hits += 1
    return hits


def test_melody_control_recovers_the_melody_notes(clips):
    counts = [melody_agreement(clip) for clip in clips]
    for clip, (agree, total) in zip(clips, counts, strict=True):
        assert total > 0
        assert agree / total >= MELODY_MIN_PER_CLIP, clip
    assert sum(a for a, _ in counts) / sum(t for _, t in counts) >= MELODY_MIN_OVERALL


def test_detected_onsets_match_the_score(clips):
    hits = n_found = n_expected = 0
    for clip in clips:
        found = (clip.controls["onsets"].nonzero().flatten() / FRAME_RATE).tolist()
        expected = clip.onset_times()  # every voice, drums included
        hits += matches(found, expected, ONSET_TOLERANCE_S)
        n_found, n_expected = n_found + len(found), n_expected + len(expected)
    assert hits / n_found >= ONSET_MIN_PRECISION
    assert hits / n_expected >= ONSET_MIN_RECALL


def test_beats_fall_on_the_tempo_grid(clips):
    def all_found(clip) -> bool:
        grid = torch.arange(0.0, clip.seconds, 60.0 / clip.tempo)  # beat 0 is at t = 0
        found = clip.controls["beat_times"]
        return len(found) == len(grid) and bool(((found - grid).abs() <= BEAT_TOLERANCE_S).all())

    assert sum(map(all_found, clips)) / len(clips) >= BEAT_MIN_CLIPS


def test_all_controls_of_a_batch_agree_with_each_clip(clips):
    audio = torch.stack([clip.audio for clip in clips[:4]])  # (4, T)
    batch = all_controls(audio, SR, tempo=torch.tensor([clip.tempo for clip in clips[:4]]))
    for i, clip in enumerate(clips[:4]):
        assert torch.equal(batch["melody"][i], clip.controls["melody"])
        assert torch.allclose(batch["loudness_db"][i], clip.controls["loudness_db"], atol=1e-3)
        assert torch.equal(batch["beat_times"][i], clip.controls["beat_times"])
