"""Trained weights shipped with the course, as safetensors files.

A training checkpoint (:mod:`course_lib.train.checkpoint`) carries optimizer and RNG states that only a
run in progress needs; the weights a notebook downloads or finds in ``course_lib/checkpoints/`` need
just the tensors. safetensors stores exactly that: a JSON header and raw tensor bytes, nothing that can
run code, readable from any language. The header's metadata carries the same identity as a checkpoint
(model class and config), so the wrong weights for a model fail with a list of what differs.

Three checks keep a weights file trustworthy:

- **One header reader.** :func:`read_weights_header` is the only place that opens a header: a missing,
  cut-short or foreign file (a pickle renamed ``.safetensors``), a file without course metadata, or the
  weights of another model all become a :class:`~course_lib.errors.CheckpointError` that names the file,
  what it holds and what was expected. Every ``load_*`` function of the course reads its config through it.
- **A checksum of the tensors.** :func:`save_weights` stores :func:`tensors_checksum` (SHA-256 over each
  tensor's name, dtype, shape and bytes, in name order) under ``tensors_sha256``; :func:`load_weights`
  recomputes it, so one flipped byte in the data is an error instead of a silently different model.
  It covers the tensors only, so a file whose header is rewritten (new metadata) keeps its checksum.
  Files written before checksums existed have none and load unchecked (re-save them to add one);
  every file shipped in ``course_lib/checkpoints/`` carries one (``tests/test_weights.py`` checks).
- **Identity.** The model class, config and tensor shapes are compared with the model's
  (:func:`course_lib.train.checkpoint.check_identity`).

Notebooks: the ones that start from pre-trained weights instead of training for an hour.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors import safe_open

from course_lib.errors import CheckpointError
from course_lib.train.checkpoint import atomic_write, check_identity, model_identity
from course_lib.train.distributed import current_context

FORMAT = "course_lib.weights/1"
CHECKSUM_KEY = "tensors_sha256"
WEIGHTS_FIX = "use the weights made for this model (strict=False ignores class, config and missing tensors, not shapes)"
RECOPY_FIX = "download or copy it again, or re-export it with save_weights"
CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "checkpoints"  # the weights shipped with the course


@dataclasses.dataclass(frozen=True)
class WeightsHeader:
    """What the header of a :func:`save_weights` file says, read without loading its tensors."""

    path: Path
    model_class: str
    config: dict[str, Any] | None  # the model's config dataclass as a dict (None for a model without one)
    metadata: dict[str, Any]  # the ``metadata`` given to save_weights: recipe, figures, command, ...
    checksum: str | None  # tensors_sha256; None in files written before checksums existed

    def describe(self) -> str:
        """``"a UNet (stage 'ldm', made by `python -m ...`)"``: what the file holds, for error messages."""
        facts = [f"stage {self.metadata['stage']!r}"] if isinstance(self.metadata.get("stage"), str) else []
        made_by = self.metadata.get("command") or self.metadata.get("recipe")
        if isinstance(made_by, str):
            facts.append(f"made by `{made_by}`")
        return f"a {self.model_class}" + (f" ({', '.join(facts)})" if facts else "")


def read_safetensors_metadata(path: str | Path, fix: str | None = None, noun: str = "weights") -> dict[str, str]:
    """The raw ``__metadata__`` strings of any safetensors file, or a :class:`CheckpointError` saying why not.

    Args:
        fix: how to get a good file (a command), appended to the errors.
        noun: what the file is, for the messages ("codec weights", "token cache", ...).

    Raises:
        CheckpointError: no file at ``path``; a file cut short, padded, or not safetensors at all.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"No {noun} file at {path}: {fix or 'check the path (or train the model to create it)'}.")
    try:
        with safe_open(path, framework="pt", device="cpu") as file:
            return dict(file.metadata() or {})
    except Exception as error:  # safetensors raises its own SafetensorError, or OSError
        raise CheckpointError(
            f"{path} is cut short or corrupt, or not a safetensors file ({type(error).__name__}: {error}). "
            f"Fix: {fix or RECOPY_FIX}."
        ) from error


def read_weights_header(
    path: str | Path,
    expected: str | Collection[str] | None = None,
    *,
    stage: str | Collection[str] | None = None,
    needs: Collection[str] = (),
    what: str | None = None,
    fix: str | None = None,
    noun: str = "weights",
) -> WeightsHeader:
    """Read and check the header of a :func:`save_weights` file, without loading its tensors.

    Args:
        expected: the model class (or classes) the caller can build from it, e.g. ``"Codec"``; None: any.
        stage: the ``metadata["stage"]`` values accepted (checked when the file records a stage), e.g.
            ``("teacher", "progressive", "consistency")`` tells a spectrogram DDPM from a latent one.
        needs: metadata keys the caller reads (a file without them was made by another recipe).
        what: what was expected, in words, for the message (default: ``"course_lib <expected>"``).
        fix: how to get the right file (the training command), appended to every error.
        noun: what the file is called in the message for a missing file ("codec weights").

    Returns:
        The :class:`WeightsHeader`: model class, config, metadata and checksum.

    Raises:
        CheckpointError: missing, cut-short or foreign file, no course metadata, or another model's
            weights; the message names the file, what it holds and what was expected.
    """
    path = Path(path)
    expected_classes = (expected,) if isinstance(expected, str) else tuple(expected or ())
    what = what or "course_lib " + (" or ".join(expected_classes) or "weights")
    header = read_safetensors_metadata(path, fix, noun)
    fix_text = f"Fix: {fix or f'pass a file written by save_weights for {what}'}."
    if header.get("format") != FORMAT or "model_class" not in header:
        holds = f"metadata keys {sorted(header)[:6]}" if header else "no metadata at all"
        raise CheckpointError(
            f"{path} holds no {what}: it has no course_lib metadata (format {FORMAT!r}; it has {holds}), so it "
            f"cannot be checked against the model. {fix_text} A plain safetensors file can be loaded by hand "
            "with safetensors.torch.load_file."
        )
    try:
        config = json.loads(header.get("config", "null"))
        metadata = json.loads(header.get("metadata", "{}"))
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path} has a damaged header ({error}). Fix: {fix or RECOPY_FIX}.") from error
    found = WeightsHeader(path, header["model_class"], config, metadata, header.get(CHECKSUM_KEY))
    stages = (stage,) if isinstance(stage, str) else tuple(stage or ())
    wrong_class = expected_classes and found.model_class not in expected_classes
    wrong_stage = stages and isinstance(metadata.get("stage"), str) and metadata["stage"] not in stages
    missing = [key for key in needs if key not in metadata]
    if wrong_class or wrong_stage or missing:
        detail = f"; its metadata lacks {', '.join(missing)}" if missing and not (wrong_class or wrong_stage) else ""
        raise CheckpointError(f"{path} holds no {what}: it holds {found.describe()}{detail}. {fix_text}")
    return found


def tensors_checksum(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 (hex) over each tensor's name, dtype, shape and bytes, in name order.

    The same tensors give the same checksum however the file's header is written, so it can be stored
    in that header: :func:`save_weights` does, :func:`load_weights` checks it.
    """
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())  # raw bytes, any dtype
    return digest.hexdigest()


def shipped_weights(name: str) -> Path:
    """The path of the weights file ``name`` shipped with the course (``course_lib/checkpoints/NAME``).

    Only the path: every loader says clearly when the file is missing, and how to make it.

    Notebooks: notebooks/02_vq_vae.ipynb, 03_hierarchical_vqvae.ipynb
    """
    return CHECKPOINT_DIR / name


def save_weights(path: str | Path, model: torch.nn.Module, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``model``'s state_dict to a safetensors file atomically, with identity, checksum and ``metadata``.

    Args:
        metadata: JSON-serialisable facts worth shipping with the weights (steps trained, final loss,
            sample rate, ...); :func:`load_weights` gives them back.

    Returns:
        The path written. Under torchrun only rank 0 writes (every process holds the same weights).

    Raises:
        course_lib.errors.DiskFullError: the disk filled up; the previous file at ``path`` is intact.
    """
    if not current_context().is_main:
        return Path(path)
    identity = model_identity(model)
    # clone(): tied weights share memory, which safetensors refuses to write twice
    tensors = {name: t.detach().to("cpu").contiguous().clone() for name, t in model.state_dict().items()}
    header = {
        "format": FORMAT,
        "model_class": identity["model_class"],
        "config": json.dumps(identity["config"]),
        "metadata": json.dumps(metadata or {}),
        CHECKSUM_KEY: tensors_checksum(tensors),
    }
    data = safetensors.torch.save(tensors, metadata=header)
    return atomic_write(path, lambda file: file.write(data))


def read_weights(path: str | Path, expected: str | Collection[str] | None = None) -> tuple[WeightsHeader, dict]:
    """The header and the tensors of a :func:`save_weights` file, after checking the tensors' checksum.

    Raises:
        CheckpointError: as :func:`read_weights_header`, or tensors that do not match the checksum.
    """
    header = read_weights_header(path, expected)
    try:
        with safe_open(header.path, framework="pt", device="cpu") as file:
            tensors = {name: file.get_tensor(name) for name in file.keys()}
    except Exception as error:  # the file changed since its header was read, or a disk error
        raise CheckpointError(f"{header.path} is cut short or corrupt ({error}). Fix: {RECOPY_FIX}.") from error
    if header.checksum is not None and tensors_checksum(tensors) != header.checksum:
        raise CheckpointError(
            f"{header.path} is corrupt: its tensors do not match the checksum in its header "
            f"({CHECKSUM_KEY}), so some bytes changed after it was written (a bad copy, download or disk). "
            f"Fix: {RECOPY_FIX}."
        )
    return header, tensors


def load_weights(path: str | Path, model: torch.nn.Module, strict: bool = True) -> dict[str, Any]:
    """Load a :func:`save_weights` file into ``model`` after checking it was made for this model.

    Args:
        strict: require the same model class, config and tensor names; ``strict=False`` loads the
            tensors whose names match (shapes must still agree), e.g. an encoder into a bigger model.

    Returns:
        The ``metadata`` dict given to :func:`save_weights`.

    Raises:
        CheckpointError: missing, cut-short, corrupt (checksum) or foreign file, or weights of another
            model or config.

    Notebooks: notebooks/02_vq_vae.ipynb, 03_hierarchical_vqvae.ipynb
    """
    header, tensors = read_weights(path)
    this_class = type(model).__name__
    if strict and header.model_class != this_class:  # say so first: a list of differing tensors would hide it
        raise CheckpointError(
            f"{header.path} holds no weights for a {this_class}: it holds {header.describe()} (model class: saved "
            f"{header.model_class}, this model {this_class}). Fix: build a {header.model_class} to load it, or "
            f"{WEIGHTS_FIX}."
        )
    saved = {
        "model_class": header.model_class,
        "config": header.config,
        "parameters": {name: list(t.shape) for name, t in tensors.items()},
    }
    check_identity(header.path, saved, model, fix=WEIGHTS_FIX, strict=strict)
    model.load_state_dict(tensors, strict=strict)
    return header.metadata
