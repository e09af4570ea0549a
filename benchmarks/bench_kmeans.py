"""Benchmark: course_lib k-means against scikit-learn's Lloyd KMeans, same data and initial centres.

Both run ``iterations`` Lloyd iterations (tol=0) in float32 on the CPU, side by side in one process
and with the same number of threads; each figure is the best of ``repeats`` alternating runs. Prints
the speed ratio (wall clock, and CPU time, the steadier figure on a busy machine with one thread),
the inertias and how many labels agree. ``measure_kmeans`` is the importable version (``make bench``).

    python benchmarks/bench_kmeans.py               # N=100,000, D=64, K=1,024, 20 iterations
    python benchmarks/bench_kmeans.py --threads 1   # one core each
    python benchmarks/bench_kmeans.py --quick       # a smoke test, a second or so
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
from sklearn.cluster import KMeans as SklearnKMeans
from threadpoolctl import threadpool_limits

from course_lib.quantize.kmeans import KMeans

FULL = {"n_points": 100_000, "dim": 64, "n_clusters": 1024, "iterations": 20}
QUICK = {"n_points": 5_000, "dim": 16, "n_clusters": 64, "iterations": 5}


def make_points(n_points: int, dim: int, seed: int = 0) -> np.ndarray:
    """Standard normal float32 points: no cluster structure, so labels keep changing for 20 iterations.

    (On well-separated clusters both implementations stop early, when no label changes.)
    """
    return np.random.default_rng(seed).standard_normal((n_points, dim), dtype=np.float32)


def _timed(fit: Callable[[], object]) -> tuple[object, float, float]:
    """``fit()``'s result, wall seconds and CPU seconds (all threads of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fit()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def measure_kmeans(quick: bool = False, repeats: int = 2, threads: int | None = None) -> dict:
    """Time both implementations; returns sizes, seconds, speed-ups, inertias and label agreement.

    Args:
        quick: small sizes, for a smoke test.
        repeats: alternating timed runs of each; the best wall and CPU times are kept.
        threads: threads for both (torch's and scikit-learn's pools); default: torch's current count.
    """
    size = QUICK if quick else FULL
    threads = threads or torch.get_num_threads()
    points = make_points(size["n_points"], size["dim"])
    rng = np.random.default_rng(1)
    init = points[rng.choice(len(points), size["n_clusters"], replace=False)]
    x, init_t = torch.from_numpy(points), torch.from_numpy(init)
    sklearn_kmeans = SklearnKMeans(
        size["n_clusters"], init=init, n_init=1, max_iter=size["iterations"], tol=0, algorithm="lloyd"
    )
    ours_kmeans = KMeans(size["n_clusters"], max_iter=size["iterations"], tol=0, init=init_t)

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    best = {"sklearn_s": np.inf, "sklearn_cpu_s": np.inf, "course_lib_s": np.inf, "course_lib_cpu_s": np.inf}
    try:
        with threadpool_limits(threads):
            for _ in range(repeats):
                theirs, wall, cpu = _timed(lambda: sklearn_kmeans.fit(points))
                best["sklearn_s"], best["sklearn_cpu_s"] = min(best["sklearn_s"], wall), min(best["sklearn_cpu_s"], cpu)
                ours, wall, cpu = _timed(lambda: ours_kmeans.fit(x))
                best["course_lib_s"] = min(best["course_lib_s"], wall)
                best["course_lib_cpu_s"] = min(best["course_lib_cpu_s"], cpu)
    finally:
        torch.set_num_threads(previous_threads)
    return {
        **size,
        "threads": threads,
        **best,
        "speedup": best["sklearn_s"] / best["course_lib_s"],
        "cpu_speedup": best["sklearn_cpu_s"] / best["course_lib_cpu_s"],
        "sklearn_inertia": float(theirs.inertia_),
        "course_lib_inertia": ours.inertia_,
        "inertia_rel_diff": abs(ours.inertia_ - theirs.inertia_) / theirs.inertia_,
        "label_agreement": float((ours.labels_.numpy() == theirs.labels_).mean()),
        "sklearn_n_iter": int(theirs.n_iter_),
        "course_lib_n_iter": ours.n_iter_,
    }


def ratio_rows(quick: bool = False) -> list[dict]:
    """The suite's row (``benchmarks/suite.py``): how many times faster than scikit-learn, goal 1.3×."""
    r = measure_kmeans(quick)
    return [
        {
            "benchmark": "k-means vs scikit-learn (same init, Lloyd)",
            "ratio": r["speedup"],
            "goal": "≥ 1.3×",
            "met": r["speedup"] >= 1.3,
            "detail": f"N={r['n_points']:,} D={r['dim']} K={r['n_clusters']:,}, {r['iterations']} iterations, "
            f"{r['threads']} thread(s): {r['course_lib_s']:.2f} s vs {r['sklearn_s']:.2f} s "
            f"(CPU time {r['cpu_speedup']:.2f}×), inertia within {100 * r['inertia_rel_diff']:.3f}%",
        }
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per implementation (best is kept)")
    parser.add_argument("--threads", type=int, default=None, help="threads for both (default: torch's count)")
    args = parser.parse_args()
    r = measure_kmeans(args.quick, args.repeats, args.threads)
    print(
        f"k-means, N={r['n_points']:,} D={r['dim']} K={r['n_clusters']:,}, {r['iterations']} iterations, "
        f"float32, CPU, {r['threads']} thread(s) each"
    )
    print(
        f"  scikit-learn (lloyd): {r['sklearn_s']:.3f} s (CPU {r['sklearn_cpu_s']:.3f} s)   "
        f"inertia {r['sklearn_inertia']:.6g}"
    )
    print(
        f"  course_lib          : {r['course_lib_s']:.3f} s (CPU {r['course_lib_cpu_s']:.3f} s)   "
        f"inertia {r['course_lib_inertia']:.6g}"
    )
    print(
        f"  speed-up {r['speedup']:.2f}x (CPU time {r['cpu_speedup']:.2f}x), inertia difference "
        f"{100 * r['inertia_rel_diff']:.4f}%, labels identical for {100 * r['label_agreement']:.2f}% of points, "
        f"iterations run {r['sklearn_n_iter']} / {r['course_lib_n_iter']}"
    )


if __name__ == "__main__":
    main()
