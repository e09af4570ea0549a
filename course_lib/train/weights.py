"""Trained weights shipped with the course, as safetensors files.

A training checkpoint (:mod:`course_lib.train.checkpoint`) carries optimizer and RNG states that only a
run in progress needs; the weights a notebook downloads or finds in ``course_lib/checkpoints/`` need
just the tensors. safetensors stores exactly that: a JSON header and raw tensor bytes, nothing that can
run code, readable from any language. The header's metadata carries the same identity as a checkpoint
(model class and config), so the wrong weights for a model fail with a list of what differs.

Notebooks: the ones that start from pre-trained weights instead of training for an hour.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors import safe_open

from course_lib.errors import CheckpointError
from course_lib.train.checkpoint import atomic_write, check_identity, model_identity
from course_lib.train.distributed import current_context

FORMAT = "course_lib.weights/1"
WEIGHTS_FIX = "use the weights made for this model (strict=False ignores class, config and missing tensors, not shapes)"


def save_weights(path: str | Path, model: torch.nn.Module, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``model``'s state_dict to a safetensors file atomically, with identity and ``metadata``.

    Args:
        metadata: JSON-serialisable facts worth shipping with the weights (steps trained, final loss,
            sample rate, ...); :func:`load_weights` gives them back.

    Returns:
        The path written. Under torchrun only rank 0 writes (every process holds the same weights).
    """
    if not current_context().is_main:
        return Path(path)
    identity = model_identity(model)
    header = {
        "format": FORMAT,
        "model_class": identity["model_class"],
        "config": json.dumps(identity["config"]),
        "metadata": json.dumps(metadata or {}),
    }
    # clone(): tied weights share memory, which safetensors refuses to write twice
    tensors = {name: t.detach().to("cpu").contiguous().clone() for name, t in model.state_dict().items()}
    data = safetensors.torch.save(tensors, metadata=header)
    return atomic_write(path, lambda file: file.write(data))


def load_weights(path: str | Path, model: torch.nn.Module, strict: bool = True) -> dict[str, Any]:
    """Load a :func:`save_weights` file into ``model`` after checking it was made for this model.

    Args:
        strict: require the same model class, config and tensor names; ``strict=False`` loads the
            tensors whose names match (shapes must still agree), e.g. an encoder into a bigger model.

    Returns:
        The ``metadata`` dict given to :func:`save_weights`.

    Raises:
        CheckpointError: missing, cut-short or foreign file, or weights of another model or config.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"No weights file at {path}: check the path (or train the model to create it).")
    try:
        with safe_open(path, framework="pt", device="cpu") as file:
            header = file.metadata() or {}
            tensors = {name: file.get_tensor(name) for name in file.keys()}
    except Exception as error:  # safetensors raises its own SafetensorError, or OSError
        raise CheckpointError(
            f"{path} is cut short or corrupt ({type(error).__name__}: {error}). Fix: download or copy "
            "it again, or re-export it with save_weights."
        ) from error
    if header.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} has no course_lib metadata (format {FORMAT!r}), so it cannot be checked against the "
            "model. Fix: export it with save_weights, or load it yourself with safetensors.torch.load_file."
        )
    saved = {
        "model_class": header["model_class"],
        "config": json.loads(header["config"]),
        "parameters": {name: list(t.shape) for name, t in tensors.items()},
    }
    check_identity(path, saved, model, fix=WEIGHTS_FIX, strict=strict)
    model.load_state_dict(tensors, strict=strict)
    return json.loads(header["metadata"])
