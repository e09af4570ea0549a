"""Add the tensors' checksum to the headers of the shipped weights, leaving their tensor bytes untouched.

    python tools/checksum_shipped_weights.py            # rewrite course_lib/checkpoints/*.safetensors
    python tools/checksum_shipped_weights.py --check    # only report which files lack or break one

Every file gets ``tensors_sha256`` (:func:`course_lib.train.weights.tensors_checksum`) in its header
metadata. Only the JSON header is rewritten: the data section after it is copied byte for byte, so
the tensors, the codec's ``fingerprint()`` and the fingerprints recorded by the language models stay
as they were (the script checks all three). Files that record the SHA-256 of another shipped file
(the latent diffusion model records its VAE's and joint embedding's; the ControlNet its base model's)
get those hashes updated to the rewritten files, in dependency order. Running it twice changes nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import struct
import sys
from pathlib import Path

import torch
from safetensors import safe_open

from course_lib.atomic import atomic_write
from course_lib.train.weights import CHECKPOINT_DIR, CHECKSUM_KEY, FORMAT, tensors_checksum

# metadata keys holding the whole-file SHA-256 of another shipped file, and the key naming that file
FILE_HASHES = {"vae_sha256": "vae", "embedding_sha256": "embedding", "base_sha256": "base"}
LIMIT_BYTES = 5_000_000


def split_file(data: bytes) -> tuple[dict, bytes]:
    """``(header dict, data section)`` of a safetensors file's bytes."""
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + length]), data[8 + length :]


def join_file(header: dict, body: bytes) -> bytes:
    """The bytes of a safetensors file: header padded with spaces to 8 bytes (as safetensors writes it), then data."""
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + body


def tensors_of(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(path, framework="pt", device="cpu") as file:  # clone: get_tensor may map the file
        return {name: file.get_tensor(name).clone() for name in file.keys()}


def with_checksum(path: Path) -> bytes:
    """The bytes of ``path`` with ``tensors_sha256`` in its header and updated hashes of the files it names."""
    data = path.read_bytes()
    header, body = split_file(data)
    meta = header["__metadata__"]
    if meta.get("format") != FORMAT:
        raise SystemExit(f"{path} is not a course_lib weights file")
    meta[CHECKSUM_KEY] = tensors_checksum(tensors_of(path))
    recipe = json.loads(meta["metadata"])
    changed = False
    for key, name_key in FILE_HASHES.items():
        if key in recipe:
            named = path.parent / recipe[name_key]
            digest = hashlib.sha256(named.read_bytes()).hexdigest()
            changed |= recipe[key] != digest
            recipe[key] = digest
    if changed:
        meta["metadata"] = json.dumps(recipe)
    return join_file(header, body)


def order(paths: list[Path]) -> list[Path]:
    """Files that others name (by ``vae``, ``embedding``, ``base``) before the files that name them."""
    names = {p.name: p for p in paths}
    done: list[Path] = []

    def visit(path: Path) -> None:
        if path in done:
            return
        recipe = json.loads(split_file(path.read_bytes())[0]["__metadata__"].get("metadata", "{}"))
        for name_key in FILE_HASHES.values():
            if recipe.get(name_key) in names:
                visit(names[recipe[name_key]])
        done.append(path)

    for path in paths:
        visit(path)
    return done


def codec_fingerprint(path: Path) -> str:
    from course_lib.codec.pretrained import load_codec

    return load_codec(path, "cpu").fingerprint()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=CHECKPOINT_DIR)
    parser.add_argument("--check", action="store_true", help="report only, write nothing")
    args = parser.parse_args(argv)
    paths = order(sorted(args.folder.glob("*.safetensors")))
    codec_path = args.folder / "codec_tiny.safetensors"
    fingerprint_before = codec_fingerprint(codec_path) if codec_path.is_file() else None
    stale = []
    for path in paths:
        old = path.read_bytes()
        new = with_checksum(path)
        if new == old:
            print(f"[OK]   {path.name}: checksum present, hashes current")
            continue
        stale.append(path.name)
        if args.check:
            print(f"[FAIL] {path.name}: no checksum, or a stale hash of a file it names")
            continue
        tensors = tensors_of(path)
        assert split_file(new)[1] == split_file(old)[1], path  # the data section is copied byte for byte
        assert len(new) <= LIMIT_BYTES, (path, len(new))
        atomic_write(path, lambda file, new=new: file.write(new))
        after = tensors_of(path)
        assert tensors.keys() == after.keys() and all(
            t.dtype == after[n].dtype and torch.equal(t, after[n]) for n, t in tensors.items()
        ), path
        print(f"[NEW]  {path.name}: {len(old):,} -> {len(new):,} bytes")
    if fingerprint_before is not None:
        assert codec_fingerprint(codec_path) == fingerprint_before, "the codec's fingerprint changed"
        print(f"codec fingerprint unchanged: {fingerprint_before}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
