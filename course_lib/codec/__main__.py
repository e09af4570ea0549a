"""Compress and decompress audio files with the course's neural codec, from the command line.

    python -m course_lib.codec encode song.wav song.codes --bitrate 6     # kbps: 1.5, 3 or 6
    python -m course_lib.codec decode song.codes song_decoded.wav
    python -m course_lib.codec info song.codes

``encode`` reads any file libsndfile reads (WAV, FLAC, OGG, ...), resamples it to 16 kHz if needed (and
says so), and refuses stereo unless ``--mono`` asks to mix it down. It writes a ``.codes`` file
(:mod:`course_lib.codec.codes_file`): the codes bit-packed at exactly the bitrate, and the model's
identity and a CRC-32 of the codes. ``decode`` refuses codes written by another model, and a file whose
header or codes were changed, before it writes anything. Both print the bitrate and the real-time
factor (seconds of audio per second of compute), and refuse an output path that is the input (however
spelled). ``--weights`` selects another trained codec (default: the shipped tiny one). Bad input ends
with a one-line message naming the user's path and exit status 2, never a traceback: every failure is
a :class:`~course_lib.errors.CourseError`, turned into that message in one place, :func:`main`.

Notebook: notebooks/04_neural_codec.ipynb
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from course_lib.errors import AudioInputError, ConfigError, CourseError

EXIT_BAD_INPUT = 2


def _load(weights: Path | None, device: str | None):
    from course_lib.codec.pretrained import TINY_CODEC, load_codec

    return load_codec(weights or TINY_CODEC, device)


def _kbps_label(kbps: float) -> str:
    return f"{kbps:g} kbps"


def _same_file(first: Path, second: Path) -> bool:
    """Whether two spellings name one file (``x.wav``, ``./x.wav``, a symlink, a hard link)."""
    if first.exists() and second.exists():
        return os.path.samefile(first, second)
    return first.resolve() == second.resolve()


def _check_output(source: Path, output: Path, what: str) -> None:
    """Refuse an output path that would overwrite the input, or that is a folder."""
    if _same_file(source, output):
        raise AudioInputError(
            f"The output {output} is the input file {source}: writing it would replace the {what} you are "
            f"reading. Give the output another name."
        )
    if output.is_dir():
        raise AudioInputError(f"The output {output} is a folder: give a file name inside it.")


@contextlib.contextmanager
def _file_errors(path: Path, action: str) -> Iterator[None]:
    """Turn an ``OSError`` (permissions, a full disk) into a course error naming the user's ``path``.

    The writes are atomic, so the error itself would name the hidden ``.NAME.XXXX.tmp`` file next to it.
    """
    try:
        yield
    except CourseError:  # already a message for the user (e.g. atomic_write's disk-full error, also an OSError)
        raise
    except OSError as error:
        raise AudioInputError(
            f"Cannot {action} {path}: {error.strerror or error}. Check the path and its permissions."
        ) from None


def encode_file(args: argparse.Namespace) -> None:
    import soundfile as sf

    from course_lib.audio import load_audio, resample
    from course_lib.codec.codes_file import save_codes
    from course_lib.metrics.reconstruction import real_time_factor

    source, output = Path(args.input), Path(args.output)
    if source.is_dir():
        raise AudioInputError(f"{source} is a folder, not an audio file: pass the file to encode.")
    if not source.is_file():
        raise AudioInputError(f"No audio file at {source}: check the path (the working directory is {Path.cwd()}).")
    _check_output(source, output, "audio")
    with _file_errors(source, "read"):
        source.open("rb").close()
    if source.stat().st_size == 0:
        raise AudioInputError(
            f"{source} is empty (0 bytes): the download or export that made it was interrupted; make it again."
        )
    try:
        info = sf.info(str(source))
    except (sf.LibsndfileError, RuntimeError, TypeError):
        raise AudioInputError(
            f"Cannot read {source} as audio: it is not a format libsndfile knows (WAV, FLAC, OGG, AIFF, MP3...). "
            "Convert it first (e.g. ffmpeg -i in.m4a out.wav)."
        ) from None
    if info.channels > 1 and not args.mono:
        raise AudioInputError(
            f"{source} has {info.channels} channels; the codec is mono. Add --mono to mix the channels down."
        )
    codec = _load(args.weights, args.device)
    offered = codec.offered_bitrates()
    kbps = round(float(args.bitrate), 3)
    if kbps not in offered:
        choices = ", ".join(_kbps_label(k) for k in offered)
        raise ConfigError(f"This codec offers {choices}; got --bitrate {args.bitrate}. Pick one of those.")
    audio, rate = load_audio(source, mono=True)  # (T,)
    if rate != codec.sample_rate:
        print(f"note: {source.name} is at {rate} Hz; resampled to the codec's {codec.sample_rate} Hz.")
        audio = resample(audio, rate, codec.sample_rate)
    device = next(codec.parameters()).device
    started = time.perf_counter()
    codes = codec.encode(audio.to(device)[None], n_q=offered[kbps])  # (1, n_q, frames)
    seconds = time.perf_counter() - started
    with _file_errors(output, "write"):
        path = save_codes(output, codes[0].cpu(), codec, audio.shape[-1])
    duration = audio.shape[-1] / codec.sample_rate
    size = path.stat().st_size
    print(
        f"encoded {source.name} ({duration:.2f} s) at {_kbps_label(kbps)} ({offered[kbps]} levels x "
        f"{codec.frame_rate:g} frames/s x {math.log2(codec.codebook_size):g} bits) -> {path} ({size:,} bytes, "
        f"{8 * size / duration / 1000:.2f} kbps "
        f"with the header); {real_time_factor(duration, seconds):.1f}x real time"
    )


def decode_file(args: argparse.Namespace) -> None:
    from course_lib.audio import save_audio
    from course_lib.codec.codes_file import check_codes_model, load_codes
    from course_lib.metrics.reconstruction import real_time_factor

    source, output = Path(args.input), Path(args.output)
    if output.suffix.lower() not in (".wav", ".flac", ".ogg"):
        raise AudioInputError(f"Cannot write {output}: use a .wav, .flac or .ogg file name.")
    _check_output(source, output, "codes")
    with _file_errors(source, "read"):
        codes_file = load_codes(source)
    codec = _load(args.weights, args.device)
    check_codes_model(codes_file, codec)
    device = next(codec.parameters()).device
    started = time.perf_counter()
    audio = codec.decode(codes_file.codes[None].to(device), length=codes_file.num_samples)[0]  # (T,)
    seconds = time.perf_counter() - started
    peak = audio.abs().max().item()
    if peak > 1.0:  # a codec can overshoot full scale a little; scale down rather than clip
        audio = audio / peak
    duration = codes_file.num_samples / codec.sample_rate
    report = (
        f"decoded {source.name} ({duration:.2f} s at {_kbps_label(codes_file.bitrate / 1000)}, "
        f"{codes_file.n_q} levels) -> {output}; {real_time_factor(duration, seconds):.1f}x real time"
    )
    with _file_errors(output, "write"):  # last: a failure above leaves no file behind
        save_audio(output, audio.cpu(), codec.sample_rate)
    if codes_file.checksum is None:
        print(f"note: {source.name} is an older codes file without a checksum; encode again to add one.")
    print(report)


def show_info(args: argparse.Namespace) -> None:
    from course_lib.codec.codes_file import load_codes

    source = Path(args.input)
    with _file_errors(source, "read"):
        codes_file = load_codes(source)
    duration = codes_file.num_samples / codes_file.sample_rate
    checksum = f"CRC-32 {codes_file.checksum}" if codes_file.checksum else "no checksum (an older file)"
    print(
        f"{args.input}: {duration:.2f} s at {codes_file.sample_rate} Hz, {codes_file.n_q} levels x "
        f"{codes_file.frames} frames ({codes_file.frame_rate:g} frames/s), codebook {codes_file.codebook_size}: "
        f"{_kbps_label(codes_file.bitrate / 1000)}; model {codes_file.model_class} {codes_file.fingerprint}; "
        f"{checksum}"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m course_lib.codec", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    enc = commands.add_parser("encode", help="audio file -> .codes file")
    enc.add_argument("input", help="audio file (WAV, FLAC, OGG, ...)")
    enc.add_argument("output", help="the .codes file to write")
    enc.add_argument("--bitrate", default="6", help="kbps: 1.5, 3 or 6 for the tiny codec (default 6)")
    enc.add_argument("--mono", action="store_true", help="mix a multi-channel file down to mono")
    dec = commands.add_parser("decode", help=".codes file -> audio file")
    dec.add_argument("input", help="a .codes file written by encode")
    dec.add_argument("output", help="the audio file to write (.wav, .flac or .ogg)")
    for sub in (enc, dec):
        sub.add_argument("--weights", type=Path, default=None, help="codec weights (default: the shipped tiny codec)")
        sub.add_argument("--device", default="cpu", help="cpu (default), cuda or mps")
        sub.add_argument("--threads", default=None, help="torch CPU threads, at least 1 (default: torch's choice)")
    info = commands.add_parser("info", help="what a .codes file holds")
    info.add_argument("input")
    return parser


def _set_threads(threads: str | None) -> None:
    if threads is None:
        return
    try:
        count = int(threads)
    except ValueError:
        count = 0
    if count < 1:
        raise ConfigError(f"--threads must be a whole number of CPU threads, at least 1; got {threads!r}.")
    torch.set_num_threads(count)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0, or 2 for bad input with a one-line message)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _set_threads(getattr(args, "threads", None))
        if args.command == "encode":
            try:
                float(args.bitrate)
            except ValueError:
                raise ConfigError(f"--bitrate must be a number of kbps (e.g. 6), got {args.bitrate!r}.") from None
            encode_file(args)
        elif args.command == "decode":
            decode_file(args)
        else:
            show_info(args)
    except CourseError as error:  # the one place a failure becomes a message: every one is a CourseError
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as error:  # one not met above (e.g. reading the weights): still a message, not a traceback
        print(
            f"error: {error.strerror or error} ({error.filename or ''}): check the path and its permissions.",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(main())
