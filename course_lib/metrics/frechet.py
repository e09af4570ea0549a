"""The Fréchet distance between Gaussians, the Fréchet Audio Distance (FAD), its sample-size correction FAD∞, the Fréchet mel distance.

FAD (Kilgour et al. 2019, "Fréchet Audio Distance: A Metric for Evaluating Music Enhancement
Algorithms") embeds every clip of a **background** set (real music) and of an **evaluation** set (the
model's output), fits a Gaussian to each set of embeddings, and measures the Fréchet distance between
the two Gaussians, as the lecture writes it (MusicLM's evaluation slide)::

    F(N_b, N_e) = ‖μ_b − μ_e‖² + tr(Σ_b + Σ_e − 2 √(Σ_b Σ_e))

For Gaussians this is the squared 2-Wasserstein distance (Dowson & Landau 1982): 0 only when means and
covariances agree. The embedding decides what "close" means; MusicLM uses VGGish, others PANN or
CLAP, and the numbers of different embeddings cannot be compared. The course's embedding is the
penultimate layer of its SynthMusic attribute classifier (:mod:`course_lib.attributes`),
the same idea as VGGish / PANN: the features of a network trained to classify audio.

**The matrix square root.** ``Σ_b Σ_e`` is not symmetric, and ``scipy.linalg.sqrtm`` of it can return
complex noise when the covariances are rank-deficient (fewer clips than dimensions). Only its trace
is needed, and ``Σ_b Σ_e`` has the same eigenvalues as the symmetric PSD matrix
``Σ_b^{1/2} Σ_e Σ_b^{1/2}`` (they are similar matrices), so ``tr √(Σ_b Σ_e)`` is the sum of the square
roots of that matrix's eigenvalues: real, non-negative, and computed with ``eigh`` only.

**Sample-size bias.** Estimated from n clips, μ and Σ are noisy, and the noise only adds distance:
two sets drawn from one distribution have FAD > 0, roughly ∝ 1/n (about 18.5 at n = 250 and 1.1 at
5,000 between two samples of one 128-d distribution). Always report n, or extrapolate to n → ∞:
:func:`fad_infinity` computes FAD on evaluation subsets of several sizes, fits a line in 1/n and reads
off its intercept (Chong & Forsyth 2020, "Effectively Unbiased FID and Inception Score and where to
find them"; fadtk's FAD∞, Gui et al. 2024, "Adapting Frechet Audio Distance for Generative Music
Evaluation").

**The Fréchet mel distance (FMD)** judges the diffusion models of notebooks 07 and 10, whose generated
objects are log-mel patches, with the simplest embedding possible: **each frame's 64 log-mel values** (natural log of the mel magnitude, in nats, the units of
:func:`course_lib.audio.log_mel_spectrogram`). A frame of a patch is one 64-dimensional point; all the
frames of all the patches of a set are fitted with one Gaussian. The mean μ says how loud each mel band
is on average, the covariance Σ how bands vary and move together (harmonics of one note rise and fall
together, a drum hit lights up all bands at once). The FMD is 0 for identical statistics, in nats².

What it does not see: anything about the order of frames (rhythm, note lengths) beyond what one
frame holds. And like every Fréchet distance it is **biased upwards for small sets**: two sets drawn
from the same distribution have FMD > 0, and the smaller the sets the larger it is (the covariance
estimate is noisy). Compare scores only at the same number of patches, and compare with the floor:
the FMD between two disjoint sets of real data of that size (:func:`frechet_mel_distance` of two
held-out sets).

Notebooks: notebooks/06_text_to_music.ipynb, notebooks/08_latent_diffusion.ipynb (FAD of generations),
notebooks/10_fast_sampling.ipynb and 07_ddpm.ipynb (the Fréchet mel distance; benchmarks/bench_diffusion_quality.py).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from course_lib.errors import ConfigError

ArrayLike = np.ndarray | torch.Tensor


def sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """The symmetric square root ``R`` (``R @ R = matrix``) of a symmetric positive semi-definite matrix.

    Through the eigendecomposition ``matrix = V diag(λ) Vᵀ``: ``R = V diag(√max(λ, 0)) Vᵀ``; the tiny
    negative eigenvalues that rounding gives a rank-deficient covariance are clipped to 0.
    """
    eigenvalues, vectors = np.linalg.eigh((matrix + matrix.T) / 2)  # (M,), (M, M)
    return (vectors * np.sqrt(np.clip(eigenvalues, 0, None))) @ vectors.T  # (M, M)


def trace_sqrt_product(cov_a: np.ndarray, cov_b: np.ndarray) -> float:
    """``tr √(Σ_a Σ_b)`` as the sum of √ of the eigenvalues of ``Σ_a^{1/2} Σ_b Σ_a^{1/2}`` (see the module docstring)."""
    root_a = sqrt_psd(cov_a)  # (M, M)
    middle = root_a @ cov_b @ root_a  # (M, M), symmetric PSD, same eigenvalues as Σ_a Σ_b
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)  # (M,)
    return float(np.sqrt(np.clip(eigenvalues, 0, None)).sum())


def frechet_distance(mean_a: np.ndarray, cov_a: np.ndarray, mean_b: np.ndarray, cov_b: np.ndarray) -> float:
    """Fréchet distance ``‖μ_a − μ_b‖² + tr(Σ_a + Σ_b − 2 √(Σ_a Σ_b))`` between ``N(mean_a, cov_a)`` and ``N(mean_b, cov_b)``.

    Symmetric in its two Gaussians; 0 for identical ones. For diagonal covariances it is
    ``‖μ_a − μ_b‖² + Σ_i (√a_i − √b_i)²``.

    Args:
        mean_a, mean_b: ``(M,)`` means.
        cov_a, cov_b: ``(M, M)`` symmetric PSD covariances.
    """
    mean_a, mean_b = np.asarray(mean_a, np.float64), np.asarray(mean_b, np.float64)
    cov_a, cov_b = np.atleast_2d(np.asarray(cov_a, np.float64)), np.atleast_2d(np.asarray(cov_b, np.float64))
    if mean_a.shape != mean_b.shape or cov_a.shape != cov_b.shape or cov_a.shape != (mean_a.size,) * 2:
        raise ConfigError(
            f"frechet_distance needs two means of one size M and two (M, M) covariances; got means "
            f"{mean_a.shape} and {mean_b.shape}, covariances {cov_a.shape} and {cov_b.shape}."
        )
    mean_term = float(np.sum((mean_a - mean_b) ** 2))
    return mean_term + float(np.trace(cov_a) + np.trace(cov_b)) - 2 * trace_sqrt_product(cov_a, cov_b)


def gaussian_statistics(embeddings: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(E,)`` and covariance ``(E, E)`` (unbiased, float64) of ``(N, E)`` embeddings, one row per clip."""
    values = _embedding_matrix(embeddings, "embeddings")
    return values.mean(axis=0), np.atleast_2d(np.cov(values, rowvar=False))


def frechet_audio_distance(background: ArrayLike, evaluation: ArrayLike) -> float:
    """FAD between background (real) and evaluation (generated) embeddings, as the lecture writes it.

    ``F(N_b, N_e) = ‖μ_b − μ_e‖² + tr(Σ_b + Σ_e − 2 √(Σ_b Σ_e))`` with ``μ, Σ`` the mean and covariance
    of each set (Kilgour et al. 2019). It is biased upwards for small sets: compare scores only at
    equal sizes, or use :func:`fad_infinity`.

    Args:
        background: ``(N_b, E)`` embeddings of real audio, e.g.
            ``load_tiny_attribute_classifier().embed(real_audio)``.
        evaluation: ``(N_e, E)`` embeddings of the audio to judge, from the same embedding model.

    Returns:
        The distance (in squared embedding units; 0 = identical statistics).

    Notebook: notebooks/06_text_to_music.ipynb, notebooks/08_latent_diffusion.ipynb.
    """
    mean_b, cov_b = gaussian_statistics(background)
    mean_e, cov_e = gaussian_statistics(evaluation)
    if mean_b.shape != mean_e.shape:
        raise ConfigError(
            f"background embeddings have {mean_b.size} dimensions and evaluation ones {mean_e.size}: "
            "embed both sets with the same model."
        )
    return frechet_distance(mean_b, cov_b, mean_e, cov_e)


def frame_statistics(log_mel: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(M,)`` and covariance ``(M, M)`` (float64) of the frames of log-mel spectrograms ``(..., M, frames)``.

    A ``(B, 1, M, F)`` batch is fine too: every frame of every spectrogram is one sample.
    """
    frames = torch.as_tensor(log_mel).detach().to("cpu", torch.float64)
    frames = frames.reshape(-1, *frames.shape[-2:]).transpose(1, 2).reshape(-1, frames.shape[-2])  # (B·F, M)
    if frames.shape[0] < 2:
        raise ConfigError("frame_statistics needs at least two frames.")
    values = frames.numpy()
    return values.mean(axis=0), np.cov(values, rowvar=False)


def frechet_mel_distance(generated_log_mel: Tensor, reference_log_mel: Tensor) -> float:
    """FMD between two sets of log-mel spectrograms ``(..., M, frames)`` in nats (see the module docstring).

    Notebook: notebooks/10_fast_sampling.ipynb, 07_ddpm.ipynb.
    """
    return frechet_distance(*frame_statistics(generated_log_mel), *frame_statistics(reference_log_mel))


class FADInfinity(NamedTuple):
    """Result of :func:`fad_infinity`: the extrapolated ``score`` (the intercept at 1/n = 0), the ``slope``
    of FAD against 1/n, the fit's ``r2`` and the measured ``points`` ``[(n, FAD_n), ...]``."""

    score: float
    slope: float
    r2: float
    points: list[tuple[int, float]]


def fad_infinity(
    background: ArrayLike,
    evaluation: ArrayLike,
    sizes: list[int] | None = None,
    steps: int = 15,
    min_n: int | None = None,
    seed: int = 0,
    subsample_background: bool = False,
    repeats: int = 1,
) -> FADInfinity:
    """FAD extrapolated to an infinite evaluation set: FAD at several sizes n, a line in 1/n, its intercept.

    For each n a random subset of n evaluation embeddings is drawn and its FAD to the whole background
    set computed; ``FAD_n ≈ FAD∞ + c / n`` (the estimation noise of μ and Σ shrinks as 1/n), so the
    intercept of a least-squares line through ``(1/n, FAD_n)`` is the bias-free score (Chong & Forsyth
    2020; fadtk's ``score_inf``). fadtk draws each subset *with* replacement; here the subsets are drawn
    *without* replacement, so that the variance of a subset's mean, ``(1/n − 1/N) σ²`` for N embeddings,
    makes the line pass through the infinite-set value rather than through the value of the N-point set
    (with replacement, the intercept keeps the finite set's bias ``c / N``). With a fixed background
    its own bias stays in the intercept (about the FAD of two real sets of the background's size):
    use a background set much larger than the evaluation set, or ``subsample_background=True``, which
    draws n background embeddings too, so that both biases shrink as 1/n and the intercept loses both.

    Args:
        background: ``(N_b, E)`` embeddings of real audio.
        evaluation: ``(N_e, E)`` embeddings of the audio to judge.
        sizes: the subset sizes; default ``steps`` sizes evenly spaced from ``min_n`` to ``N_e``.
        steps: how many sizes when ``sizes`` is None.
        min_n: the smallest size; default ``max(N_e // 5, E + 2)`` (below E + 1 points the covariance
            is singular and the 1/n law no longer holds).
        seed: seeds the random subsets.
        subsample_background: also draw a random n-subset of the background for each n (needs
            ``N_b ≥`` the largest size); default False, fadtk's fixed background.
        repeats: FAD is averaged over this many random subsets per size (less noise in the fit).

    Notebook: notebooks/06_text_to_music.ipynb.
    """
    reference = _embedding_matrix(background, "background")
    values = _embedding_matrix(evaluation, "evaluation")
    count, dims = values.shape
    if dims != reference.shape[1]:
        raise ConfigError(
            f"background embeddings have {reference.shape[1]} dimensions and evaluation ones {dims}: embed both "
            "sets with the same model."
        )
    if sizes is None:
        low = min_n if min_n is not None else max(count // 5, dims + 2)
        if low >= count:
            raise ConfigError(
                f"fad_infinity needs more evaluation embeddings than the smallest subset ({low}); got {count}. "
                f"Pass more clips (several times the {dims} embedding dimensions), or smaller sizes=[...]."
            )
        sizes = sorted({int(n) for n in np.linspace(low, count, steps)})
    if len(sizes) < 2 or min(sizes) < 2 or max(sizes) > count:
        raise ConfigError(
            f"sizes must hold at least two subset sizes between 2 and {count} (the evaluation set), got {sizes}."
        )
    if subsample_background and max(sizes) > reference.shape[0]:
        raise ConfigError(
            f"subsample_background needs at least {max(sizes)} background embeddings (the largest size), got "
            f"{reference.shape[0]}: pass more background clips or smaller sizes."
        )
    rng = np.random.default_rng(seed)
    mean_b, cov_b = gaussian_statistics(reference)
    if repeats < 1:
        raise ConfigError(f"repeats must be at least 1, got {repeats}.")
    points = []
    for n in sizes:
        scores_n = []
        for _ in range(repeats):
            mean_e, cov_e = gaussian_statistics(values[rng.choice(count, size=n, replace=False)])  # n of N_e
            if subsample_background:
                mean_b, cov_b = gaussian_statistics(reference[rng.choice(reference.shape[0], size=n, replace=False)])
            scores_n.append(frechet_distance(mean_b, cov_b, mean_e, cov_e))
        points.append((int(n), float(np.mean(scores_n))))
    inverse = 1.0 / np.array([n for n, _ in points], dtype=np.float64)  # (S,)
    scores = np.array([score for _, score in points])  # (S,)
    slope, intercept = np.polyfit(inverse, scores, 1)
    residual = np.sum((scores - (slope * inverse + intercept)) ** 2)
    spread = np.sum((scores - scores.mean()) ** 2)
    r2 = float(1 - residual / spread) if spread > 0 else 1.0
    return FADInfinity(float(intercept), float(slope), r2, points)


def _embedding_matrix(embeddings: ArrayLike, name: str) -> np.ndarray:
    if isinstance(embeddings, torch.Tensor):
        embeddings = embeddings.detach().to("cpu", torch.float64).numpy()
    values = np.asarray(embeddings, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] < 2:
        raise ConfigError(
            f"{name} must be an (N, E) matrix with one embedding per row and N ≥ 2, got shape {values.shape}: "
            "embed a batch of clips (e.g. classifier.embed(audio) for audio of shape (N, T))."
        )
    if not np.isfinite(values).all():
        raise ConfigError(f"{name} holds NaN or Inf values: check the audio and the model that embedded it.")
    return values
