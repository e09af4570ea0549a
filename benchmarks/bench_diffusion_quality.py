"""Benchmark: how much quality fast samplers keep, on the trained tiny spectrogram model, side by side.

The shipped teacher (``course_lib/checkpoints/ddpm_tiny.safetensors``) samples ``n`` log-mel patches
with DDPM's Algorithm 2 (1,000 steps) and with DDIM (50 steps, η = 0), from the same x_T; the shipped
students sample the same number with 4 distilled DDIM steps (progressive distillation) and with 1 and
2 consistency steps. Quality is the Fréchet mel distance (FMD, :func:`course_lib.metrics.frechet_mel_distance`) of
each set to every frame of 256 held-out SynthMusic clips (``seed=1``), beside two anchors of the same
size: real patches from another unseen seed (``seed=2``, the floor: what a perfect model would score
with ``n`` patches) and pure noise (where every sampler starts). Lower is better.

Ratios printed: DDPM-1000 wall time / DDIM-50 wall time (expected about 1,000 / 50 = 20×), FMD(DDIM-50) /
FMD(DDPM-1000) (the goal: within 15%, i.e. ≤ 1.15), and each student's FMD / FMD(DDIM-50).

    python benchmarks/bench_diffusion_quality.py            # n = 16 patches per sampler (about 7 minutes on one core)
    python benchmarks/bench_diffusion_quality.py --quick    # n = 4 (about 2 minutes; noisy FMDs)

``measure_diffusion_quality`` is the importable version (for ``make bench``); it returns a dict.

Notebook: notebooks/10_fast_sampling.ipynb measures the same things on fewer samples.
"""

from __future__ import annotations

import argparse
import time

import torch

from course_lib.diffusion import (
    MelPatches,
    consistency_sample,
    ddim_sample,
    ddpm_sample,
    frechet_mel_distance,
    held_out_patches,
    load_tiny_consistency,
    load_tiny_ddpm,
    load_tiny_distilled,
)


def measure_diffusion_quality(n: int = 16, threads: int | None = 1, seed: int = 0) -> dict[str, float]:
    """Sample ``n`` patches with each sampler, time it and score it; see the module docstring.

    Args:
        threads: torch threads while measuring (None: leave torch's setting); restored afterwards.

    Returns:
        ``n``, ``threads``, per sampler ``<name>_s`` (wall seconds per sample) and ``<name>_fmd``, the
        anchors ``real_fmd`` and ``noise_fmd``, and the ratios ``speedup_ddim50``, ``fmd_ratio_ddim50``
        (DDIM-50 / DDPM-1000), ``fmd_ratio_distilled4`` / ``fmd_ratio_consistency1`` /
        ``fmd_ratio_consistency2`` (each / DDIM-50).
    """
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads or previous_threads)
    try:
        return _measure(n, seed)
    finally:
        torch.set_num_threads(previous_threads)


def _measure(n: int, seed: int) -> dict[str, float]:
    teacher, distilled, consistency = load_tiny_ddpm("cpu"), load_tiny_distilled("cpu"), load_tiny_consistency("cpu")
    reference = held_out_patches(256).log_mels  # (256, 64, 201): every frame of 256 unseen clips
    shape = (n, *teacher.shape)
    x_T = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    samplers = {
        "ddpm1000": lambda: ddpm_sample(
            teacher.model, teacher.schedule, shape, prediction_type=teacher.prediction_type, noise=x_T,
            generator=torch.Generator().manual_seed(seed + 1), progress=False,
        ),
        "ddim50": lambda: ddim_sample(
            teacher.model, teacher.schedule, shape, num_steps=50, prediction_type=teacher.prediction_type,
            noise=x_T, progress=False,
        ),
        "distilled4": lambda: ddim_sample(
            distilled.model, distilled.schedule, shape, num_steps=4, spacing="trailing",
            prediction_type=distilled.prediction_type, noise=x_T, progress=False,
        ),
        "consistency1": lambda: consistency_sample(
            consistency.model, consistency.schedule, shape, num_steps=1, noise=x_T, progress=False
        ),
        "consistency2": lambda: consistency_sample(
            consistency.model, consistency.schedule, shape, num_steps=2, noise=x_T,
            generator=torch.Generator().manual_seed(seed + 2), progress=False,
        ),
    }  # fmt: skip
    result: dict[str, float] = {"n": n, "threads": torch.get_num_threads()}
    with torch.no_grad():
        teacher.model(x_T[:1], torch.zeros(1, dtype=torch.long))  # warm-up
        for name, sample in samplers.items():
            best_wall = best_cpu = float("inf")
            for _ in range(1 if name == "ddpm1000" else 3):  # the short runs: best of 3 (a busy machine)
                wall, cpu = time.perf_counter(), time.process_time()
                x = sample()
                best_wall = min(best_wall, (time.perf_counter() - wall) / n)
                best_cpu = min(best_cpu, (time.process_time() - cpu) / n)
            result[f"{name}_s"], result[f"{name}_cpu_s"] = best_wall, best_cpu
            result[f"{name}_fmd"] = frechet_mel_distance(teacher.to_log_mel(x), reference)
    real = MelPatches(n, seed=2).fixed_batch()  # n real patches from clips nobody trained or evaluated on
    result["real_fmd"] = frechet_mel_distance(teacher.to_log_mel(real), reference)
    result["noise_fmd"] = frechet_mel_distance(teacher.to_log_mel(x_T), reference)
    result["speedup_ddim50"] = result["ddpm1000_s"] / result["ddim50_s"]
    result["cpu_speedup_ddim50"] = result["ddpm1000_cpu_s"] / result["ddim50_cpu_s"]
    result["fmd_ratio_ddim50"] = result["ddim50_fmd"] / result["ddpm1000_fmd"]
    for name in ("distilled4", "consistency1", "consistency2"):
        result[f"fmd_ratio_{name}"] = result[f"{name}_fmd"] / result["ddim50_fmd"]
    return result


def ratio_rows(quick: bool = False) -> list[dict]:
    """The suite's rows: DDIM-50's speed-up and quality against DDPM-1000, the students' quality against DDIM-50."""
    r = measure_diffusion_quality(4 if quick else 16)
    anchors = f"n={r['n']}; FMD real {r['real_fmd']:.0f}, noise {r['noise_fmd']:.0f}"
    return [
        {
            "benchmark": "DDIM-50 vs DDPM-1000 wall time (shipped tiny DDPM)",
            "ratio": r["speedup_ddim50"],
            "goal": "≥ 15×",
            "met": r["speedup_ddim50"] >= 15,
            "detail": f"{r['ddim50_s']:.2f} s vs {r['ddpm1000_s']:.2f} s per sample",
        },
        {
            "benchmark": "FMD of DDIM-50 / FMD of DDPM-1000 (lower is better)",
            "ratio": r["fmd_ratio_ddim50"],
            "goal": "≤ 1.15×",
            "met": r["fmd_ratio_ddim50"] <= 1.15,
            "detail": f"{r['ddim50_fmd']:.0f} vs {r['ddpm1000_fmd']:.0f} ({anchors})",
        },
        {
            "benchmark": "FMD of the 4-step distilled student / DDIM-50",
            "ratio": r["fmd_ratio_distilled4"],
            "goal": None,
            "met": None,
            "detail": f"{r['distilled4_fmd']:.0f} vs {r['ddim50_fmd']:.0f} ({anchors})",
        },
        {
            "benchmark": "FMD of 1-step consistency sampling / DDIM-50",
            "ratio": r["fmd_ratio_consistency1"],
            "goal": None,
            "met": None,
            "detail": f"{r['consistency1_fmd']:.0f} vs {r['ddim50_fmd']:.0f} ({anchors})",
        },
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 patches per sampler instead of 16")
    parser.add_argument("--n", type=int, default=None, help="patches per sampler (default 16, or 4 with --quick)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    n = args.n or (4 if args.quick else 16)
    r = measure_diffusion_quality(n, args.threads or None)
    print(
        f"tiny spectrogram DDPM (shipped checkpoints), {n} patches of 64x64 per sampler, CPU, {r['threads']} thread(s)"
    )
    print(
        f"  FMD to 256 held-out clips (lower is better): real patches {r['real_fmd']:.0f}, noise {r['noise_fmd']:.0f}"
    )
    rows = [
        ("DDPM, 1,000 steps", "ddpm1000", 1000),
        ("DDIM, 50 steps", "ddim50", 50),
        ("distilled, 4 steps", "distilled4", 4),
        ("consistency, 1 step", "consistency1", 1),
        ("consistency, 2 steps", "consistency2", 2),
    ]
    for label, key, steps in rows:
        print(f"  {label:<22} {steps:>5} evaluations  {r[key + '_s']:8.3f} s/sample  FMD {r[key + '_fmd']:6.0f}")
    within = "yes" if r["fmd_ratio_ddim50"] <= 1.15 else "no"
    print(
        f"  DDIM-50 is {r['speedup_ddim50']:.1f}x faster than DDPM-1000 in wall time, {r['cpu_speedup_ddim50']:.1f}x "
        "in CPU time (expected about 20x)"
    )
    print(f"  FMD ratio DDIM-50 / DDPM-1000: {r['fmd_ratio_ddim50']:.2f} (goal <= 1.15: {within})")
    for label, key in (
        ("distilled 4-step", "distilled4"),
        ("consistency 1-step", "consistency1"),
        ("consistency 2-step", "consistency2"),
    ):
        print(f"  FMD ratio {label} / DDIM-50: {r['fmd_ratio_' + key]:.2f}")


if __name__ == "__main__":
    main()
