"""Plots the notebooks share: waveforms, spectrograms with real axes, codebooks, training curves.

Each function draws on an ``ax`` it is given (or a new one) and returns it, so notebooks can lay
several out in one figure and add their own labels.

Notebook: notebooks/00_audio_and_data.ipynb first; every later notebook.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes


def _numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return x.detach().to("cpu", torch.float32).numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _axes(ax: Axes | None, figsize: tuple[float, float] = (8, 2.5)) -> Axes:
    return ax if ax is not None else plt.subplots(figsize=figsize)[1]


def use_course_style() -> None:
    """Small, light figures: readable in JupyterLab and small enough to keep notebooks under 2 MB."""
    plt.rcParams.update(
        {
            "figure.dpi": 72,
            "savefig.dpi": 72,
            "figure.figsize": (8, 2.5),
            "axes.grid": False,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "font.size": 9,
        }
    )


def plot_waveform(
    audio: torch.Tensor | np.ndarray, sample_rate: int, ax: Axes | None = None, title: str | None = None, **style
) -> Axes:
    """Amplitude against time in seconds for a mono ``(T,)`` signal.

    Notebook: notebooks/00_audio_and_data.ipynb
    """
    ax = _axes(ax)
    samples = _numpy(audio).reshape(-1)
    ax.plot(np.arange(samples.size) / sample_rate, samples, linewidth=0.6, **style)
    ax.set(xlabel="time (s)", ylabel="amplitude", xlim=(0, samples.size / sample_rate))
    if title:
        ax.set_title(title)
    return ax


def plot_spectrogram(
    spectrogram: torch.Tensor | np.ndarray,
    sample_rate: int,
    hop_length: int,
    ax: Axes | None = None,
    title: str | None = None,
    frequency_scale: str = "linear",
    f_max: float | None = None,
    f_min: float = 0.0,
    colorbar: bool = False,
    to_db: bool = False,
    cmap: str = "magma",
) -> Axes:
    """Show an ``(F, N)`` spectrogram with time in seconds and frequency in Hz.

    Args:
        frequency_scale: ``"linear"`` for STFT bins spread evenly to ``f_max`` (default Nyquist), or
            ``"mel"`` for mel bands, labelled with the centre frequency (Hz) of some bands.
        to_db: convert a magnitude to 20·log10 first (leave False for spectrograms already in log).

    Notebooks: every notebook but 09_controlnet, notebooks/00_audio_and_data.ipynb to 10_fast_sampling.ipynb
    """
    ax = _axes(ax)
    image = _numpy(spectrogram)
    if to_db:
        image = 20 * np.log10(np.maximum(image, 1e-5))
    n_bins, n_frames = image.shape
    seconds = n_frames * hop_length / sample_rate
    f_max = f_max or sample_rate / 2
    if frequency_scale == "mel":
        extent = (0, seconds, 0, n_bins)
        mels = np.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_bins + 2)[1:-1]
        ticks = np.linspace(0, n_bins - 1, 5).round().astype(int)
        ax.set_yticks(ticks + 0.5, [f"{_mel_to_hz(mels[t]):.0f}" for t in ticks])
    else:
        extent = (0, seconds, f_min, f_max)
    mesh = ax.imshow(image, origin="lower", aspect="auto", extent=extent, cmap=cmap, interpolation="nearest")
    ax.set(xlabel="time (s)", ylabel="frequency (Hz)")
    if title:
        ax.set_title(title)
    if colorbar:
        ax.figure.colorbar(mesh, ax=ax, pad=0.01)
    return ax


def mel_axis_position(hz: float | np.ndarray, n_bins: int, f_max: float, f_min: float = 0.0) -> np.ndarray:
    """Where ``hz`` falls on the y axis that :func:`plot_spectrogram` draws with ``frequency_scale="mel"``.

    Band b is drawn from y = b to b + 1 around its centre frequency, so curves (a pitch, a control) can
    be drawn over a mel spectrogram at their frequency.
    """
    low, high = _hz_to_mel(f_min), _hz_to_mel(f_max)
    return (_hz_to_mel(np.asarray(hz, dtype=float)) - low) / (high - low) * (n_bins + 1) - 0.5


def _hz_to_mel(hz: float) -> float:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel: float) -> float:
    return 700.0 * (10 ** (mel / 2595.0) - 1.0)


def plot_codebook(
    points: torch.Tensor | np.ndarray,
    codebook: torch.Tensor | np.ndarray,
    ax: Axes | None = None,
    labels: torch.Tensor | np.ndarray | None = None,
    voronoi: bool = True,
    resolution: int = 300,
    title: str | None = None,
) -> Axes:
    """2-D data with its code vectors and, optionally, the Voronoi cells (each point's nearest code).

    The cells are drawn by colouring a grid with the index of the nearest code vector, which is
    exactly what the encoder of a vector quantizer computes.

    Notebook: notebooks/01_kmeans_vq.ipynb
    """
    ax = _axes(ax, figsize=(4.5, 4.5))
    pts, codes = _numpy(points), _numpy(codebook)
    if voronoi:
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        pad = 0.05 * (hi - lo)
        gx, gy = np.meshgrid(
            np.linspace(lo[0] - pad[0], hi[0] + pad[0], resolution),
            np.linspace(lo[1] - pad[1], hi[1] + pad[1], resolution),
        )
        grid = np.stack([gx.ravel(), gy.ravel()], axis=1)  # (G, 2)
        nearest = ((grid[:, None, :] - codes[None]) ** 2).sum(-1).argmin(1)  # (G,)
        ax.imshow(
            nearest.reshape(gx.shape),
            origin="lower",
            cmap="tab20",
            alpha=0.25,
            aspect="auto",
            extent=(gx.min(), gx.max(), gy.min(), gy.max()),
            interpolation="nearest",
        )
    colors = None if labels is None else _numpy(labels)
    ax.scatter(pts[:, 0], pts[:, 1], s=3, c=colors, cmap="tab20" if colors is not None else None, alpha=0.6)
    ax.scatter(codes[:, 0], codes[:, 1], s=60, c="black", marker="x", label="code vectors")
    ax.set(xlabel="$x_1$", ylabel="$x_2$")
    ax.legend(loc="upper right", fontsize=8)
    if title:
        ax.set_title(title)
    return ax


def plot_history(
    history: Iterable[Mapping[str, float]] | Mapping[str, Sequence[float]],
    keys: Sequence[str] | None = None,
    ax: Axes | None = None,
    log_y: bool = False,
    title: str | None = None,
) -> Axes:
    """Training curves against the step: from a list of logged dicts or a ``{key: values}`` mapping.

    Every numeric key except ``step`` is drawn unless ``keys`` names the ones to show.

    Notebooks: notebooks/07_ddpm.ipynb, 08_latent_diffusion.ipynb, 09_controlnet.ipynb
    """
    ax = _axes(ax)
    if isinstance(history, Mapping):
        columns = {k: np.asarray(v, dtype=float) for k, v in history.items()}
    else:
        rows = list(history)
        names = [k for k in rows[0] if isinstance(rows[0][k], (int, float))] if rows else []
        columns = {k: np.array([row.get(k, np.nan) for row in rows], dtype=float) for k in names}
    steps = columns.pop("step", None)
    for key in keys or list(columns):
        values = columns[key]
        ax.plot(steps if steps is not None else np.arange(values.size), values, label=key, linewidth=1.2)
    ax.set(xlabel="step", ylabel="loss")
    if log_y:
        ax.set_yscale("log")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return ax
