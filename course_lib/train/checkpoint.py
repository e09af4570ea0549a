"""Training checkpoints: written atomically, loaded without running pickled code, checked against the model.

A checkpoint holds everything a run needs to continue exactly where it stopped: model, optimizer and
scheduler states, the step, the loss history and every random number generator's state. Three habits
keep checkpoints trustworthy:

- **Atomic writes.** The file is written to a temporary file in the same directory, flushed to disk
  (``fsync``) and renamed over the old one. A rename within one file system is all-or-nothing, so a
  crash, a full disk or a kernel interrupt mid-save leaves the previous checkpoint intact instead of
  a half-written file.
- **No code on load.** ``torch.load(weights_only=True)`` only rebuilds tensors, numbers, strings,
  lists and dicts, so a checkpoint from the internet cannot run code. That is why the NumPy and
  Python RNG states are stored as tensors and plain numbers.
- **Identity check.** The model's class name, its ``config`` (when it is a dataclass) and its tensor
  names and shapes are stored and compared on load, so loading a checkpoint into the wrong model
  fails with a list of what differs instead of a wall of ``size mismatch`` lines.

Notebooks: every notebook that trains a model (through :class:`course_lib.train.Trainer`).
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from course_lib.atomic import atomic_write
from course_lib.errors import CheckpointError

FORMAT = "course_lib.checkpoint"
VERSION = 1
RETRAIN_FIX = "train from scratch instead (resume=False, or a new checkpoint_path)"


def _plain(value: Any) -> Any:
    """Turn a config value into JSON-like plain data (tuples → lists, paths/enums → strings)."""
    return json.loads(json.dumps(value, default=str))


def model_identity(model: torch.nn.Module) -> dict[str, Any]:
    """What makes a checkpoint fit a model: class name, ``config`` as a dict, tensor names and shapes."""
    config = getattr(model, "config", None)
    is_dataclass = dataclasses.is_dataclass(config) and not isinstance(config, type)
    return {
        "model_class": type(model).__name__,
        "config": _plain(dataclasses.asdict(config)) if is_dataclass else None,
        "parameters": {name: list(t.shape) for name, t in model.state_dict().items()},
    }


def identity_differences(saved: dict, current: dict, strict: bool = True) -> list[str]:
    """List how two :func:`model_identity` dicts differ; ``strict=False`` only compares common shapes."""
    diffs, first = [], []
    if strict and saved["model_class"] != current["model_class"]:  # listed first: it explains the rest
        first.append(f"model class: saved {saved['model_class']}, this model {current['model_class']}")
    if strict and saved["config"] != current["config"]:
        old, new = saved["config"] or {}, current["config"] or {}
        for key in sorted(set(old) | set(new)):
            if old.get(key, "<absent>") != new.get(key, "<absent>"):
                diffs.append(f"config.{key}: saved {old.get(key, '<absent>')}, this model {new.get(key, '<absent>')}")
    old, new = saved["parameters"], current["parameters"]
    for name in old.keys() & new.keys():
        if old[name] != new[name]:
            diffs.append(f"tensor {name}: saved shape {old[name]}, this model {new[name]}")
    if strict:
        for label, names in (("only in the file", old.keys() - new.keys()), ("missing", new.keys() - old.keys())):
            if names:
                shown = ", ".join(sorted(names)[:5]) + (", ..." if len(names) > 5 else "")
                diffs.append(f"{len(names)} tensor(s) {label}: {shown}")
    return first + sorted(diffs)


def check_identity(path: Path, saved: dict, model: torch.nn.Module, fix: str, strict: bool = True) -> None:
    """Raise :class:`CheckpointError` listing the differences between ``saved`` and ``model``."""
    diffs = identity_differences(saved, model_identity(model), strict)
    if diffs:
        listing = "\n".join(f"  - {d}" for d in diffs[:12])
        raise CheckpointError(
            f"{path} was saved by a different model or config:\n{listing}\n"
            f"Fix: build the model with the class and config it was trained with, or {fix}."
        )


def rng_state(generators: Sequence[torch.Generator] = ()) -> dict[str, Any]:
    """Capture the Python, NumPy, torch (CPU, CUDA, MPS) RNG states, and ``generators``, as plain data."""
    version, py_state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state = {
        "python": {"version": version, "state": torch.tensor(py_state, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generators": [g.get_state() for g in generators],
    }
    if torch.backends.mps.is_available():
        state["mps"] = torch.mps.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any], generators: Sequence[torch.Generator] = ()) -> None:
    """Restore what :func:`rng_state` captured (CUDA/MPS states only where this machine has them)."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state((npy["kind"], keys, npy["pos"], npy["has_gauss"], npy["cached"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "mps" in state and torch.backends.mps.is_available():
        torch.mps.set_rng_state(state["mps"])
    for generator, saved in zip(generators, state["generators"], strict=False):
        generator.set_state(saved)


def save_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    *,
    step: int = 0,
    history: Sequence[dict] = (),
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically: states, ``step``, ``history``, the RNG states and ``extra``.

    ``extra`` must hold only tensors, numbers, strings, lists and dicts (it is loaded with
    ``weights_only=True``). Returns the path written.
    """
    checkpoint = {
        "format": FORMAT,
        "version": VERSION,
        "identity": model_identity(model),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "step": int(step),
        "history": [dict(entry) for entry in history],
        "rng": rng_state(),
        "extra": extra or {},
        "torch_version": str(torch.__version__),  # a str subclass that weights_only refuses
    }
    return atomic_write(path, lambda file: torch.save(checkpoint, file))


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint file with ``weights_only=True``, turning every failure into a clear error."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"No checkpoint at {path}: check the path, or train first to create it.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights only" not in str(error).lower():
            raise _corrupt(path, error) from error
        found = re.search(r"GLOBAL (\S+)", str(error))
        raise CheckpointError(
            f"{path} holds pickled Python objects ({found.group(1) if found else 'code'}), which course_lib "
            "checkpoints never contain, so it was "
            "not loaded (that could run code). Fix: use a checkpoint written by save_checkpoint."
        ) from error
    except Exception as error:  # torch raises RuntimeError, EOFError, ... for a cut-short file
        raise _corrupt(path, error) from error
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a course_lib checkpoint (no format tag {FORMAT!r}). If it is a plain "
            "state_dict, load it with model.load_state_dict(torch.load(path, weights_only=True))."
        )
    return checkpoint


def _corrupt(path: Path, error: Exception) -> CheckpointError:
    return CheckpointError(
        f"{path} is cut short or corrupt ({type(error).__name__}: {error}). Checkpoints are written "
        "atomically, so this usually means an incomplete copy or download. Fix: copy it again, use an "
        f"earlier checkpoint, or delete it and {RETRAIN_FIX}."
    )


def load_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    *,
    restore_rng: bool = False,
    checkpoint: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Load a checkpoint into ``model`` (and ``optimizer``, ``scheduler``) after checking it fits.

    Args:
        restore_rng: also restore the Python/NumPy/torch RNG states; resuming needs it, while loading
            a model to listen to it should not reset your random numbers, hence off by default.
        checkpoint: the file's contents if :func:`read_checkpoint` has already read them (read once).

    Returns:
        The whole checkpoint dict (``step``, ``history``, ``extra``, ...).

    Raises:
        CheckpointError: missing, cut-short or foreign file, or one saved by another model or config.
    """
    path = Path(path)
    checkpoint = read_checkpoint(path) if checkpoint is None else checkpoint
    check_identity(path, checkpoint["identity"], model, fix=RETRAIN_FIX)
    model.load_state_dict(checkpoint["model"])
    for name, target in (("optimizer", optimizer), ("scheduler", scheduler)):
        if target is not None and checkpoint[name] is not None:
            try:
                target.load_state_dict(checkpoint[name])
            except (ValueError, KeyError, TypeError) as error:
                raise CheckpointError(
                    f"The {name} state in {path} does not fit this {type(target).__name__} ({error}). "
                    f"Fix: create the same {name} (type and parameter groups) as the saved run, or {RETRAIN_FIX}."
                ) from error
    if restore_rng:
        set_rng_state(checkpoint["rng"])
    return checkpoint
