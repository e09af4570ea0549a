"""Scale presets, device choice, seeding and the data directory: the settings every notebook shares.

Environment variables (all optional):

- ``COURSE_SCALE``: ``tiny`` (default; each notebook runs in about 3 minutes on a 2-core laptop CPU)
  or ``full`` (what a student with a GPU runs for real results).
- ``COURSE_DEVICE``: ``cuda``, ``cuda:1``, ``mps`` or ``cpu``; by default the first of cuda → mps → cpu
  that is available.
- ``COURSE_DATA``: where datasets, caches and downloaded files live (default ``~/.cache/course_lib``).

Notebook: every notebook's set-up cell (``notebooks/00_audio_and_data.ipynb`` explains it).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch

from course_lib.errors import ConfigError

SCALES = ("tiny", "full")
DEVICE_TYPES = ("cuda", "mps", "cpu")


def get_scale(scale: str | None = None) -> str:
    """Return the scale to run at: ``scale`` if given, else ``$COURSE_SCALE``, else ``"tiny"``.

    Raises:
        ConfigError: for a name other than ``tiny`` or ``full``.
    """
    chosen = (scale or os.environ.get("COURSE_SCALE") or "tiny").strip().lower()
    if chosen not in SCALES:
        raise ConfigError(
            f"Unknown scale {chosen!r}: use one of {', '.join(SCALES)} "
            "(set COURSE_SCALE=tiny or COURSE_SCALE=full, or pass scale='tiny')."
        )
    return chosen


def get_device(device: str | torch.device | None = None) -> torch.device:
    """Pick the device: ``device`` if given, else ``$COURSE_DEVICE``, else cuda → mps → cpu.

    Raises:
        ConfigError: for an unknown device name, or one that this machine does not have.
    """
    if isinstance(device, torch.device):
        return device
    name = (device or os.environ.get("COURSE_DEVICE") or "").strip().lower()
    if not name:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = name.split(":")[0]
    if kind not in DEVICE_TYPES:
        raise ConfigError(
            f"Unknown device {name!r}: use one of cuda, cuda:N, mps or cpu "
            "(or unset COURSE_DEVICE to pick the best available one)."
        )
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"Device {name!r} was asked for but torch sees no CUDA GPU here "
            f"(torch {torch.__version__}). Use COURSE_DEVICE=cpu, or install a CUDA build of torch."
        )
    if kind == "mps" and not _mps_available():
        raise ConfigError(f"Device {name!r} was asked for but MPS is not available: use COURSE_DEVICE=cpu.")
    return torch.device(name)


def training_device(device: str | torch.device | None = None, scale: str | None = None) -> torch.device:
    """The device a training command runs on: ``device`` or ``$COURSE_DEVICE`` when given, else by scale.

    At the tiny scale the default is the CPU, where the shipped checkpoints were trained (so their
    commands reproduce them); at the full scale it is the best device here (:func:`get_device`: cuda →
    mps → cpu). Under ``torchrun`` ``"cuda"`` means this process's GPU (the trainer sets it).
    """
    if device is not None or os.environ.get("COURSE_DEVICE"):
        return get_device(device)
    return get_device() if get_scale(scale) == "full" else torch.device("cpu")


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """A training command's ``--device`` option, read with :func:`training_device`."""
    parser.add_argument(
        "--device",
        default=None,
        help="default: cpu at the tiny scale (how the shipped files were made), else cuda → mps → cpu",
    )


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def seed_everything(seed: int = 0, deterministic: bool = False) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); optionally make torch deterministic.

    Deterministic mode (``deterministic=True``) asks torch for deterministic kernels and turns off
    cuDNN benchmarking, so the same seed gives bit-identical training runs on one machine. Tests
    use it; notebooks leave it off for speed.

    Returns:
        A ``torch.Generator`` seeded with ``seed`` for code that takes an explicit generator.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    return torch.Generator().manual_seed(seed)


def data_dir(create: bool = True) -> Path:
    """The directory for datasets and caches: ``$COURSE_DATA`` or ``~/.cache/course_lib``."""
    path = Path(os.environ.get("COURSE_DATA") or Path.home() / ".cache" / "course_lib").expanduser()
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


Preset = TypeVar("Preset", bound="ScaledConfig")


@dataclasses.dataclass
class ScaledConfig:
    """Base of the model and training configs: field defaults are the ``tiny`` preset.

    A subclass lists what differs at the ``full`` scale in ``full_overrides``; ``for_scale`` builds
    the preset for ``$COURSE_SCALE`` (or the scale given), and keyword arguments override single fields::

        @dataclass
        class CodecConfig(ScaledConfig):
            channels: int = 16
            full_overrides: ClassVar[dict] = {"channels": 64}

        CodecConfig.for_scale("full", channels=32)
    """

    full_overrides: ClassVar[dict] = {}

    @classmethod
    def tiny(cls: type[Preset], **changes) -> Preset:
        return cls(**changes)

    @classmethod
    def full(cls: type[Preset], **changes) -> Preset:
        return cls(**{**cls.full_overrides, **changes})

    @classmethod
    def for_scale(cls: type[Preset], scale: str | None = None, **changes) -> Preset:
        return cls.full(**changes) if get_scale(scale) == "full" else cls.tiny(**changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


Recipe = TypeVar("Recipe")


def stage_recipe(
    cls: Callable[..., Recipe],
    tiny: Mapping[str, Mapping[str, Any]],
    full: Mapping[str, Mapping[str, Any]],
    stage: str,
    scale: str | None = None,
    changes: Mapping[str, Any] | None = None,
    /,
    **fixed: Any,
) -> Recipe:
    """A training stage's recipe: ``cls(**fixed, **preset)`` with the stage's preset at ``scale``, overridden by ``changes``.

    ``tiny`` and ``full`` map each stage to the fields that differ from ``cls``'s defaults; a change of
    None keeps the preset (an option not given on the command line).

    Raises:
        ConfigError: for a stage ``tiny`` does not know.
    """
    if stage not in tiny:
        raise ConfigError(f"Unknown stage {stage!r}: use one of {', '.join(tiny)}.")
    presets = full if get_scale(scale) == "full" else tiny
    given = {key: value for key, value in (changes or {}).items() if value is not None}
    return cls(**fixed, **{**presets[stage], **given})
