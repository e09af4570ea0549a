"""The shipped tiny codec, for notebook 04 and for the language models of chapters 05-06.

``course_lib/checkpoints/codec_tiny.safetensors`` is made by one command (see :mod:`course_lib.codec.train`
and README.md, "Shipped checkpoints")::

    python -m course_lib.codec.train --scale tiny --out course_lib/checkpoints/codec_tiny.safetensors

Example::

    from course_lib.codec import load_tiny_codec
    codec = load_tiny_codec()                 # eval mode, on get_device() unless device= is given
    codes = codec.encode(audio)               # (B, T) at 16 kHz -> (B, 12, ceil(T / 320)) in [0, 1024)
    audio = codec.decode(codes[:, :6])        # any prefix of the levels: 6 levels = 3 kbps

Tokens for a language model: ``codec.frame_rate`` = 50 frames per second, ``codec.n_q`` = 12 levels,
``codec.codebook_size`` = 1,024.

Notebooks: notebooks/04_neural_codec.ipynb, 05_audio_language_model.ipynb, 06_text_to_music.ipynb.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from course_lib.codec.model import Codec, CodecConfig
from course_lib.config import get_device
from course_lib.train.weights import read_weights_header, shipped_weights

TINY_CODEC = shipped_weights("codec_tiny.safetensors")
TINY_COMMAND = "python -m course_lib.codec.train --scale tiny --out course_lib/checkpoints/codec_tiny.safetensors"


def read_codec_metadata(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(codec config, training metadata)`` stored in a codec weights file.

    Raises:
        CheckpointError: missing, cut-short or foreign file, or the weights of another model.
    """
    fix = f"pass a file written by `python -m course_lib.codec.train` (the tiny codec: `{TINY_COMMAND}`)"
    header = read_weights_header(path, "Codec", fix=fix, noun="codec weights")
    return dict(header.config or {}), header.metadata


def load_codec(path: str | Path, device: str | torch.device | None = None) -> Codec:
    """Load any codec saved by :mod:`course_lib.codec.train` (its config comes from the file), in eval mode.

    The training metadata (command, figures, wall time) is on ``codec.metadata``.
    """
    from course_lib.train import load_weights

    config, _ = read_codec_metadata(path)
    for name in ("strides", "offered_n_q"):
        config[name] = tuple(config[name])
    codec = Codec(CodecConfig(**config))
    codec.metadata = load_weights(path, codec)
    return codec.to(get_device(device)).eval()


def load_tiny_codec(device: str | torch.device | None = None) -> Codec:
    """The shipped tiny codec (16 kHz, 50 frames/s, 12 levels of 1,024 codes: up to 6 kbps), in eval mode.

    Notebooks: notebooks/04_neural_codec.ipynb, 05_audio_language_model.ipynb, 06_text_to_music.ipynb
    """
    return load_codec(TINY_CODEC, device)
