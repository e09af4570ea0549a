"""Benchmark: the shipped tiny neural codec's speed and its bitrate -> quality curve, against Opus and μ-law/MDCT.

**Speed.** Encode + decode of ``clips`` held-out 2-second clips (one batch, 12 levels = 6 kbps) by
``course_lib.codec.load_tiny_codec()`` on the CPU, at 1 and 2 torch threads; the real-time factor is
seconds of audio per second of wall time (goal: at least 10x real time). Best of ``repeats`` runs
after one warm-up. For reference the same clips go through Opus at 6 kbps (``opusenc``/``opusdec``,
one process per clip and tool, so its time includes process start-up and file I/O) and through the
μ-law/MDCT baseline.

**Quality.** On the same held-out clips (``SynthMusic(seed=1)``, never trained on): the multi-scale
mel distance (``course_lib.metrics.multi_scale_mel_distance``, lower is better) and SI-SDR of the
codec at 1.5 / 3 / 6 kbps, of the μ-law/MDCT baseline at the same bitrates (its best bits per
coefficient on these clips), and of Opus at 6, 8 and 12 kbps (constant bitrate; 6 kbps is Opus's
minimum, so 1.5 and 3 kbps have no Opus entry). Ratios are Opus's (or the baseline's) distance over
the codec's at the same bitrate: above 1 means the codec is closer to the original.

    python benchmarks/bench_codec.py                 # 32 clips
    python benchmarks/bench_codec.py --quick         # 4 clips, a smoke test

``measure_codec`` is the importable version (``make bench``).
"""

from __future__ import annotations

import argparse
import time

import torch

from course_lib.codec import load_tiny_codec
from course_lib.codec.baselines import MuLawMDCTCodec, best_mdct_baseline, opus_available, opus_roundtrip
from course_lib.data.splits import held_out_audio
from course_lib.metrics import multi_scale_mel_distance, real_time_factor, si_sdr_db

BITRATES = {1.5: 3, 3.0: 6, 6.0: 12}  # kbps: levels
OPUS_KBPS = (6, 8, 12)


def _best_time(work, repeats: int) -> float:
    work()  # warm-up: first-call allocations, lazy initialisation
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best


def _mel(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    return multi_scale_mel_distance(reference, estimate).mean().item()


def measure_codec(quick: bool = False, repeats: int = 3, threads: tuple[int, ...] = (1, 2)) -> dict:
    """Real-time factors and the quality table; returns a dict (see the module docstring for what is measured)."""
    clips = held_out_audio(4 if quick else 32)  # (N, 32000)
    seconds = clips.numel() / 16_000
    codec = load_tiny_codec("cpu")
    result: dict = {"clips": clips.shape[0], "audio_seconds": seconds, "speed": {}, "quality": {}}

    before = torch.get_num_threads()
    for count in threads:
        torch.set_num_threads(count)

        def roundtrip() -> None:
            with torch.no_grad():
                codec.decode(codec.encode(clips))

        result["speed"][f"codec, {count} thread{'s' * (count > 1)}"] = real_time_factor(
            seconds, _best_time(roundtrip, repeats)
        )
    torch.set_num_threads(before)
    baseline = MuLawMDCTCodec(6000, bits=3)
    result["speed"]["mu-law/MDCT"] = real_time_factor(seconds, _best_time(lambda: baseline.roundtrip(clips), repeats))
    if opus_available():
        result["speed"]["Opus (opusenc + opusdec processes)"] = real_time_factor(
            seconds, _best_time(lambda: opus_roundtrip(clips, 16_000, 6), 1)
        )

    with torch.no_grad():
        codes = codec.encode(clips)  # (N, 12, frames)
    for kbps, n_q in BITRATES.items():
        decoded = codec.decode(codes[:, :n_q], length=clips.shape[-1])
        mdct_codec, mdct_audio = best_mdct_baseline(clips, kbps * 1000, _mel)
        row = {
            "codec": _mel(clips, decoded),
            "codec_si_sdr_db": si_sdr_db(clips, decoded).mean().item(),
            "mu-law/MDCT": _mel(clips, mdct_audio),
            "mu-law/MDCT_bits": mdct_codec.bits,
        }
        result["quality"][kbps] = row
    if opus_available():
        for kbps in OPUS_KBPS:
            rebuilt = opus_roundtrip(clips, 16_000, kbps)
            result["quality"].setdefault(float(kbps), {})["Opus"] = _mel(clips, rebuilt)
            result["quality"][float(kbps)]["Opus_si_sdr_db"] = si_sdr_db(clips, rebuilt).mean().item()
    return result


def ratio_rows(quick: bool = False) -> list[dict]:
    """The suite's rows (``benchmarks/suite.py``): real-time factors, then mel-distance ratios at equal bitrate."""
    result = measure_codec(quick, repeats=1 if quick else 3)
    speed = result["speed"]
    rows = [
        {
            "benchmark": f"codec encode+decode, {name.removeprefix('codec, ')} (× real time)",
            "ratio": rtf,
            "goal": "≥ 10× real time" if not quick else None,
            "met": rtf >= 10 if not quick else None,
            "detail": f"{result['clips']} held-out clips, {result['audio_seconds']:.0f} s of audio, 6 kbps, CPU"
            + (f"; Opus process pair {speed['Opus (opusenc + opusdec processes)']:.1f}×" if len(speed) > 3 else ""),
        }
        for name, rtf in speed.items()
        if name.startswith("codec")
    ]
    for kbps, row in sorted(result["quality"].items()):
        for peer in ("mu-law/MDCT", "Opus"):
            if peer in row and "codec" in row:
                rows.append(
                    {
                        "benchmark": f"mel distance at {kbps:g} kbps: {peer} / codec",
                        "ratio": row[peer] / row["codec"],
                        "goal": None,
                        "met": None,
                        "detail": f"{row[peer]:.2f} vs {row['codec']:.2f} (multi-scale mel distance, lower is better)",
                    }
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 clips instead of 32")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    result = measure_codec(args.quick, args.repeats)
    print(f"{result['clips']} held-out clips, {result['audio_seconds']:.0f} s of audio at 16 kHz")
    print("\nencode + decode speed (x real time; goal for the codec: >= 10x):")
    for name, rtf in result["speed"].items():
        print(f"  {name:<40}{rtf:>8.1f}x")
    print("\nmulti-scale mel distance (lower is better) and ratios to the codec at the same bitrate:")
    print(f"  {'kbps':>5}{'codec':>8}{'SI-SDR':>9}{'mu-law/MDCT':>13}{'ratio':>7}{'Opus':>8}{'ratio':>7}")
    for kbps, row in sorted(result["quality"].items()):
        codec = row.get("codec")
        cells = f"  {kbps:>5g}" + (f"{codec:>8.3f}{row['codec_si_sdr_db']:>7.1f}dB" if codec else f"{'-':>8}{'-':>9}")
        if "mu-law/MDCT" in row:
            cells += f"{row['mu-law/MDCT']:>13.2f}{row['mu-law/MDCT'] / codec:>6.2f}x"
        else:
            cells += f"{'-':>13}{'-':>7}"
        if "Opus" in row:
            cells += f"{row['Opus']:>8.2f}" + (f"{row['Opus'] / codec:>6.2f}x" if codec else f"{'-':>7}")
        print(cells)
    if not opus_available():
        print("  (Opus skipped: install opus-tools for opusenc/opusdec)")


if __name__ == "__main__":
    main()
