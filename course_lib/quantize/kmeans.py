"""K-means vector quantization in batched torch: k-means++ seeding, Lloyd iterations, encode and decode.

The lecture's first discretisation of audio ("Audio Discretization Using K-means"): the cluster centres
form the *codebook*, encoding maps a vector to the index of its nearest centre, decoding looks the
centre up again. The algorithm is Lloyd's (1982):

    assign:  l_i = argmin_k ||x_i - c_k||²                           (E-step)
    update:  c_k = mean of the x_i with l_i = k                      (M-step)

seeded with k-means++ (Arthur & Vassilvitskii 2007, "k-means++: The Advantages of Careful Seeding",
in scikit-learn's greedy variant). Given the same initial centres it reproduces scikit-learn's Lloyd
``KMeans``: the same stopping rule (labels unchanged, or total squared centre shift ≤ tol times the
mean feature variance), empty clusters moved to the points farthest from their centres, and a final
assignment to the final centres.

Distances are never held for all N points at once: ``nearest_centers`` expands
||x - c||² = ||x||² - 2 x·c + ||c||² and walks over the points in blocks, one ``addmm`` per block
(the codebook's norms computed once per pass), the blocks shared out to the CPU's threads.

Notebook: notebooks/01_kmeans_vq.ipynb
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import torch
from torch import Tensor

from course_lib.errors import AudioInputError, ConfigError

# Distance block size, in matrix entries: 4 MiB of float32 per CPU thread stays in its cache; GPUs
# take larger blocks, so that fewer kernels are launched.
CPU_BLOCK_ENTRIES = 2**20
GPU_BLOCK_ENTRIES = 2**24
# ``_row_max`` splits rows into blocks of this many columns.
_LANES = 64


def nearest_centers(
    x: Tensor,
    centers: Tensor,
    chunk_size: int | None = None,
    x_sq_norms: Tensor | None = None,
    threads: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Index of the nearest centre for every row of ``x``, and the squared distance to it.

    With ||x - c||² = ||x||² - (2 x·c - ||c||²), the nearest centre is the one with the largest
    *score* 2 x·c - ||c||², which one ``addmm`` gives for a whole block of rows. Blocks of
    ``chunk_size`` rows reuse one buffer, so memory stays at ``chunk_size × K`` entries (per CPU
    thread) whatever N is. On a CPU the blocks are shared out to torch's threads, each working
    through its blocks with single-threaded operations, as scikit-learn's Lloyd loop does: splitting
    every small operation across threads costs more in hand-offs than it gains, and far more when
    other programs compete for the cores.

    Args:
        x: points, (N, D).
        centers: codebook, (K, D), same dtype and device as ``x``.
        chunk_size: rows per block; default: 2**20 entries per block on a CPU, 2**24 on a GPU.
        x_sq_norms: ||x_i||², (N,), if already computed.
        threads: CPU threads that share the blocks; default ``torch.get_num_threads()``.

    Returns:
        ``(indices, sq_distances)``: LongTensor (N,) and the squared distances (N,), clamped at 0.
    """
    n, k = x.shape[0], centers.shape[0]
    on_cpu = x.device.type == "cpu"
    chunk = chunk_size or max(1, (CPU_BLOCK_ENTRIES if on_cpu else GPU_BLOCK_ENTRIES) // k)
    blocks = [(start, min(start + chunk, n)) for start in range(0, n, chunk)]
    threads = min(threads or torch.get_num_threads(), len(blocks)) if on_cpu else 1
    neg_center_sq = -(centers.detach() * centers.detach()).sum(1)  # (K,)
    centers_t = centers.detach().t()  # (D, K), a view: BLAS reads it transposed
    indices = torch.empty(n, dtype=torch.long, device=x.device)  # (N,)
    best = torch.empty(n, dtype=x.dtype, device=x.device)  # (N,) largest score per row

    def score_blocks(part: int) -> None:  # blocks part, part + threads, part + 2 threads, ...
        with torch.no_grad():
            buffer = torch.empty(min(chunk, n), k, dtype=x.dtype, device=x.device)  # (chunk, K)
            for start, stop in blocks[part::threads]:
                scores = buffer[: stop - start]  # (n_chunk, K)
                torch.addmm(neg_center_sq, x[start:stop], centers_t, alpha=2, out=scores)  # 2 x·c - ||c||²
                _row_max(scores, out=(best[start:stop], indices[start:stop]))

    if threads == 1:
        score_blocks(0)
    else:
        _in_single_threaded_workers(score_blocks, threads)
    with torch.no_grad():
        if x_sq_norms is None:
            x_sq_norms = (x * x).sum(1)  # (N,)
        return indices, torch.sub(x_sq_norms, best).clamp_(min=0)


def _in_single_threaded_workers(work: Callable[[int], None], threads: int) -> None:
    """Run ``work(0)``, ..., ``work(threads - 1)`` in parallel threads whose torch ops use one thread each."""
    with _torch_threads(1):  # torch gives a new thread the count set last
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(work, range(threads)))  # list(): re-raises a worker's exception here


@contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    """Set torch's thread count for the block, then restore it."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _row_max(scores: Tensor, out: tuple[Tensor, Tensor]) -> None:
    """Largest entry of each row and its column, as ``torch.max(scores, 1, out=out)``, 4x faster on CPUs.

    torch's index-tracking ``max`` over the last dimension is not vectorised on CPUs and costs two
    thirds of the ``addmm`` that made the scores. Instead, view each row as ``K / 64`` blocks of 64
    "lanes": an element-wise maximum across the blocks (vectorised, like ``amax``) gives 64 lane
    maxima, the best lane is the column within its block, and a look-up down that lane finds the
    block. Ties may resolve to another column than ``max``'s (rare with float scores). GPUs reduce
    rows well either way.
    """
    n, k = scores.shape
    if scores.device.type != "cpu" or k % _LANES or k < 4 * _LANES:
        torch.max(scores, 1, out=out)
        return
    values, indices = out
    blocks = scores.view(n, k // _LANES, _LANES)  # (n, K/64, 64)
    torch.max(blocks.amax(1), 1, out=(values, indices))  # indices: the best lane of each row
    block = blocks[torch.arange(n, device=scores.device), :, indices].argmax(1)  # (n,) its block
    indices.add_(block, alpha=_LANES)


def kmeans_plus_plus(
    x: Tensor,
    n_clusters: int,
    generator: torch.Generator | None = None,
    x_sq_norms: Tensor | None = None,
) -> Tensor:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007; scikit-learn's ``_kmeans_plusplus``).

    The first centre is a uniformly random point; each next one is the best of ``2 + ln K``
    candidates drawn with probability proportional to D(x)², the squared distance to the nearest
    centre chosen so far ("best": the smallest total D(x)² once added).

    Args:
        x: points, (N, D).
        n_clusters: K, at most N.
        generator: a CPU ``torch.Generator`` for the draws (the same seed gives the same centres on
            every device).
        x_sq_norms: ||x_i||², (N,), if already computed.

    Returns:
        The initial centres, (K, D).
    """
    n, d = x.shape
    trials = 2 + int(math.log(n_clusters))
    if x_sq_norms is None:
        x_sq_norms = (x * x).sum(1)  # (N,)
    centers = torch.empty(n_clusters, d, dtype=x.dtype, device=x.device)  # (K, D)
    first = int(torch.randint(n, (1,), generator=generator))
    centers[0] = x[first]
    closest = (x_sq_norms - 2 * (x @ x[first]) + x_sq_norms[first]).clamp_(min=0)  # (N,) D(x)²
    potential = closest.sum()
    for c in range(1, n_clusters):
        draws = torch.rand(trials, generator=generator, dtype=x.dtype).to(x.device) * potential
        candidates = torch.searchsorted(closest.cumsum(0), draws).clamp_(max=n - 1)  # (trials,)
        cand = x[candidates]  # (trials, D)
        dist = torch.addmm(x_sq_norms[candidates], x, cand.t(), alpha=-2).add_(x_sq_norms[:, None]).clamp_(min=0)
        candidate_closest = torch.minimum(closest[:, None], dist, out=dist)  # (N, trials) D(x)² with it
        potentials = candidate_closest.sum(0)  # (trials,)
        best = potentials.argmin()
        centers[c] = cand[best]
        closest = candidate_closest[:, best]  # (N,)
        potential = potentials[best]
    return centers


class KMeans:
    """Lloyd's k-means on torch tensors (CPU, CUDA or MPS), with a codebook interface.

    After ``fit``: ``centers`` (the codebook, K × D), ``labels_`` (N,), ``inertia_`` (the sum of
    squared distances of the points to their centres, a float), ``n_iter_``.

    Example::

        km = KMeans(n_clusters=16, seed=0).fit(frames)      # frames: (N, D)
        codes = km.encode(frames)                            # (N,) LongTensor
        reconstruction = km.decode(codes)                    # (N, D)

    Args:
        n_clusters: the codebook size K.
        max_iter: at most this many Lloyd iterations.
        tol: stop once the total squared centre shift is at most ``tol`` times the mean variance of
            the features (scikit-learn's rule); iterations also stop when no label changes.
            ``tol=0`` runs all ``max_iter`` iterations unless the labels stop changing.
        init: ``"k-means++"``, ``"random"`` (K distinct points) or a (K, D) tensor of centres.
        chunk_size: rows per distance block (memory ``chunk_size × K`` per thread); default 2**20 entries.
        seed: seed of the initialisation draws.

    Notebook: notebooks/01_kmeans_vq.ipynb
    """

    def __init__(
        self,
        n_clusters: int,
        max_iter: int = 100,
        tol: float = 1e-4,
        init: str | Tensor = "k-means++",
        chunk_size: int | None = None,
        seed: int = 0,
    ) -> None:
        if n_clusters < 1 or max_iter < 1 or tol < 0:
            raise ConfigError(
                f"KMeans needs n_clusters >= 1, max_iter >= 1 and tol >= 0; got n_clusters={n_clusters}, "
                f"max_iter={max_iter}, tol={tol}."
            )
        if isinstance(init, str) and init not in ("k-means++", "random"):
            raise ConfigError(f"Unknown init {init!r}: use 'k-means++', 'random' or a (K, D) tensor of centres.")
        self.n_clusters = n_clusters
        self.max_iter = max_iter
        self.tol = tol
        self.init = init
        self.chunk_size = chunk_size
        self.seed = seed
        self.centers: Tensor | None = None
        self.labels_: Tensor | None = None
        self.inertia_: float | None = None
        self.n_iter_: int = 0

    def fit(self, x: Tensor) -> KMeans:
        """Run k-means on the rows of ``x`` (N, D); returns ``self``."""
        x = _check_points(x, self.n_clusters)
        threads = torch.get_num_threads()
        # The O(N·D) steps run on one thread: cheap next to the distances, which `threads` workers
        # share (see nearest_centers), and safe from thread hand-offs on a busy machine.
        with _torch_threads(1):
            x_sq_norms = (x * x).sum(1)  # (N,)
            centers = self._initial_centers(x, x_sq_norms)  # (K, D)
            tol = self.tol * float(x.var(0, correction=0).mean()) if self.tol > 0 else 0.0
            previous_labels = None
            converged = False
            self.n_iter_ = 0
            while self.n_iter_ < self.max_iter:
                self.n_iter_ += 1
                labels, sq_dist = nearest_centers(x, centers, self.chunk_size, x_sq_norms, threads)  # (N,), (N,)
                new_centers = _mean_of_clusters(x, labels, sq_dist, self.n_clusters)  # (K, D)
                shift = float(((new_centers - centers) ** 2).sum())
                centers = new_centers
                if previous_labels is not None and torch.equal(labels, previous_labels):
                    converged = True
                    break
                if shift <= tol:
                    break
                previous_labels = labels
            if not converged:  # final E-step, so that the labels belong to the final centres
                labels, _ = nearest_centers(x, centers, self.chunk_size, x_sq_norms, threads)
            self.inertia_ = _inertia(x, centers, labels, self.chunk_size)
        self.centers = centers
        self.labels_ = labels
        return self

    def encode(self, x: Tensor) -> Tensor:
        """Index of the nearest code for each vector: (..., D) -> LongTensor (...)."""
        centers = self._fitted_centers()
        if x.shape[-1] != centers.shape[1]:
            raise AudioInputError(
                f"encode expects vectors of size {centers.shape[1]} in the last dimension, got shape "
                f"{tuple(x.shape)}: move the feature dimension last (x.transpose(1, -1))."
            )
        flat = x.reshape(-1, x.shape[-1]).to(centers.dtype)  # (N, D)
        return nearest_centers(flat, centers, self.chunk_size)[0].view(x.shape[:-1])

    def decode(self, indices: Tensor) -> Tensor:
        """The codes of ``indices``: LongTensor (...) -> (..., D)."""
        return self._fitted_centers()[indices]

    def _fitted_centers(self) -> Tensor:
        if self.centers is None:
            raise ConfigError("This KMeans has no codebook yet: call .fit(x) first.")
        return self.centers

    def _initial_centers(self, x: Tensor, x_sq_norms: Tensor) -> Tensor:
        generator = torch.Generator().manual_seed(self.seed)
        if isinstance(self.init, Tensor):
            if self.init.shape != (self.n_clusters, x.shape[1]):
                raise ConfigError(
                    f"init has shape {tuple(self.init.shape)} but K x D = ({self.n_clusters}, {x.shape[1]}): "
                    "pass one initial centre per cluster, or init='k-means++'."
                )
            return self.init.to(device=x.device, dtype=x.dtype).clone()
        if self.init == "random":
            chosen = torch.randperm(x.shape[0], generator=generator)[: self.n_clusters].to(x.device)
            return x[chosen].clone()
        return kmeans_plus_plus(x, self.n_clusters, generator, x_sq_norms)


def kmeans(x: Tensor, n_clusters: int, **options) -> tuple[Tensor, Tensor, float]:
    """Functional k-means: ``(centers (K, D), labels (N,), inertia)``; ``options`` as in ``KMeans``."""
    fitted = KMeans(n_clusters, **options).fit(x)
    return fitted.centers, fitted.labels_, fitted.inertia_


def _mean_of_clusters(x: Tensor, labels: Tensor, sq_dist: Tensor, n_clusters: int) -> Tensor:
    """Lloyd's M-step; an empty cluster takes the point farthest from its centre (as scikit-learn)."""
    sums = torch.zeros(n_clusters, x.shape[1], dtype=x.dtype, device=x.device).index_add_(0, labels, x)  # (K, D)
    counts = torch.bincount(labels, minlength=n_clusters).to(x.dtype)  # (K,)
    empty = (counts == 0).nonzero().squeeze(1)  # (n_empty,)
    if len(empty):
        far = sq_dist.topk(len(empty)).indices  # (n_empty,) the worst-served points, farthest first
        donors = labels[far]  # (n_empty,) the clusters those points leave
        sums.index_add_(0, donors, -x[far])
        counts.index_add_(0, donors, -torch.ones_like(far, dtype=counts.dtype))
        sums[empty] = x[far]
        counts[empty] = 1
    return sums / counts.clamp(min=1)[:, None]  # (K, D)


def _inertia(x: Tensor, centers: Tensor, labels: Tensor, chunk_size: int | None) -> float:
    """Sum of ||x_i - c_{l_i}||², computed directly (not from the expansion, which loses digits)."""
    chunk = chunk_size or max(1, CPU_BLOCK_ENTRIES // centers.shape[0])
    total = torch.zeros((), dtype=x.dtype, device=x.device)
    for start in range(0, x.shape[0], chunk):
        residual = x[start : start + chunk] - centers[labels[start : start + chunk]]  # (n_chunk, D)
        total += (residual * residual).sum()
    return float(total)


def _check_points(x: Tensor, n_clusters: int) -> Tensor:
    if not isinstance(x, Tensor) or x.ndim != 2:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise AudioInputError(
            f"k-means expects points as a (N, D) tensor, got {shape}: flatten frames first, e.g. "
            "x.reshape(-1, x.shape[-1]), or torch.as_tensor(array)."
        )
    if x.shape[0] < n_clusters:
        raise ConfigError(
            f"n_clusters={n_clusters} is more than the {x.shape[0]} points given: lower n_clusters or pass more points."
        )
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    if not torch.isfinite(x).all():
        raise AudioInputError(
            "k-means input contains NaN or infinite values: clean the features first "
            "(e.g. x[torch.isfinite(x).all(1)])."
        )
    return x.contiguous()
