"""``python -m course_lib doctor``: a self-check to paste into bug reports.

It prints the versions that matter, the device the course will use, the thread count, the data
directory, and ``[OK]`` / ``[FAIL]`` for each requirement and setting (``COURSE_DEVICE``,
``COURSE_SCALE``), with what fixes a failure. It exits with status 1 when any check failed, so a
script (``make doctor``, CI) stops there.
"""

from __future__ import annotations

import importlib.metadata as metadata
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass

from packaging.requirements import Requirement
from packaging.version import Version

# The pair known to work together (checked on CPU-only Linux); torchaudio 2.11 is its last release.
KNOWN_GOOD_PAIR = ("2.14.1", "2.11.0")
FIX_TORCH_PAIR = f'pip install "torch=={KNOWN_GOOD_PAIR[0]}" "torchaudio=={KNOWN_GOOD_PAIR[1]}"'
OPTIONAL_TOOLS = {
    "opusenc": "Opus comparison in notebook 04 (apt install opus-tools / brew install opus-tools)",
    "chromium": "browser tests (apt install chromium)",
}


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"[{'OK' if self.ok else 'FAIL'}] {self.name}: {self.detail}"
        return text + (f"\n       fix: {self.fix}" if not self.ok and self.fix else "")


def installed_version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def requirement_checks() -> list[Check]:
    """One check per runtime requirement of ``course-lib``: installed, and inside the declared range."""
    try:
        declared = metadata.requires("course-lib") or []
    except metadata.PackageNotFoundError:
        return [Check("course-lib", False, "not installed", "pip install -e . (from the repository root)")]
    checks = []
    for text in declared:
        requirement = Requirement(text)
        if requirement.marker is not None:  # extras (dev, bench) are optional
            continue
        version = installed_version(requirement.name)
        if version is None:
            checks.append(Check(requirement.name, False, "not installed", f'pip install "{requirement}"'))
            continue
        inside = requirement.specifier.contains(Version(version).base_version, prereleases=True)
        checks.append(
            Check(
                requirement.name,
                inside,
                f"{version} (needs {requirement.specifier})",
                "" if inside else f'pip install "{requirement}"',
            )
        )
    return checks


def torchaudio_pair_check() -> Check:
    """Import torchaudio in a fresh interpreter: a torch/torchaudio pair built apart fails only there."""
    torch_version, audio_version = installed_version("torch"), installed_version("torchaudio")
    if torch_version is None or audio_version is None:
        return Check("torch + torchaudio", False, "one of them is missing", FIX_TORCH_PAIR)
    result = subprocess.run(
        [sys.executable, "-c", "import torchaudio.functional"], capture_output=True, text=True, timeout=300
    )
    if result.returncode == 0:
        return Check("torch + torchaudio", True, f"{torch_version} + {audio_version} import together")
    last_line = (result.stderr.strip().splitlines() or ["(no message)"])[-1]
    return Check(
        "torch + torchaudio",
        False,
        f"torch {torch_version} and torchaudio {audio_version} do not work together ({last_line[:160]})",
        FIX_TORCH_PAIR,
    )


def torch_check() -> Check:
    """torch imports and runs one operation."""
    try:
        import torch

        torch.ones(2).sum().item()
    except Exception as error:  # a broken install raises anything from ImportError to OSError
        return Check(
            "torch import", False, f"cannot be used ({type(error).__name__}: {str(error)[:160]})", FIX_TORCH_PAIR
        )
    return Check("torch import", True, f"{torch.__version__}, {torch.get_num_threads()} threads")


def device_check() -> Check:
    """The device ``COURSE_DEVICE`` names (or the best one here) exists on this machine."""
    import torch

    from course_lib.config import get_device

    fix = "unset COURSE_DEVICE (the course then picks cuda → mps → cpu), or set COURSE_DEVICE=cpu"
    try:
        device = get_device()
        if device.type == "cuda":
            index = torch.cuda.current_device() if device.index is None else device.index
            if index >= torch.cuda.device_count():
                return Check(
                    "device",
                    False,
                    f"{device} was asked for but this machine has {torch.cuda.device_count()} GPU(s)",
                    f"use COURSE_DEVICE=cuda:0 … cuda:{torch.cuda.device_count() - 1}, or {fix}",
                )
            detail = f"{device} ({torch.cuda.get_device_name(index)})"
        else:
            detail = str(device)
    except Exception as error:  # ConfigError for a bad name, or a CUDA runtime that fails
        return Check("device", False, str(error), fix)
    return Check("device", True, detail)


def scale_check() -> Check:
    """``COURSE_SCALE`` names a known scale (or is unset)."""
    from course_lib.config import get_scale

    try:
        return Check("scale", True, get_scale())
    except Exception as error:
        return Check("scale", False, str(error), "unset COURSE_SCALE (tiny), or set COURSE_SCALE=tiny or full")


def summary_line() -> str:
    """One line for notebook set-up cells: versions, device, threads and scale."""
    import torch

    from course_lib.config import get_device, get_scale

    return (
        f"course_lib {installed_version('course-lib')} | python {platform.python_version()} | "
        f"torch {torch.__version__} | torchaudio {installed_version('torchaudio')} | "
        f"device {get_device()} | threads {torch.get_num_threads()} | scale {get_scale()}"
    )


def run() -> list[Check]:
    """Print the full report and return the checks."""
    checks = [
        Check(
            "python",
            sys.version_info >= (3, 10),
            platform.python_version() + " (needs >= 3.10)",
            "install Python 3.10 or newer",
        ),
        *requirement_checks(),
        torchaudio_pair_check(),
    ]
    torch_works = torch_check()
    checks += [torch_works, device_check(), scale_check()] if torch_works.ok else [torch_works]
    print(f"course_lib doctor — {platform.platform()}")
    for check in checks:
        print(check.line())
    if torch_works.ok:  # course_lib.config imports torch
        from course_lib.config import data_dir

        print(f"data directory: {data_dir(create=False)} (set COURSE_DATA to move it)")
    for tool, purpose in OPTIONAL_TOOLS.items():
        found = shutil.which(tool)
        print(f"[{'OK' if found else '--'}] optional {tool}: {found or 'not found'} — {purpose}")
    failed = [check.name for check in checks if not check.ok]
    if failed:
        print(
            f"{len(failed)} check(s) failed ({', '.join(failed)}): apply the fix under each [FAIL] line, "
            "then run `python -m course_lib doctor` again."
        )
    else:
        print("All requirements met.")
    return checks


def main() -> int:
    return 0 if all(check.ok for check in run()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
