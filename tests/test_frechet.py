"""Tests of the Fréchet distance, FAD as the lecture writes it, FAD∞ and the Fréchet mel distance (course_lib.metrics.frechet)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from course_lib.errors import ConfigError
from course_lib.metrics import (
    fad_infinity,
    frame_statistics,
    frechet_audio_distance,
    frechet_distance,
    frechet_mel_distance,
    gaussian_statistics,
    sqrt_psd,
)
from course_lib.metrics.frechet import trace_sqrt_product


def random_covariance(rng: np.random.Generator, dims: int, rank: int | None = None) -> np.ndarray:
    factor = rng.normal(size=(dims, rank or dims))
    return factor @ factor.T / (rank or dims)


def test_frechet_distance_by_hand_for_diagonal_covariances():
    mean = np.zeros(3)
    assert frechet_distance(mean, np.eye(3), mean, np.eye(3)) == pytest.approx(0.0, abs=1e-9)
    # ||m1 - m2||^2 = 3 * 2^2; for diagonal covariances the trace term is sum (sqrt(a) - sqrt(b))^2
    a, b = np.diag([1.0, 4.0, 9.0]), np.diag([4.0, 4.0, 1.0])
    expected = 3 * 2.0**2 + (1 - 2) ** 2 + (2 - 2) ** 2 + (3 - 1) ** 2
    assert frechet_distance(mean, a, mean + 2.0, b) == pytest.approx(expected)


def test_frechet_distance_by_hand_for_commuting_covariances():
    # Σ_a = Q diag(a) Qᵀ and Σ_b = Q diag(b) Qᵀ share eigenvectors, so √(Σ_a Σ_b) = Q diag(√(ab)) Qᵀ
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    a, b = rng.uniform(0.1, 3, 5), rng.uniform(0.1, 3, 5)
    mean_a, mean_b = rng.normal(size=5), rng.normal(size=5)
    expected = np.sum((mean_a - mean_b) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = frechet_distance(mean_a, q @ np.diag(a) @ q.T, mean_b, q @ np.diag(b) @ q.T)
    assert got == pytest.approx(expected, rel=1e-9)


def test_trace_of_the_square_root_agrees_with_scipy_sqrtm():
    rng = np.random.default_rng(2)
    for dims, rank in ((6, None), (10, None), (8, 5)):  # full rank, and rank-deficient (fewer clips than dims)
        a, b = random_covariance(rng, dims, rank), random_covariance(rng, dims)
        reference = np.trace(scipy.linalg.sqrtm(a @ b)).real
        assert trace_sqrt_product(a, b) == pytest.approx(reference, rel=1e-6)
        assert trace_sqrt_product(b, a) == pytest.approx(reference, rel=1e-6)  # tr √(AB) = tr √(BA)
    root = sqrt_psd(a)
    np.testing.assert_allclose(root @ root, a, atol=1e-10)
    np.testing.assert_allclose(root, root.T)


def test_frechet_audio_distance_is_the_lecture_formula_on_embedding_statistics():
    rng = np.random.default_rng(3)
    background, evaluation = rng.normal(size=(300, 4)), rng.normal(1.0, 2.0, size=(200, 4))
    mean_b, cov_b = background.mean(0), np.cov(background.T)
    mean_e, cov_e = evaluation.mean(0), np.cov(evaluation.T)
    expected = np.sum((mean_b - mean_e) ** 2) + np.trace(cov_b + cov_e - 2 * scipy.linalg.sqrtm(cov_b @ cov_e).real)
    assert frechet_audio_distance(background, evaluation) == pytest.approx(expected, rel=1e-8)
    assert frechet_audio_distance(torch.tensor(background), torch.tensor(evaluation)) == pytest.approx(expected)
    assert frechet_audio_distance(background, evaluation) == pytest.approx(
        frechet_audio_distance(evaluation, background)
    )
    mean, cov = gaussian_statistics(background)
    assert mean.shape == (4,) and cov.shape == (4, 4)


def test_frechet_audio_distance_rejects_bad_embeddings():
    with pytest.raises(ConfigError, match="same model"):
        frechet_audio_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ConfigError, match=r"\(N, E\)"):
        frechet_audio_distance(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(ConfigError, match="NaN"):
        frechet_audio_distance(np.full((4, 2), np.nan), np.zeros((5, 2)))


def test_sample_size_bias_is_removed_by_fad_infinity():
    # two samples of ONE distribution: the true FAD is 0, but small sets measure clearly more
    rng = np.random.default_rng(4)
    dims = 16
    mix = rng.normal(size=(dims, dims)) / np.sqrt(dims)
    background = rng.normal(size=(40_000, dims)) @ mix  # large, so its own bias is tiny
    evaluation = rng.normal(size=(3_000, dims)) @ mix
    small = frechet_audio_distance(background, evaluation[:150])
    full = frechet_audio_distance(background, evaluation)
    result = fad_infinity(background, evaluation, steps=12)
    assert small > 5 * full > 0  # the bias shrinks like 1/n
    assert abs(result.score) < 0.25 * full  # the extrapolation removes most of what remains at n = 3,000
    assert result.slope > 0 and result.r2 > 0.8
    assert [n for n, _ in result.points] == sorted(n for n, _ in result.points)
    assert result.points[-1][0] == 3_000


def test_subsampling_the_background_removes_its_bias_too():
    # pairs of sets of ONE distribution: with a fixed background, FAD∞ keeps the background's own bias
    # (about 0.024 for 2,000 points in 12 dims); subsampled along, it averages out to about 0
    fixed, both = [], []
    for seed in range(8):  # one pair's FAD∞ carries that pair's noise (±0.015): average a few pairs
        rng = np.random.default_rng(seed)
        background, evaluation = rng.normal(size=(2_000, 12)), rng.normal(size=(2_000, 12))
        fixed.append(fad_infinity(background, evaluation, min_n=200, repeats=8).score)
        both.append(fad_infinity(background, evaluation, min_n=200, repeats=8, subsample_background=True).score)
    assert np.mean(fixed) > 0.015, fixed
    assert abs(np.mean(both)) < 0.35 * np.mean(fixed), (np.mean(fixed), np.mean(both))
    with pytest.raises(ConfigError, match="subsample_background"):
        fad_infinity(background[:500], evaluation, subsample_background=True)


def test_fad_infinity_keeps_a_real_difference():
    rng = np.random.default_rng(5)
    background, evaluation = rng.normal(size=(5_000, 8)), rng.normal(0.5, 1.0, size=(1_000, 8))
    result = fad_infinity(background, evaluation)
    assert result.score == pytest.approx(8 * 0.5**2, rel=0.15)  # ||Δμ||² = 2, equal covariances
    with pytest.raises(ConfigError, match="sizes"):
        fad_infinity(background, evaluation, sizes=[500])
    with pytest.raises(ConfigError, match="more evaluation embeddings"):
        fad_infinity(background, evaluation[:9])


def test_frechet_mel_distance_fits_one_gaussian_to_every_frame_of_every_spectrogram():
    log_mel = torch.randn(3, 1, 8, 20, generator=torch.Generator().manual_seed(0))  # (B, 1, M, F)
    frames = log_mel[:, 0].transpose(1, 2).reshape(-1, 8).double().numpy()  # (B·F, M): one row per frame
    mean, cov = frame_statistics(log_mel)
    np.testing.assert_allclose(mean, frames.mean(axis=0))
    np.testing.assert_allclose(cov, np.cov(frames, rowvar=False))
    assert frechet_mel_distance(log_mel, log_mel) == pytest.approx(0.0, abs=1e-9)
    shifted = frechet_mel_distance(log_mel + 1.0, log_mel)  # every band 1 nat louder: ||Δμ||² = M
    assert shifted == pytest.approx(8.0, abs=1e-6)
    with pytest.raises(ConfigError, match="two frames"):
        frame_statistics(torch.zeros(1, 8, 1))
