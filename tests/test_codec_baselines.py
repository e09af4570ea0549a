"""The traditional baselines: the MDCT reconstructs perfectly, the μ-law/MDCT codec spends its bits as counted, Opus."""

import math

import pytest
import torch

from course_lib.codec.baselines import (
    MuLawMDCTCodec,
    best_mdct_baseline,
    imdct,
    inverse_mu_law,
    mdct,
    mu_law,
    opus_available,
    opus_roundtrip,
)
from course_lib.data import SynthMusic
from course_lib.errors import ConfigError
from course_lib.metrics import multi_scale_mel_distance


def test_mdct_by_hand_and_perfect_reconstruction():
    torch.manual_seed(0)
    x = torch.randn(2, 1000)
    coefficients = mdct(x, hop=8)
    assert coefficients.shape == (2, math.ceil(1000 / 8) + 1, 8)
    # Frame 3 by the definition: X[k] = Σ_n w[n] x[n] cos(π/N (n + 1/2 + N/2)(k + 1/2)), frame j starts at (j - 1) N.
    n, k, hop = torch.arange(16, dtype=torch.float64), torch.arange(8, dtype=torch.float64), 8
    frame = x[0, 2 * hop : 4 * hop].double()
    window = torch.sin(math.pi * (n + 0.5) / 16)
    by_hand = (window * frame * torch.cos(math.pi / hop * (n[:, None] + 0.5 + hop / 2) * (k + 0.5))[:, :].T).sum(-1)
    torch.testing.assert_close(coefficients[0, 3], by_hand)
    torch.testing.assert_close(imdct(coefficients, 1000, hop=8), x, atol=1e-5, rtol=0)  # time-domain aliasing cancels


def test_mu_law_is_inverted():
    u = torch.linspace(-1, 1, 101, dtype=torch.float64)
    torch.testing.assert_close(inverse_mu_law(mu_law(u)), u)
    assert mu_law(torch.tensor(0.01)).item() == pytest.approx(math.log1p(2.55) / math.log1p(255))


def test_the_bit_budget_is_respected_and_more_bits_sound_better():
    codec = MuLawMDCTCodec(6000, bits=2)
    assert codec.bits_per_frame == 6 + 2 * 57 <= 6000 / 50 and codec.bitrate <= 6000
    assert codec.bandwidth_hz == pytest.approx(57 * 25.0)
    audio = SynthMusic(n_clips=2, seconds=1.0, sample_rate=16_000, seed=1).batch(2).audio  # (2, 16000)
    gain, index = codec.encode(audio)
    assert gain.max() < 64 and index.max() < 4 and index.shape[-1] == 57  # 6 + 2 x 57 bits per frame
    distances = [
        multi_scale_mel_distance(audio, MuLawMDCTCodec(b, bits=3).roundtrip(audio)).mean().item()
        for b in (3000, 12_000)
    ]
    assert distances[1] < distances[0]
    with pytest.raises(ConfigError, match="raise the bitrate"):
        MuLawMDCTCodec(300, bits=2)


def test_best_baseline_picks_the_bits_with_the_lowest_score():
    audio = 0.2 * torch.randn(1, 4000)
    codec, rebuilt = best_mdct_baseline(audio, 6000, lambda a, b: multi_scale_mel_distance(a, b).mean())
    scores = {
        bits: multi_scale_mel_distance(audio, MuLawMDCTCodec(6000, bits).roundtrip(audio)).mean().item()
        for bits in (1, 2, 3, 4)
    }
    assert codec.bits == min(scores, key=scores.get) and rebuilt.shape == audio.shape


@pytest.mark.skipif(not opus_available(), reason="opus-tools (opusenc, opusdec) is not installed")
def test_opus_round_trip_keeps_shape_and_improves_with_bitrate():
    t = torch.arange(8000) / 16_000
    audio = (0.3 * torch.sin(2 * math.pi * 330 * t) * torch.linspace(0, 1, 8000))[None]
    low, high = opus_roundtrip(audio, 16_000, 6), opus_roundtrip(audio, 16_000, 24)
    assert low.shape == high.shape == audio.shape
    assert multi_scale_mel_distance(audio, high) < multi_scale_mel_distance(audio, low)
    with pytest.raises(ConfigError, match="6 to 256"):
        opus_roundtrip(audio, 16_000, 3)
