"""Benchmark: sampling time of DDPM (Algorithm 2, every step) against DDIM with few steps, same UNet.

A randomly initialised tiny UNet (``UNetConfig.tiny()``) samples one spectrogram patch on the CPU with
both samplers, on one thread by default (on a shared 2-core machine two threads per process made the
tiny UNet's forward pass 10x slower, not faster). Each step is one network evaluation plus a few
element-wise operations, so the ratio of wall times should be close to the ratio of steps
(1,000 / 50 = 20×). Sample quality is compared later, in notebooks/10_fast_sampling.ipynb, with the
trained model.

    python benchmarks/bench_diffusion_sampling.py            # 64×64 patch, DDPM 1,000 steps vs DDIM 50
    python benchmarks/bench_diffusion_sampling.py --quick    # 32×32 patch, DDPM 100 steps vs DDIM 5

``measure_sampling`` is the importable version (for ``make bench``).

Notebook: notebooks/10_fast_sampling.ipynb quotes the figure.
"""

from __future__ import annotations

import argparse
import time

import torch

from course_lib.diffusion import NoiseSchedule, UNet, UNetConfig, ddim_sample, ddpm_sample

FULL = {"size": 64, "num_timesteps": 1000, "ddim_steps": 50}
QUICK = {"size": 32, "num_timesteps": 100, "ddim_steps": 5}  # timing only: a 100-step schedule


def measure_sampling(
    quick: bool = False, batch: int = 1, threads: int | None = 1, repeats: int | None = None, seed: int = 0
) -> dict[str, float]:
    """Time ``ddpm_sample`` (all T steps) and ``ddim_sample`` (``ddim_steps``) with the tiny UNet on the CPU.

    Args:
        threads: torch threads while timing (None: leave torch's setting); restored afterwards.
        repeats: timed runs per sampler, the fastest kept (default 3 with ``quick``, else 1).

    Returns:
        the sizes, ``threads``, wall seconds per sample (``ddpm_s``, ``ddim_s``), process CPU seconds
        per sample (``ddpm_cpu_s``, ``ddim_cpu_s``: the fairer figures on a busy machine),
        milliseconds per step, and ``speedup`` (DDPM wall time / DDIM wall time).
    """
    size = QUICK if quick else FULL
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads or previous_threads)
    try:
        return _measure(size, batch, repeats or (3 if quick else 1), seed)
    finally:
        torch.set_num_threads(previous_threads)


def _measure(size: dict[str, int], batch: int, repeats: int, seed: int) -> dict[str, float]:
    torch.manual_seed(seed)
    model = UNet(UNetConfig.tiny()).eval()
    schedule = NoiseSchedule.linear(num_timesteps=size["num_timesteps"])
    shape = (batch, 1, size["size"], size["size"])
    with torch.no_grad():
        model(torch.zeros(shape), torch.zeros(batch, dtype=torch.long))  # warm-up (allocator, kernels)

    def timed(sample) -> tuple[float, float]:
        best_wall = best_cpu = float("inf")
        for _ in range(repeats):
            wall, cpu = time.perf_counter(), time.process_time()
            sample()
            best_wall = min(best_wall, (time.perf_counter() - wall) / batch)
            best_cpu = min(best_cpu, (time.process_time() - cpu) / batch)
        return best_wall, best_cpu

    generator = torch.Generator().manual_seed(seed)
    ddpm_s, ddpm_cpu_s = timed(lambda: ddpm_sample(model, schedule, shape, generator=generator, progress=False))
    ddim_s, ddim_cpu_s = timed(
        lambda: ddim_sample(model, schedule, shape, num_steps=size["ddim_steps"], generator=generator, progress=False)
    )
    return {
        **size,
        "ddpm_steps": size["num_timesteps"],
        "batch": batch,
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "ddpm_s": ddpm_s,
        "ddim_s": ddim_s,
        "ddpm_cpu_s": ddpm_cpu_s,
        "ddim_cpu_s": ddim_cpu_s,
        "ddpm_ms_per_step": 1000 * ddpm_s / size["num_timesteps"],
        "ddim_ms_per_step": 1000 * ddim_s / size["ddim_steps"],
        "speedup": ddpm_s / ddim_s,
    }


def ratio_rows(quick: bool = False) -> list[dict]:
    """The suite's row: DDPM (all T steps) / DDIM wall time; expected close to the ratio of steps."""
    r = measure_sampling(quick)
    steps_ratio = r["ddpm_steps"] / r["ddim_steps"]
    return [
        {
            "benchmark": f"DDIM-{r['ddim_steps']} vs DDPM-{r['ddpm_steps']} sampling time (untrained tiny UNet)",
            "ratio": r["speedup"],
            "goal": f"≥ {0.8 * steps_ratio:.0f}× (80% of the {steps_ratio:.0f}× fewer steps)",
            "met": r["speedup"] >= 0.8 * steps_ratio,
            "detail": f"{r['size']}×{r['size']} patch, {r['threads']} thread(s): {r['ddim_s']:.2f} s vs "
            f"{r['ddpm_s']:.2f} s per sample",
        }
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 32×32 patch and a 100-step schedule, a few seconds")
    parser.add_argument("--batch", type=int, default=1, help="samples drawn at once (times are per sample)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    r = measure_sampling(args.quick, args.batch, args.threads or None)
    print(f"tiny UNet, {r['size']}×{r['size']} patch, batch {r['batch']}, CPU, {r['threads']} threads")
    print(f"  DDPM {r['ddpm_steps']:>5} steps: {r['ddpm_s']:8.3f} s/sample ({r['ddpm_ms_per_step']:.2f} ms/step)")
    print(f"  DDIM {r['ddim_steps']:>5} steps: {r['ddim_s']:8.3f} s/sample ({r['ddim_ms_per_step']:.2f} ms/step)")
    print(
        f"  DDIM is {r['speedup']:.1f}x faster (wall clock; {r['ddpm_cpu_s'] / r['ddim_cpu_s']:.1f}x in CPU time), "
        f"expected about {r['ddpm_steps'] / r['ddim_steps']:.0f}x"
    )


if __name__ == "__main__":
    main()
