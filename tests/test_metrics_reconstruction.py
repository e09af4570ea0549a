"""course_lib.metrics.reconstruction: each measure against a hand computation or a property of its definition."""

import math

import pytest
import torch

from course_lib.errors import AudioInputError
from course_lib.metrics import (
    log_mel_distance_db,
    multi_scale_mel_distance,
    real_time_factor,
    si_sdr_db,
    snr_db,
    spectral_convergence_db,
)
from course_lib.metrics.reconstruction import MEL_DISTANCE_BANDS, MEL_DISTANCE_WINDOWS


def test_snr_by_hand():
    x = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    assert snr_db(x, 0.9 * x) == pytest.approx(10 * math.log10(4 / (4 * 0.01)))  # 20 dB


def test_si_sdr_by_hand_and_its_invariance_to_scale():
    torch.manual_seed(0)
    x = torch.randn(3, 1000)
    noise = torch.randn(3, 1000)
    estimate = x + 0.1 * noise
    # Hand computation of Le Roux et al.'s eq. 4-5 for clip 0.
    s, e = x[0] - x[0].mean(), estimate[0] - estimate[0].mean()
    target = (e @ s) / (s @ s) * s
    expected = 10 * math.log10(target.pow(2).sum() / (target - e).pow(2).sum())
    got = si_sdr_db(x, estimate)
    assert got.shape == (3,) and got[0].item() == pytest.approx(expected, rel=1e-4)
    torch.testing.assert_close(si_sdr_db(x, 0.2 * estimate), got)  # a quieter copy is as good
    torch.testing.assert_close(si_sdr_db(x, estimate + 3.0), got)  # and an offset does not count
    assert si_sdr_db(x, x).min() > 60  # a perfect copy scores very high


def test_spectral_convergence_and_log_mel_distance():
    x = torch.randn(2, 4000)
    assert spectral_convergence_db(x, 0.9 * x).tolist() == pytest.approx([20 * math.log10(0.1)] * 2, abs=1e-3)
    # Scaling by c shifts every natural-log mel value by log c (where above the floor): 20 log10(c) dB.
    assert log_mel_distance_db(x, 0.5 * x) == pytest.approx(20 * math.log10(2), rel=1e-3)


def test_multi_scale_mel_distance_by_hand_on_a_scaled_signal():
    # For y = c x every log10 mel value above the floor moves by log10 c, at each of the 7 scales.
    torch.manual_seed(0)
    x = torch.randn(2, 8000)
    assert MEL_DISTANCE_WINDOWS == (32, 64, 128, 256, 512, 1024, 2048)
    assert MEL_DISTANCE_BANDS == (5, 10, 20, 40, 80, 160, 320)
    got = multi_scale_mel_distance(x, 0.5 * x)
    assert got.shape == (2,)
    torch.testing.assert_close(got, torch.full((2,), 7 * math.log10(2)), rtol=1e-4, atol=1e-4)
    assert multi_scale_mel_distance(x, x).abs().max() == 0
    assert multi_scale_mel_distance(x[0], 0.5 * x[0]).shape == ()  # one clip in, one number out


def test_multi_scale_mel_distance_grows_with_the_error_and_floors_silence():
    torch.manual_seed(1)
    x = torch.randn(1, 8000)
    small, large = (
        multi_scale_mel_distance(x, x + 0.01 * torch.randn_like(x)),
        multi_scale_mel_distance(x, x + 0.3 * torch.randn_like(x)),
    )
    assert small < large
    silence = torch.zeros(1, 8000)
    assert multi_scale_mel_distance(silence, silence + 1e-9).item() == 0  # both below the 1e-5 floor


def test_real_time_factor_and_bad_inputs():
    assert real_time_factor(10.0, 0.5) == 20.0
    with pytest.raises(AudioInputError, match="positive"):
        real_time_factor(1.0, 0.0)
    with pytest.raises(AudioInputError, match="differ in shape"):
        si_sdr_db(torch.zeros(1, 10), torch.zeros(1, 9))
