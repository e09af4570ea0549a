"""The ``.codes`` file: a compressed clip as the codec's integers, bit-packed, with the model's identity.

Layout (all integers big-endian)::

    8 bytes   magic  b"CLCODES1"
    4 bytes   length of the JSON header, n
    n bytes   JSON header (UTF-8): format, model class, config, weights fingerprint, sample rate,
              frame rate, n_q, frames, bits per code, samples of the original
    rest      the codes, frame by frame, level by level, each in exactly log2(K) bits (10 for K = 1,024),
              zero-padded to a whole byte

So the payload is exactly ``frames × n_q × log2(K)`` bits, the bitrate the codec promises, and the
whole file is that plus a few hundred bytes of header. The header's fingerprint
(:meth:`course_lib.codec.Codec.fingerprint`) identifies the weights: :func:`check_codes_model`
refuses to decode a file with any other model, since another model's codebooks would turn the same
integers into noise. Files are written atomically (:func:`course_lib.atomic.atomic_write`).

Notebook: notebooks/04_neural_codec.ipynb (the command line, ``python -m course_lib.codec``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from course_lib.atomic import atomic_write
from course_lib.errors import AudioInputError, CheckpointError

MAGIC = b"CLCODES1"
FORMAT = "course_lib.codes/1"


@dataclasses.dataclass
class CodesFile:
    """The content of a ``.codes`` file: ``codes`` ``(n_q, frames)`` and what is needed to decode them."""

    codes: Tensor  # (n_q, frames) LongTensor
    num_samples: int  # length of the original audio
    sample_rate: int
    frame_rate: float
    model_class: str
    config: dict[str, Any]
    fingerprint: str
    codebook_size: int

    @property
    def n_q(self) -> int:
        return self.codes.shape[0]

    @property
    def bitrate(self) -> float:
        """Bits per second of the codes: frame_rate × n_q × log2(codebook_size)."""
        return self.frame_rate * self.n_q * math.log2(self.codebook_size)


def model_identity(model) -> dict[str, Any]:
    """What a codes file records about the model that wrote it."""
    return {
        "model_class": type(model).__name__,
        "config": json.loads(json.dumps(dataclasses.asdict(model.config), default=str)),
        "fingerprint": model.fingerprint(),
    }


def pack_codes(codes: Tensor, bits: int) -> bytes:
    """``(n_q, frames)`` integers in [0, 2^bits) -> bytes, frame-major, ``bits`` bits each (MSB first)."""
    values = codes.detach().to("cpu", torch.int64).T.reshape(-1).numpy()  # frame by frame, level by level
    shifts = np.arange(bits - 1, -1, -1, dtype=np.int64)
    bit_array = ((values[:, None] >> shifts) & 1).astype(np.uint8).reshape(-1)  # (N · bits,)
    return np.packbits(bit_array).tobytes()


def unpack_codes(data: bytes, n_q: int, frames: int, bits: int) -> Tensor:
    """The inverse of :func:`pack_codes`: -> LongTensor ``(n_q, frames)``."""
    count = n_q * frames
    bit_array = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[: count * bits]
    if bit_array.size < count * bits:
        raise AudioInputError(
            f"The codes file is cut short: {count} codes of {bits} bits need {math.ceil(count * bits / 8)} bytes, "
            f"it holds {len(data)}. Encode the audio again."
        )
    weights = (1 << np.arange(bits - 1, -1, -1, dtype=np.int64))[None]  # (1, bits)
    values = (bit_array.reshape(count, bits).astype(np.int64) * weights).sum(axis=1)  # (count,)
    return torch.from_numpy(values).reshape(frames, n_q).T.contiguous()  # (n_q, frames)


def save_codes(path: str | Path, codes: Tensor, model, num_samples: int) -> Path:
    """Write ``codes`` ``(n_q, frames)`` (or ``(1, n_q, frames)``) made by ``model`` to a ``.codes`` file, atomically."""
    if codes.ndim == 3 and codes.shape[0] == 1:
        codes = codes[0]
    if codes.ndim != 2:
        raise AudioInputError(f"save_codes writes one clip's codes (n_q, frames), got shape {tuple(codes.shape)}.")
    bits = math.ceil(math.log2(model.codebook_size))
    header = {
        "format": FORMAT,
        **model_identity(model),
        "sample_rate": model.sample_rate,
        "frame_rate": model.frame_rate,
        "codebook_size": model.codebook_size,
        "bits_per_code": bits,
        "n_q": codes.shape[0],
        "frames": codes.shape[1],
        "num_samples": int(num_samples),
    }
    header_bytes = json.dumps(header, sort_keys=True).encode("utf-8")
    payload = MAGIC + struct.pack(">I", len(header_bytes)) + header_bytes + pack_codes(codes, bits)
    return atomic_write(path, lambda file: file.write(payload))


def load_codes(path: str | Path) -> CodesFile:
    """Read a ``.codes`` file written by :func:`save_codes`.

    Raises:
        AudioInputError: for a missing file, a file of another kind, or a cut-short or corrupt one.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioInputError(
            f"No codes file at {path}: check the path (make one with `python -m course_lib.codec encode`)."
        )
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        raise AudioInputError(
            f"{path} is not a course_lib codes file (it does not start with {MAGIC!r}): pass a file written by "
            "`python -m course_lib.codec encode`. To compress audio, use encode first."
        )
    try:
        (size,) = struct.unpack(">I", data[8:12])
        header = json.loads(data[12 : 12 + size].decode("utf-8"))
        payload = data[12 + size :]
        codes = unpack_codes(payload, header["n_q"], header["frames"], header["bits_per_code"])
        return CodesFile(
            codes=codes,
            num_samples=int(header["num_samples"]),
            sample_rate=int(header["sample_rate"]),
            frame_rate=float(header["frame_rate"]),
            model_class=header["model_class"],
            config=header["config"],
            fingerprint=header["fingerprint"],
            codebook_size=int(header["codebook_size"]),
        )
    except AudioInputError:
        raise
    except (struct.error, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise AudioInputError(f"{path} is corrupt ({type(error).__name__}: {error}): encode the audio again.") from None


def check_codes_model(codes_file: CodesFile, model) -> None:
    """Raise unless ``model`` is the model that wrote ``codes_file`` (same class, config and weights).

    Raises:
        CheckpointError: naming what differs and which weights to decode with.
    """
    mine = model_identity(model)
    differences = []
    if codes_file.model_class != mine["model_class"]:
        differences.append(f"model class {codes_file.model_class} (file) vs {mine['model_class']} (model)")
    if codes_file.config != mine["config"]:
        keys = sorted(
            k for k in set(codes_file.config) | set(mine["config"]) if codes_file.config.get(k) != mine["config"].get(k)
        )
        differences.append("config fields " + ", ".join(keys))
    if codes_file.fingerprint != mine["fingerprint"]:
        differences.append(f"weights fingerprint {codes_file.fingerprint} (file) vs {mine['fingerprint']} (model)")
    if differences:
        raise CheckpointError(
            "These codes were written by another codec, and would decode to noise with this one: "
            + "; ".join(differences)
            + ". Fix: decode with the weights that encoded them (--weights PATH), or encode the audio again with these."
        )
