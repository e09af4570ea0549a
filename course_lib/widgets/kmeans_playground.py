"""The k-means / VQ playground: drag the codebook size, watch the Voronoi cells and the error.

The lecture's picture of vector quantization — a 2-D Gaussian and its 16 code vectors — made
interactive: for each codebook size K the codebook is fitted by k-means
(:class:`course_lib.quantize.KMeans`), the plane is coloured by nearest code (the Voronoi cells, the
encoder's decision regions) and the readout gives the bits per vector, log2 K, and the mean squared
error per vector, which falls by about 3 dB per extra bit in 2-D once K is large (the high-rate rule
D ∝ K^(-2/d), 6 dB per bit per dimension; Gersho 1979).

Notebook: notebooks/01_kmeans_vq.ipynb.
"""

from __future__ import annotations

import math

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch

from course_lib.quantize import KMeans
from course_lib.widgets.panel import Panel

SIZES = (2, 4, 8, 16, 32, 64, 128)


def kmeans_playground(
    points: torch.Tensor | None = None, sizes: tuple[int, ...] = SIZES, start: int = 16, seed: int = 0
) -> Panel:
    """A codebook-size slider over ``points`` (default 2,000 samples of a correlated 2-D Gaussian).

    Returns a :class:`Panel`: display it (the last expression of a cell) or call ``.show()``.

    Notebook: notebooks/01_kmeans_vq.ipynb
    """
    if points is None:
        generator = torch.Generator().manual_seed(seed)
        points = torch.randn(2000, 2, generator=generator) @ torch.tensor([[1.0, 0.0], [0.6, 0.5]])  # (N, 2)
    grid_x, grid_y = torch.meshgrid(
        torch.linspace(points[:, 0].min() - 0.5, points[:, 0].max() + 0.5, 200),
        torch.linspace(points[:, 1].min() - 0.5, points[:, 1].max() + 0.5, 200),
        indexing="xy",
    )
    grid = torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=1)  # (200·200, 2)
    slider = widgets.SelectionSlider(options=list(sizes), value=start, description="codes K", continuous_update=False)
    fitted: dict[int, KMeans] = {}

    def draw():
        k = slider.value
        codebook = fitted.setdefault(k, KMeans(n_clusters=k, seed=seed).fit(points))
        cells = codebook.encode(grid).reshape(grid_x.shape).numpy()  # (200, 200): nearest code of each point
        mse = codebook.inertia_ / len(points)  # per vector, as notebook 01 measures it
        figure, ax = plt.subplots(figsize=(4.2, 3.6))
        ax.imshow(cells, origin="lower", cmap="tab20", alpha=0.35, interpolation="nearest", aspect="auto",
                  extent=(grid_x.min().item(), grid_x.max().item(), grid_y.min().item(), grid_y.max().item()))  # fmt: skip
        ax.scatter(*points.T.numpy(), s=2, c="0.3")
        ax.scatter(*codebook.centers.T.numpy(), s=40, c="crimson", marker="x")
        ax.set(title=f"K = {k}: Voronoi cells of the codebook", xlabel="x1", ylabel="x2")
        readout = (
            f"K = {k} codes → {math.log2(k):.0f} bits per vector; mean squared error {mse:.4f} per vector "
            f"({10 * math.log10(mse):.1f} dB)"
        )
        return readout, figure, {}, 0

    return Panel([slider], draw)
