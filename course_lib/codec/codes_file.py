"""The ``.codes`` file: a compressed clip as the codec's integers, bit-packed, with the model's identity.

Layout (all integers big-endian)::

    8 bytes   magic  b"CLCODES1" (the kind of file; the layout's version is the header's "format")
    4 bytes   length of the JSON header, n
    n bytes   JSON header (UTF-8), an object with these fields:
                format          "course_lib.codes/2"
                model_class     e.g. "Codec"
                config          the model's config (a JSON object)
                fingerprint     the weights' fingerprint, 16 hex digits
                sample_rate     Hz, a whole number > 0
                frame_rate      code frames per second, > 0; sample_rate / frame_rate is the hop, a whole number
                codebook_size   K >= 2
                bits_per_code   ceil(log2(K)), 10 for K = 1,024
                n_q             levels, >= 1
                frames          ceil(num_samples / hop), >= 1
                num_samples     samples of the original audio, >= 1
                payload_crc32   the CRC-32 of the payload, 8 hex digits
    rest      the payload: the codes, frame by frame, level by level, each in exactly bits_per_code bits,
              zero-padded to a whole byte: exactly ceil(frames × n_q × bits_per_code / 8) bytes

So the payload is exactly ``frames × n_q × log2(K)`` bits, the bitrate the codec promises, and the
whole file is that plus a few hundred bytes of header. :func:`load_codes` checks every field (type
and range), that ``frames`` fits ``num_samples``, that the payload has exactly the length the header
announces (bytes missing or appended are refused), and its CRC-32, so a flipped bit is refused with a
message instead of decoding to other audio. The header's fingerprint
(:meth:`course_lib.codec.Codec.fingerprint`) identifies the weights: :func:`check_codes_model`
refuses to decode a file with any other model, since another model's codebooks would turn the same
integers into noise. Files are written atomically (:func:`course_lib.atomic.atomic_write`).

Format 1 (course_lib before the checksum) is the same without ``payload_crc32``. Such files are still
read, with every other check, and :attr:`CodesFile.checksum` is ``None``: a student's earlier
encodings stay usable (re-encoding needs the original audio, which may be gone), and only a flipped
bit inside the payload goes unnoticed; ``info`` and ``decode`` say so. A CRC-32 (as in ZIP, PNG and
gzip) rather than a cryptographic hash, because it guards against accidents, not against forgery,
and costs 8 characters of header.

Notebook: notebooks/04_neural_codec.ipynb (the command line, ``python -m course_lib.codec``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from course_lib.atomic import atomic_write
from course_lib.errors import AudioInputError, CheckpointError

MAGIC = b"CLCODES1"
FORMAT = "course_lib.codes/2"
FORMAT_WITHOUT_CHECKSUM = "course_lib.codes/1"
_INTEGER_FIELDS = ("sample_rate", "codebook_size", "bits_per_code", "n_q", "frames", "num_samples")


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
    checksum: str | None = None  # the payload's CRC-32 (8 hex digits); None for a format-1 file, which has none

    @property
    def n_q(self) -> int:
        return self.codes.shape[0]

    @property
    def frames(self) -> int:
        return self.codes.shape[1]

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


def payload_checksum(payload: bytes) -> str:
    """The CRC-32 of the packed codes, as the 8 hex digits the header stores."""
    return f"{zlib.crc32(payload):08x}"


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
    packed = pack_codes(codes, bits)
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
        "payload_crc32": payload_checksum(packed),
    }
    problem = _header_problem(header)
    if problem:  # never write a file that load_codes would refuse
        raise AudioInputError(f"save_codes cannot write {path}: {problem} (codes of shape {tuple(codes.shape)}).")
    header_bytes = json.dumps(header, sort_keys=True).encode("utf-8")
    data = MAGIC + struct.pack(">I", len(header_bytes)) + header_bytes + packed
    return atomic_write(path, lambda file: file.write(data))


def _corrupt(path: str | Path, problem: str) -> AudioInputError:
    return AudioInputError(f"{path} is corrupt: {problem}. Encode the audio again.")


def _header_problem(header: dict[str, Any]) -> str | None:
    """What is wrong with a header of a known format (a missing field, a wrong type or range, fields
    that disagree), or ``None``."""
    fields = ["model_class", "config", "fingerprint", "frame_rate", *_INTEGER_FIELDS]
    if header["format"] == FORMAT:
        fields.append("payload_crc32")
    missing = [name for name in fields if name not in header]
    if missing:
        return "its header lacks " + ", ".join(missing)
    for name in _INTEGER_FIELDS:
        value = header[name]
        if not isinstance(value, int) or isinstance(value, bool):
            return f"{name} is {value!r}, not a whole number"
        smallest = 2 if name == "codebook_size" else 1
        if value < smallest:
            return f"{name} is {value}; it must be at least {smallest}"
    for name in ("model_class", "fingerprint"):
        if not isinstance(header[name], str):
            return f"{name} is {header[name]!r}, not a string"
    if not isinstance(header["config"], dict):
        return f"config is {header['config']!r}, not a JSON object"
    frame_rate = header["frame_rate"]
    if not isinstance(frame_rate, (int, float)) or isinstance(frame_rate, bool) or not 0 < frame_rate < math.inf:
        return f"frame_rate is {frame_rate!r}, not a positive number"
    hop = header["sample_rate"] / frame_rate  # samples per frame
    if abs(hop - round(hop)) > 1e-6 or round(hop) < 1:
        return f"sample_rate / frame_rate = {hop:g} samples per frame, not a whole number"
    bits = math.ceil(math.log2(header["codebook_size"]))
    if header["bits_per_code"] != bits:
        return f"bits_per_code is {header['bits_per_code']}, but {header['codebook_size']} codes need {bits} bits"
    frames = math.ceil(header["num_samples"] / round(hop))
    if header["frames"] != frames:
        return f"frames is {header['frames']}, but {header['num_samples']} samples make {frames} frames of {round(hop)}"
    crc = header.get("payload_crc32")
    if header["format"] == FORMAT and (
        not isinstance(crc, str) or len(crc) != 8 or any(c not in "0123456789abcdef" for c in crc)
    ):
        return f"payload_crc32 is {crc!r}, not 8 hex digits"
    return None


def load_codes(path: str | Path) -> CodesFile:
    """Read a ``.codes`` file written by :func:`save_codes`, checking every header field and the payload.

    Raises:
        AudioInputError: for a missing or empty file, a file of another kind, or a cut-short, extended,
            altered or otherwise corrupt one, naming what is wrong.
    """
    path = Path(path)
    if path.is_dir():
        raise AudioInputError(f"{path} is a folder, not a codes file: pass the .codes file written by encode.")
    if not path.is_file():
        raise AudioInputError(
            f"No codes file at {path}: check the path (make one with `python -m course_lib.codec encode`)."
        )
    data = path.read_bytes()
    if not data:
        raise AudioInputError(
            f"{path} is empty (0 bytes): the encode or copy that made it was interrupted; encode the audio again."
        )
    if not data.startswith(MAGIC):
        raise AudioInputError(
            f"{path} is not a course_lib codes file (it does not start with {MAGIC!r}): pass a file written by "
            "`python -m course_lib.codec encode`. To compress audio, use encode first."
        )
    if len(data) < 12:
        raise _corrupt(path, "it is cut short inside its header")
    (size,) = struct.unpack(">I", data[8:12])
    if 12 + size > len(data):
        raise _corrupt(path, f"it is cut short: its header announces {size} bytes, {len(data) - 12} follow")
    try:
        header = json.loads(data[12 : 12 + size].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _corrupt(path, f"its header is not readable JSON ({error})") from None
    if not isinstance(header, dict):
        raise _corrupt(path, f"its header is a JSON {type(header).__name__}, not an object")
    version = header.get("format")
    if version not in (FORMAT, FORMAT_WITHOUT_CHECKSUM):
        if isinstance(version, str) and version.startswith("course_lib.codes/"):
            raise AudioInputError(
                f"{path} is in format {version!r}, which this course_lib does not know (it reads "
                f"{FORMAT_WITHOUT_CHECKSUM!r} and {FORMAT!r}): update course_lib, or encode the audio again."
            )
        raise _corrupt(path, f"its header's format is {version!r}, not {FORMAT!r}")
    problem = _header_problem(header)
    if problem:
        raise _corrupt(path, problem)
    payload = data[12 + size :]
    n_q, frames, bits = header["n_q"], header["frames"], header["bits_per_code"]
    expected = math.ceil(n_q * frames * bits / 8)
    if len(payload) < expected:
        raise _corrupt(
            path, f"it is cut short: {n_q * frames} codes of {bits} bits need {expected} bytes, it holds {len(payload)}"
        )
    if len(payload) > expected:
        raise _corrupt(
            path, f"{len(payload) - expected} bytes follow the {expected} bytes of codes its header announces"
        )
    checksum = header.get("payload_crc32")
    if checksum is not None and payload_checksum(payload) != checksum:
        raise _corrupt(
            path, f"the codes' CRC-32 is {payload_checksum(payload)}, the header says {checksum}: bytes were changed"
        )
    codes = unpack_codes(payload, n_q, frames, bits)
    if int(codes.max()) >= header["codebook_size"]:
        raise _corrupt(path, f"it holds code {int(codes.max())}, outside the codebook of {header['codebook_size']}")
    return CodesFile(
        codes=codes,
        num_samples=header["num_samples"],
        sample_rate=header["sample_rate"],
        frame_rate=float(header["frame_rate"]),
        model_class=header["model_class"],
        config=header["config"],
        fingerprint=header["fingerprint"],
        codebook_size=header["codebook_size"],
        checksum=checksum,
    )


def check_codes_model(codes_file: CodesFile, model) -> None:
    """Raise unless ``model`` is the model that wrote ``codes_file`` (same class, config and weights).

    Then checks the fields the decoder relies on against that model: sample rate, frame rate,
    codebook size, and at most the model's number of levels.

    Raises:
        CheckpointError: naming what differs and which weights to decode with, or which header field
            disagrees with the model it names.
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
    # the same model, so these can only differ in a file whose header was edited or damaged
    mismatches = [
        f"{name} {getattr(codes_file, name)} (file) vs {getattr(model, name)} (model)"
        for name in ("sample_rate", "frame_rate", "codebook_size")
        if getattr(codes_file, name) != getattr(model, name)
    ]
    if codes_file.n_q > model.n_q:
        mismatches.append(f"n_q {codes_file.n_q} (file) vs at most {model.n_q} (model)")
    if mismatches:
        raise CheckpointError(
            "These codes name this codec's weights, but their header disagrees with it: "
            + "; ".join(mismatches)
            + ". The file was altered after encode: encode the audio again."
        )
