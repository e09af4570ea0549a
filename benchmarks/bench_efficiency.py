"""How close the course's heavy cores come to the machine's limit: achieved FLOP/s against a large matmul.

A large square matrix multiply is the fastest thing a CPU or GPU does (it is what the vendors' BLAS
libraries are tuned for), so its FLOP/s is the practical ceiling. Each core's training step (forward and
backward) is run on the same device, its matrix-multiply and convolution FLOPs counted with
``torch.utils.flop_counter.FlopCounterMode`` (element-wise work is not counted: a step that spends its
time there scores low, which is the point), and timed; the ratio achieved / ceiling says how much of the
machine the step uses. Far below 1, the time goes elsewhere: small matrices, memory-bound element-wise
operations, Python overhead per operation — ``benchmarks/README.md`` says where for each.

    python benchmarks/bench_efficiency.py [--quick] [--device cuda] [--threads N] [--profile]

``measure_efficiency`` is the importable version; ``ratio_rows`` gives ``make bench`` its rows.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from course_lib.codec import Codec, CodecConfig, multi_scale_spectral_loss
from course_lib.config import get_device
from course_lib.diffusion import DiffusionLoss, NoiseSchedule, UNet, UNetConfig
from course_lib.lm.transformer import LMConfig, TokenLM
from course_lib.quantize import VQVAE, VectorQuantizer, VQVAEConfig


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step: Callable[[], None], device: torch.device, repeats: int) -> float:
    """Best wall time of ``repeats`` calls, after one warm-up call."""
    step()
    best = float("inf")
    for _ in range(repeats):
        _synchronize(device)
        start = time.perf_counter()
        step()
        _synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def counted_flops(step: Callable[[], None]) -> int:
    """Matrix-multiply and convolution FLOPs of one ``step``, counted on one thread.

    The counter is a dispatch mode of the calling thread: work that the course hands to a thread pool
    (``quantize.kmeans.nearest_centers`` on several CPU threads) would not be seen, so count with one.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with FlopCounterMode(display=False) as counter:
            step()
    finally:
        torch.set_num_threads(previous)
    return counter.get_total_flops()


def matmul_ceiling(device: torch.device, size: int, repeats: int) -> float:
    """FLOP/s of a ``size × size`` float32 matrix multiply (2·size³ FLOPs)."""
    a, b = (torch.randn(size, size, device=device) for _ in range(2))
    return 2 * size**3 / timed(lambda: a @ b, device, repeats)


def workloads(device: torch.device, quick: bool) -> dict[str, Callable[[], None]]:
    """One training step (forward + backward) of each core, at the tiny presets' sizes."""
    torch.manual_seed(0)
    vq = VectorQuantizer(dim=64, codebook_size=1024, use_ema=True).to(device).train()
    z = torch.randn(4 if quick else 16, 64, 2048 if not quick else 512, device=device, requires_grad=True)  # (B, D, T)

    def vq_step() -> None:
        out = vq(z)
        (out.quantized.square().mean() + out.loss).backward()

    vqvae = VQVAE(VQVAEConfig.tiny(strides=(4, 4))).to(device).train()
    wav = torch.randn(8, 4096 if not quick else 1024, device=device)  # (B, T)

    def vqvae_step() -> None:
        vqvae(wav).loss.backward()

    unet = UNet(UNetConfig.tiny()).to(device).train()
    loss = DiffusionLoss(NoiseSchedule.linear().to(device))
    patches = torch.randn(8 if not quick else 2, 1, 64, 64, device=device)  # (B, 1, M, N)

    def unet_step() -> None:
        loss(unet, patches)["loss"].backward()

    codec = Codec(CodecConfig.tiny(kmeans_init=False)).to(device).train()
    clips = torch.randn(8 if not quick else 2, 16_000 if not quick else 4_000, device=device)  # (B, T)

    def codec_step() -> None:
        out = codec(clips)
        (multi_scale_spectral_loss(clips, out.audio) + out.vq.loss).backward()

    lm = TokenLM(LMConfig.tiny()).to(device).train()
    tokens = torch.randint(1024, (8 if not quick else 2, 256 if not quick else 64), device=device)  # (B, T)

    def lm_step() -> None:
        logits = lm(tokens[:, :-1])  # (B, T - 1, V)
        torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten()).backward()

    return {
        "VectorQuantizer (EMA), 1,024 codes": vq_step,
        "VQ-VAE, hop 16": vqvae_step,
        "codec (tiny) + spectral loss, 1 s clips": codec_step,
        "transformer LM (tiny), 256 tokens": lm_step,
        "UNet (tiny), 64×64 mel": unet_step,
    }


def profile_cores(quick: bool = False, device: str | None = None, top: int = 6) -> dict[str, list[tuple[str, float]]]:
    """Per core, the ``top`` operators by self time in one step: ``[(name, share of the step's self time)]``.

    ``torch.profiler`` on the calling thread (run with one thread so nothing hides in a pool).
    """
    dev = get_device(device)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if dev.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    shares = {}
    for name, step in workloads(dev, quick).items():
        step()  # warm-up
        with torch.profiler.profile(activities=activities) as profiler:
            step()
            _synchronize(dev)
        events = [e for e in profiler.key_averages() if e.self_device_time_total or e.self_cpu_time_total]
        key = "self_device_time_total" if dev.type == "cuda" else "self_cpu_time_total"
        total = sum(getattr(e, key) for e in events) or 1.0
        ranked = sorted(events, key=lambda e: getattr(e, key), reverse=True)[:top]
        shares[name] = [(e.key, getattr(e, key) / total) for e in ranked]
    return shares


def measure_efficiency(quick: bool = False, device: str | None = None, threads: int | None = None) -> dict:
    """The ceiling and, per core, GFLOP per step, seconds per step and the fraction of the ceiling."""
    dev = get_device(device)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads or previous)
    repeats = 2 if quick else 5
    try:
        size = 1024 if quick else 2048
        ceiling, cores = 0.0, {}
        for name, step in workloads(dev, quick).items():
            # The ceiling is re-measured beside every core and the best kept: on a shared machine one
            # measurement can catch a busy moment.
            ceiling = max(ceiling, matmul_ceiling(dev, size, repeats))
            cores[name] = {"gflop": counted_flops(step) / 1e9, "seconds": timed(step, dev, repeats)}
        ceiling = max(ceiling, matmul_ceiling(dev, size, repeats))
        for core in cores.values():
            core["fraction"] = core["gflop"] * 1e9 / core["seconds"] / ceiling
    finally:
        torch.set_num_threads(previous)
    return {"device": str(dev), "threads": threads or previous, "matmul_gflops": ceiling / 1e9, "cores": cores}


def ratio_rows(quick: bool = False) -> list[dict]:
    """The suite's rows: each core's achieved FLOP/s as a fraction of the large-matmul ceiling (no goal)."""
    r = measure_efficiency(quick, threads=1 if get_device().type == "cpu" else None)
    return [
        {
            "benchmark": f"{name}: achieved FLOP/s / large matmul ({r['device']})",
            "ratio": core["fraction"],
            "goal": None,
            "met": None,
            "detail": f"{core['gflop']:.2f} GFLOP in {1000 * core['seconds']:.0f} ms per step; matmul ceiling "
            f"{r['matmul_gflops']:.0f} GFLOP/s, {r['threads']} thread(s)",
        }
        for name, core in r["cores"].items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: the course's choice)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1; 0: torch's count)")
    parser.add_argument("--profile", action="store_true", help="also list each core's most expensive operators")
    args = parser.parse_args()
    r = measure_efficiency(args.quick, args.device, args.threads or None)
    print(f"{r['device']}, {r['threads']} thread(s): large float32 matmul {r['matmul_gflops']:.0f} GFLOP/s")
    for name, core in r["cores"].items():
        print(
            f"  {name:<38} {core['gflop']:7.2f} GFLOP/step {1000 * core['seconds']:8.1f} ms/step "
            f"{core['gflop'] / core['seconds']:7.1f} GFLOP/s = {100 * core['fraction']:5.1f}% of the matmul"
        )
    if args.profile:
        if args.threads:
            torch.set_num_threads(args.threads)
        for name, ranked in profile_cores(args.quick, args.device).items():
            print(f"\n{name}: share of the step's operator self time")
            for op, share in ranked:
                print(f"  {100 * share:5.1f}%  {op}")


if __name__ == "__main__":
    main()
