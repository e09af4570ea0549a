"""Benchmark: generation speed with the key/value cache against recomputing the whole prefix, same model, same tokens.

A randomly initialised tiny audio LM (``LMConfig.tiny()``: d_model 128, 4 layers, 4 heads, 1,026
tokens, 0.8 M parameters, rotary positions, ``max_seq_len`` 1,024) continues a random prompt of
``context - new_tokens`` tokens by ``new_tokens`` tokens (top-k 50, one seeded generator), so that the
last token is generated at the given context length. Both runs call
:func:`course_lib.lm.generation.generate`; the cached one (``use_cache=True``) includes its prefill of
the prompt, the other (``use_cache=False``) runs the model over the whole sequence at every step. The
tokens must be identical (checked), so the ratio of tokens per second is the cache's speed-up.

Without the cache a step at context L costs a forward pass over L positions; with it, one position
(plus attention over the L cached keys). So the speed-up grows with the context: roughly the context
length times the cost ratio of a one-position step to a batched position. The goal is ≥ 10× at 1,024.

    python benchmarks/bench_kv_cache.py                      # contexts 256, 512, 1,024 on the CPU, 1 thread
    python benchmarks/bench_kv_cache.py --device cuda        # the same on a GPU
    python benchmarks/bench_kv_cache.py --quick              # contexts 64 and 128, a few seconds

``measure_kv_cache`` is the importable version (for ``make bench``).

Notebook: notebooks/05_audio_language_model.ipynb quotes the figure (and measures it again, loosely).
"""

from __future__ import annotations

import argparse
import time

import torch

from course_lib.config import get_device
from course_lib.lm.generation import generate
from course_lib.lm.transformer import LMConfig, TokenLM

CONTEXTS = (256, 512, 1024)
QUICK_CONTEXTS = (64, 128)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_kv_cache(
    contexts: tuple[int, ...] = CONTEXTS,
    new_tokens: int = 64,
    batch: int = 1,
    device: str | torch.device | None = "cpu",
    threads: int | None = 1,
    repeats: int = 2,
    seed: int = 0,
) -> dict:
    """Tokens per second with and without the cache at each context length; identical tokens checked.

    Args:
        contexts: sequence lengths at which the last new token is generated.
        new_tokens: tokens generated per run (the prompt is ``context - new_tokens`` random tokens).
        device: ``"cpu"`` (default), ``"cuda"``, or None for :func:`course_lib.config.get_device`.
        threads: torch CPU threads while timing (None: leave torch's setting); restored afterwards.
        repeats: timed runs per method and context, the fastest kept.

    Returns:
        ``{"device", "threads", "parameters", "new_tokens", "batch", "rows": [{"context", "cached_tokens_per_s",
        "uncached_tokens_per_s", "speedup", "cpu_speedup", "identical"}, ...]}``; ``speedup`` is the ratio
        of wall times, ``cpu_speedup`` of process CPU times (the steadier figure on a busy machine).
    """
    device = get_device(device)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads or previous_threads)
    try:
        torch.manual_seed(seed)
        model = TokenLM(LMConfig(max_seq_len=max(contexts))).to(device).eval()
        rows = []
        for context in contexts:
            prompt = torch.randint(
                0, model.config.vocab_size, (batch, context - new_tokens), generator=torch.Generator().manual_seed(seed)
            )
            timings, cpu_timings, outputs = {}, {}, {}
            for use_cache in (True, False) * max(1, repeats):  # alternating; the fastest run of each is kept
                generator = torch.Generator().manual_seed(seed + 1)
                _synchronize(device)
                started, cpu_started = time.perf_counter(), time.process_time()
                out = generate(model, prompt, new_tokens, top_k=50, generator=generator, use_cache=use_cache)
                _synchronize(device)
                elapsed, cpu_elapsed = time.perf_counter() - started, time.process_time() - cpu_started
                timings[use_cache] = min(timings.get(use_cache, float("inf")), elapsed)
                cpu_timings[use_cache] = min(cpu_timings.get(use_cache, float("inf")), cpu_elapsed)
                outputs[use_cache] = out.cpu()
            rows.append(
                {
                    "context": context,
                    "cached_tokens_per_s": batch * new_tokens / timings[True],
                    "uncached_tokens_per_s": batch * new_tokens / timings[False],
                    "speedup": timings[False] / timings[True],
                    "cpu_speedup": cpu_timings[False] / cpu_timings[True],
                    "identical": bool(torch.equal(outputs[True], outputs[False])),
                }
            )
        return {
            "device": str(device),
            "threads": torch.get_num_threads(),
            "parameters": model.num_parameters(),
            "new_tokens": new_tokens,
            "batch": batch,
            "rows": rows,
        }
    finally:
        torch.set_num_threads(previous_threads)


def ratio_rows(quick: bool = False) -> list[dict]:
    """The suite's rows (``benchmarks/suite.py``): cached / uncached tokens per second at each context.

    Runs on :func:`course_lib.config.get_device` (``COURSE_DEVICE=cuda`` in ``make gpu-check``)."""
    contexts, new_tokens = (QUICK_CONTEXTS, 16) if quick else (CONTEXTS, 64)
    result = measure_kv_cache(contexts, new_tokens, device=None, repeats=1 if quick else 2)
    rows = []
    for row in result["rows"]:
        goal = row["context"] == max(contexts)
        rows.append(
            {
                "benchmark": f"KV cache vs recomputing the prefix, context {row['context']:,} ({result['device']})",
                "ratio": row["speedup"],
                "goal": "≥ 10× with identical tokens" if goal and not quick else None,
                "met": (row["speedup"] >= 10 and row["identical"]) if goal and not quick else None,
                "detail": f"{row['cached_tokens_per_s']:.0f} vs {row['uncached_tokens_per_s']:.1f} tokens/s "
                f"(CPU time {row['cpu_speedup']:.1f}×), "
                f"{new_tokens} new tokens, {result['threads']} thread(s), identical tokens: {row['identical']}",
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="contexts 64 and 128, 16 new tokens")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, or 'auto' (cuda → mps → cpu)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--batch", type=int, default=1, help="sequences generated at once")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    contexts, new_tokens = (QUICK_CONTEXTS, 16) if args.quick else (CONTEXTS, 64)
    result = measure_kv_cache(
        contexts,
        new_tokens,
        args.batch,
        None if args.device == "auto" else args.device,
        args.threads or None,
        args.repeats,
    )
    print(
        f"tiny LM ({result['parameters'] / 1e6:.2f} M parameters), {result['new_tokens']} new tokens, batch "
        f"{result['batch']}, {result['device']}, {result['threads']} thread(s)"
    )
    print(f"{'context':>8} {'cached tok/s':>13} {'uncached tok/s':>15} {'speed-up':>9} {'(CPU time)':>11}  same tokens")
    for row in result["rows"]:
        print(
            f"{row['context']:>8} {row['cached_tokens_per_s']:>13.0f} {row['uncached_tokens_per_s']:>15.1f} "
            f"{row['speedup']:>8.1f}x {row['cpu_speedup']:>10.1f}x  {row['identical']}"
        )
    if not all(row["identical"] for row in result["rows"]):
        raise SystemExit("cached and uncached generation gave different tokens")


if __name__ == "__main__":
    main()
