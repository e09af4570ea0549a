"""How fast SynthMusic generates clips, against the budget of 1,000 two-second clips in 30 s on one core.

Run ``python benchmarks/bench_synth_music.py [n_clips]``; ``measure_synth_music`` is the importable
version (for ``make bench``). Generation (audio, score, caption) and the controls (melody, loudness,
onsets, beats) are timed separately; the budget applies to both together.

Notebook: notebooks/00_audio_and_data.ipynb quotes the figure.
"""

from __future__ import annotations

import sys
import time

import torch

from course_lib.data import SynthMusic

BUDGET_SECONDS = 30.0  # for 1,000 two-second clips, one core
BUDGET_CLIPS = 1000


def measure_synth_music(n_clips: int = BUDGET_CLIPS, seconds: float = 2.0, seed: int = 0) -> dict[str, float]:
    """Generate ``n_clips`` clips and their controls on one thread and time both.

    Returns:
        ``n_clips``, ``generate_s``, ``controls_s``, ``total_s`` (wall clock), ``cpu_s`` (CPU time of
        this process: close to ``total_s`` on an idle machine, and the fairer figure on a busy one),
        ``clips_per_s``, and ``budget_ratio``: how many times under budget (> 1 is good, wall clock,
        scaled to 1,000 clips).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        dataset = SynthMusic(n_clips=n_clips, seconds=seconds, seed=seed)
        _ = dataset[0].controls  # warm-up: torch's first-call set-up and the caches are not what we time
        start, cpu_start = time.perf_counter(), time.process_time()
        clips = [dataset[i] for i in range(n_clips)]
        generated = time.perf_counter()
        for clip in clips:
            _ = clip.controls
        done, cpu_done = time.perf_counter(), time.process_time()
    finally:
        torch.set_num_threads(threads)
    total = done - start
    return {
        "n_clips": n_clips,
        "generate_s": generated - start,
        "controls_s": done - generated,
        "total_s": total,
        "cpu_s": cpu_done - cpu_start,
        "clips_per_s": n_clips / total,
        "budget_ratio": BUDGET_SECONDS * n_clips / BUDGET_CLIPS / total,
    }


def ratio_rows(quick: bool = False) -> list[dict]:
    """The suite's row: how many times under the budget of 1,000 two-second clips (with controls) in 30 s."""
    r = measure_synth_music(100 if quick else BUDGET_CLIPS)
    return [
        {
            "benchmark": "SynthMusic clips + controls vs the budget (1,000 × 2 s in 30 s, one thread)",
            "ratio": r["budget_ratio"],
            "goal": "≥ 1×",
            "met": r["budget_ratio"] >= 1,
            "detail": f"{r['n_clips']} clips in {r['total_s']:.1f} s = {r['clips_per_s']:.0f} clips/s",
        }
    ]


def main(n_clips: int = BUDGET_CLIPS) -> dict[str, float]:
    result = measure_synth_music(n_clips)
    ratio = result["budget_ratio"]
    verdict = f"{ratio:.1f}× under budget" if ratio >= 1 else f"OVER budget ({1 / ratio:.1f}× too slow)"
    print(
        f"{result['n_clips']} clips in {result['total_s']:.1f} s = {result['clips_per_s']:.0f} clips/s "
        f"(audio + metadata {result['generate_s']:.1f} s, controls {result['controls_s']:.1f} s; "
        f"CPU time {result['cpu_s']:.1f} s); "
        f"budget {BUDGET_SECONDS * n_clips / BUDGET_CLIPS:.0f} s → {verdict}"
    )
    return result


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else BUDGET_CLIPS)
