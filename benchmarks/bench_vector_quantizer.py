"""Benchmark: course_lib's VectorQuantizer against vector-quantize-pytorch's VectorQuantize.

One training step each (forward, then backward of the output's mean square plus the VQ loss) with
the same sizes and settings: D=64, K=1,024, EMA codebook (decay 0.99), commitment weight 0.25,
rotation trick off, no k-means init, no dead-code restart. Each gets its own natural layout of the
same 16 x 2,048 vectors: (B, D, T) for course_lib, (B, T, D) for the peer. Both run in one process
on the device ``course_lib.config.get_device()`` picks (``COURSE_DEVICE`` to force one), with the
same threads; each timing is the best of ``repeats`` alternating rounds of ``steps`` steps.
``measure_vector_quantizer`` is the importable version (``make bench``).

    python benchmarks/bench_vector_quantizer.py            # 16 x 2,048 x 64, K=1,024
    python benchmarks/bench_vector_quantizer.py --threads 1
    python benchmarks/bench_vector_quantizer.py --quick    # a smoke test
"""

from __future__ import annotations

import argparse
import inspect
import time
from collections.abc import Callable

import torch
from vector_quantize_pytorch import VectorQuantize

from course_lib.config import get_device
from course_lib.quantize.vector_quantizer import VectorQuantizer

FULL = {"batch": 16, "length": 2048, "dim": 64, "codebook_size": 1024, "decay": 0.99}
QUICK = {"batch": 2, "length": 512, "dim": 16, "codebook_size": 128, "decay": 0.99}


def _peer(dim: int, codebook_size: int, decay: float) -> VectorQuantize:
    options = {"dim": dim, "codebook_size": codebook_size, "decay": decay, "commitment_weight": 0.25}
    if "rotation_trick" in inspect.signature(VectorQuantize).parameters:
        options["rotation_trick"] = False  # course_lib has the plain straight-through estimator only
    return VectorQuantize(**options)


def _time_steps(step: Callable[[], None], steps: int, device: torch.device) -> tuple[float, float]:
    """Mean wall and CPU seconds per step over ``steps`` steps."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - wall) / steps, (time.process_time() - cpu) / steps


def measure_vector_quantizer(
    quick: bool = False, repeats: int = 3, steps: int = 5, device: str | None = None, threads: int | None = None
) -> dict:
    """Time one training step of both quantizers; returns sizes, seconds per step and the speed-ups.

    Args:
        quick: small sizes, for a smoke test.
        repeats: alternating rounds of ``steps`` steps each; the best round is kept.
        device: ``cpu``, ``cuda``, ``mps``; default ``course_lib.config.get_device()``.
        threads: torch threads for both; default: torch's current count.
    """
    size = QUICK if quick else FULL
    dev = get_device(device)
    threads = threads or torch.get_num_threads()
    torch.manual_seed(0)
    ours = VectorQuantizer(size["dim"], size["codebook_size"], use_ema=True, decay=size["decay"]).to(dev)
    peer = _peer(size["dim"], size["codebook_size"], size["decay"]).to(dev)
    ours.train()
    peer.train()
    vectors = torch.randn(size["batch"], size["length"], size["dim"], device=dev)  # (B, T, D)
    x_ours = vectors.transpose(1, 2).contiguous().requires_grad_()  # (B, D, T)
    x_peer = vectors.clone().requires_grad_()  # (B, T, D)

    def step_ours() -> None:
        out = ours(x_ours)
        (out.quantized.square().mean() + out.loss).backward()

    def step_peer() -> None:
        quantized, _, loss = peer(x_peer)
        (quantized.square().mean() + loss.sum()).backward()

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    best = {"peer_s": float("inf"), "peer_cpu_s": float("inf")}
    best |= {"course_lib_s": float("inf"), "course_lib_cpu_s": float("inf")}
    try:
        step_peer()  # warm-up
        step_ours()
        for _ in range(repeats):  # alternate, so that both see the same machine load
            for name, step in (("peer", step_peer), ("course_lib", step_ours)):
                wall, cpu = _time_steps(step, steps, dev)
                best[f"{name}_s"] = min(best[f"{name}_s"], wall)
                best[f"{name}_cpu_s"] = min(best[f"{name}_cpu_s"], cpu)
    finally:
        torch.set_num_threads(previous_threads)
    return {
        **size,
        "device": str(dev),
        "threads": threads,
        **best,
        "speedup": best["peer_s"] / best["course_lib_s"],
        "cpu_speedup": best["peer_cpu_s"] / best["course_lib_cpu_s"],
    }


def ratio_rows(quick: bool = False) -> list[dict]:
    """The suite's row (``benchmarks/suite.py``): one training step against vector-quantize-pytorch, goal 3×."""
    r = measure_vector_quantizer(quick)
    return [
        {
            "benchmark": "VectorQuantizer vs vector-quantize-pytorch (EMA training step)",
            "ratio": r["speedup"],
            "goal": "≥ 3×",
            "met": r["speedup"] >= 3,
            "detail": f"{r['batch']}×{r['length']}×{r['dim']}, K={r['codebook_size']:,}, {r['device']}, "
            f"{r['threads']} thread(s): {1000 * r['course_lib_s']:.1f} ms vs {1000 * r['peer_s']:.1f} ms",
        }
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per implementation (best is kept)")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: course_lib's choice)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's count)")
    args = parser.parse_args()
    r = measure_vector_quantizer(args.quick, args.repeats, device=args.device, threads=args.threads)
    print(
        f"VectorQuantizer training step, {r['batch']} x {r['length']} vectors of D={r['dim']}, "
        f"K={r['codebook_size']:,}, EMA {r['decay']}, on {r['device']} ({r['threads']} threads)"
    )
    print(f"  vector-quantize-pytorch: {1e3 * r['peer_s']:.1f} ms/step (CPU {1e3 * r['peer_cpu_s']:.1f} ms)")
    print(
        f"  course_lib             : {1e3 * r['course_lib_s']:.1f} ms/step (CPU {1e3 * r['course_lib_cpu_s']:.1f} ms)"
    )
    print(f"  speed-up {r['speedup']:.2f}x (CPU time {r['cpu_speedup']:.2f}x)")


if __name__ == "__main__":
    main()
