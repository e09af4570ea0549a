"""``make bench``: every benchmark's ratios in one table, printed and written to ``benchmarks/results.json``.

Each ``benchmarks/bench_*.py`` defines ``ratio_rows(quick: bool) -> list[dict]``: one row per claim, each
a ratio measured side by side with its reference in this process, with keys

- ``benchmark``: what is compared ("k-means vs scikit-learn, same init");
- ``ratio``: the measured ratio (how many times faster, or a quality ratio);
- ``goal``: the target as text ("≥ 1.3×") and ``met``: whether the ratio reaches it (None: no goal);
- ``detail``: the raw figures behind the ratio.

A benchmark whose peer package is missing is listed as skipped with the reason (the peers are the
``bench`` extra: ``pip install -e ".[bench]"``, which ``make bench`` installs). The JSON also records the
machine, device, threads and versions, so tables from different machines can be told apart.

    python benchmarks/suite.py            # the full sizes (tens of minutes on a 2-core CPU)
    python benchmarks/suite.py --quick    # small sizes: a smoke test of every benchmark
    python benchmarks/suite.py --only kmeans vector_quantizer
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from course_lib.atomic import atomic_write
from course_lib.config import get_device

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.json"


def machine() -> dict[str, Any]:
    """Where the figures were measured: CPU model and cores, device, torch and Python versions."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    device = get_device()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(quick: bool, only: list[str] | None = None) -> dict[str, Any]:
    """Run every benchmark's ``ratio_rows``; a failing or unavailable one becomes a row that says why."""
    rows: list[dict[str, Any]] = []
    for path in sorted(HERE.glob("bench_*.py")):
        name = path.stem.removeprefix("bench_")
        if only and name not in only:
            continue
        started = time.perf_counter()
        try:
            module = load(path)
            found = module.ratio_rows(quick)
        except ImportError as error:
            found = [{"benchmark": name, "skipped": f"{error} (pip install -e '.[bench]')"}]
        except Exception as error:  # one broken benchmark must not hide the others' figures
            traceback.print_exc()
            found = [{"benchmark": name, "skipped": f"failed: {type(error).__name__}: {error}"}]
        seconds = time.perf_counter() - started
        for row in found:
            rows.append({"script": path.name, "seconds": round(seconds, 1), **row})
        print(f"{path.name}: {seconds:.0f} s", file=sys.stderr)
    return {"machine": machine(), "quick": quick, "rows": rows}


def _cell(value: Any) -> str:
    """A Markdown table cell: a ``|`` in the text would end it early."""
    return str(value).replace("|", "\\|")


def format_table(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"{m['cpu']} ({m['cores']} cores), device {m['device']}{' ' + m['gpu'] if m['gpu'] else ''}, "
        f"torch {m['torch']}, {m['date']}{' (quick sizes)' if results['quick'] else ''}",
        "",
        "| benchmark | ratio | goal | met | measured |",
        "|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        name = _cell(row["benchmark"])
        if "skipped" in row:
            lines.append(f"| {name} | — | — | skipped | {_cell(row['skipped'])} |")
            continue
        met = {True: "yes", False: "**no**", None: "—"}[row.get("met")]
        lines.append(
            f"| {name} | {row['ratio']:.2f}× | {_cell(row.get('goal') or '—')} | {met} | {_cell(row['detail'])} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument("--only", nargs="*", help="benchmark names (file names without bench_ and .py)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"where to write the JSON (default {RESULTS})")
    args = parser.parse_args(argv)
    results = run(args.quick, args.only)
    print(format_table(results))
    atomic_write(args.out, lambda file: file.write(json.dumps(results, indent=2).encode()))
    print(f"\nwritten to {args.out}")
    return results


if __name__ == "__main__":
    main()
