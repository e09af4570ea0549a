"""Music ControlNet's adherence metrics, each against a hand computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from course_lib.control import all_controls
from course_lib.data import SynthMusic
from course_lib.errors import ConfigError
from course_lib.metrics.control_adherence import (
    beat_f1,
    control_adherence,
    dynamics_correlation,
    match_events,
    mean_beat_f1,
    melody_accuracy,
)


def one_hot(pitch_classes: list[int]) -> torch.Tensor:
    """(12, F) one-hot columns; -1 gives a silent (all-zero) column."""
    out = torch.zeros(12, len(pitch_classes))
    for frame, pc in enumerate(pitch_classes):
        if pc >= 0:
            out[pc, frame] = 1.0
    return out


def test_melody_accuracy_counts_agreeing_frames_and_skips_silence():
    reference = one_hot([0, 0, 4, 7, -1, 7])  # frame 4 is silent: not scored
    generated = one_hot([0, 2, 4, 5, 9, 7])
    # scored frames 0, 1, 2, 3, 5; agree on 0, 2, 5 -> 3 / 5
    assert melody_accuracy(reference, generated).item() == pytest.approx(0.6)
    mask = torch.tensor([True, True, False, False, True, False])  # frames 0, 1 scored (4 is silent) -> 1 / 2
    assert melody_accuracy(reference, generated, mask).item() == pytest.approx(0.5)
    # a chromagram works as well as a one-hot: only the argmax counts
    chroma = generated * 3.0 + 0.1
    assert melody_accuracy(reference, chroma).item() == pytest.approx(0.6)


def test_melody_accuracy_is_per_clip_and_crops_to_the_shorter():
    reference = torch.stack([one_hot([1, 1, 1]), one_hot([2, 2, 2])])  # (2, 12, 3)
    generated = torch.stack([one_hot([1, 1, 1, 5]), one_hot([2, 3, 3, 5])])  # one frame longer
    torch.testing.assert_close(melody_accuracy(reference, generated), torch.tensor([1.0, 1 / 3]))
    with pytest.raises(ConfigError, match="12"):
        melody_accuracy(torch.zeros(11, 3), torch.zeros(11, 3))


def test_dynamics_correlation_is_pearson():
    a = torch.tensor([-30.0, -20.0, -25.0, -10.0, -12.0])
    b = torch.tensor([1.0, 3.0, 2.0, 7.0, 4.0])
    # by hand: deviations from the means
    da, db = a - a.mean(), b - b.mean()
    expected = (da * db).sum() / (da.pow(2).sum() * db.pow(2).sum()).sqrt()
    assert dynamics_correlation(a, b).item() == pytest.approx(expected.item(), abs=1e-6)
    assert dynamics_correlation(a, b).item() == pytest.approx(np.corrcoef(a.numpy(), b.numpy())[0, 1], abs=1e-6)
    assert dynamics_correlation(a, 2 * a - 7).item() == pytest.approx(1.0)  # invariant to gain and offset
    assert dynamics_correlation(a, -a).item() == pytest.approx(-1.0)
    mask = torch.tensor([True, True, True, False, False])  # the first three frames: r of (-30,-20,-25) and (1,3,2)
    assert dynamics_correlation(a, b, mask).item() == pytest.approx(1.0)


def test_match_events_and_beat_f1_by_hand():
    reference = torch.tensor([0.5, 1.0, 1.5, 2.0])
    estimated = torch.tensor([0.46, 1.08, 1.52, 1.55, 3.0])  # hits: 0.46 (0.04), 1.52; 1.08 is 80 ms late
    assert match_events(reference, estimated) == 2
    precision, recall = 2 / 5, 2 / 4
    assert beat_f1(reference, estimated) == pytest.approx(2 * precision * recall / (precision + recall))
    assert beat_f1(reference, reference + 0.069) == pytest.approx(1.0)  # inside ±70 ms
    assert beat_f1(reference, reference + 0.071) == 0.0
    assert beat_f1(reference, torch.tensor([])) == 0.0  # as mir_eval: nothing estimated scores 0
    assert mean_beat_f1([reference, reference], [reference, torch.tensor([])]) == pytest.approx(0.5)


def test_greedy_matching_is_a_maximum_matching():
    """Against a brute-force bipartite matching (scipy's Hungarian algorithm) on random beat lists."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        reference = np.sort(rng.uniform(0, 2, rng.integers(0, 8)))
        estimated = np.sort(rng.uniform(0, 2, rng.integers(0, 8)))
        hits = np.abs(reference[:, None] - estimated[None, :]) <= 0.07
        rows, cols = linear_sum_assignment(-hits.astype(float)) if hits.size else ([], [])
        best = int(hits[rows, cols].sum()) if hits.size else 0
        assert match_events(torch.from_numpy(reference), torch.from_numpy(estimated)) == best


def test_control_adherence_of_a_clip_against_itself_is_perfect_and_of_another_clip_is_not():
    clips = SynthMusic(n_clips=3, seconds=2.0, seed=0).batch(3)
    controls = all_controls(clips.audio, 16_000, tempo=torch.tensor([c.tempo for c in clips.clips]))
    tempo = torch.tensor([c.tempo for c in clips.clips])
    same = control_adherence(clips.audio, controls, tempo=tempo)
    assert same["melody_accuracy"] == pytest.approx(1.0)
    assert same["dynamics_correlation"] == pytest.approx(1.0)
    assert same["beat_f1"] == pytest.approx(1.0)
    shifted = clips.audio[[1, 2, 0]]  # every clip judged against another clip's controls
    other = control_adherence(shifted, controls, tempo=tempo)
    assert other["melody_accuracy"] < 0.5
    assert other["dynamics_correlation"] < same["dynamics_correlation"]
    for key in ("melody", "loudness_db"):
        assert set(control_adherence(clips.audio, {key: controls[key]})) <= {"melody_accuracy", "dynamics_correlation"}


def test_bad_shapes_are_course_errors():
    with pytest.raises(ConfigError, match="differ"):
        dynamics_correlation(torch.zeros(2, 5), torch.zeros(3, 5))
    with pytest.raises(ConfigError, match="mask"):
        dynamics_correlation(torch.zeros(5), torch.zeros(5), torch.ones(4, dtype=torch.bool))
    with pytest.raises(ConfigError, match="as many"):
        mean_beat_f1([torch.zeros(1)], [])
