"""Compress and decompress audio files with the course's neural codec, from the command line.

    python -m course_lib.codec encode song.wav song.codes --bitrate 6     # kbps: 1.5, 3 or 6
    python -m course_lib.codec decode song.codes song_decoded.wav
    python -m course_lib.codec info song.codes

``encode`` reads any file libsndfile reads (WAV, FLAC, OGG, ...), resamples it to 16 kHz if needed (and
says so), and refuses stereo unless ``--mono`` asks to mix it down. It writes a ``.codes`` file
(:mod:`course_lib.codec.codes_file`): the codes bit-packed at exactly the bitrate, and the model's
identity. ``decode`` refuses codes written by another model. Both print the bitrate and the real-time
factor (seconds of audio per second of compute). ``--weights`` selects another trained codec (default:
the shipped tiny one). Bad input ends with a one-line message and exit status 2, never a traceback.

Notebook: notebooks/04_neural_codec.ipynb
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

from course_lib.errors import AudioInputError, ConfigError, CourseError

EXIT_BAD_INPUT = 2


def _load(weights: Path | None, device: str | None):
    from course_lib.codec.pretrained import TINY_CODEC, load_codec

    return load_codec(weights or TINY_CODEC, device)


def _kbps_label(kbps: float) -> str:
    return f"{kbps:g} kbps"


def encode_file(args: argparse.Namespace) -> None:
    import soundfile as sf

    from course_lib.audio import load_audio, resample
    from course_lib.codec.codes_file import save_codes
    from course_lib.metrics.reconstruction import real_time_factor

    source = Path(args.input)
    if not source.is_file():
        raise AudioInputError(f"No audio file at {source}: check the path (the working directory is {Path.cwd()}).")
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
    path = save_codes(args.output, codes[0].cpu(), codec, audio.shape[-1])
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

    codes_file = load_codes(args.input)
    codec = _load(args.weights, args.device)
    check_codes_model(codes_file, codec)
    device = next(codec.parameters()).device
    started = time.perf_counter()
    audio = codec.decode(codes_file.codes[None].to(device), length=codes_file.num_samples)[0]  # (T,)
    seconds = time.perf_counter() - started
    output = Path(args.output)
    if output.suffix.lower() not in (".wav", ".flac", ".ogg"):
        raise AudioInputError(f"Cannot write {output}: use a .wav, .flac or .ogg file name.")
    peak = audio.abs().max().item()
    if peak > 1.0:  # a codec can overshoot full scale a little; scale down rather than clip
        audio = audio / peak
    save_audio(output, audio.cpu(), codec.sample_rate)
    duration = codes_file.num_samples / codec.sample_rate
    print(
        f"decoded {Path(args.input).name} ({duration:.2f} s at {_kbps_label(codes_file.bitrate / 1000)}, "
        f"{codes_file.n_q} levels) -> {output}; {real_time_factor(duration, seconds):.1f}x real time"
    )


def show_info(args: argparse.Namespace) -> None:
    from course_lib.codec.codes_file import load_codes

    codes_file = load_codes(args.input)
    duration = codes_file.num_samples / codes_file.sample_rate
    print(
        f"{args.input}: {duration:.2f} s at {codes_file.sample_rate} Hz, {codes_file.n_q} levels x "
        f"{codes_file.codes.shape[1]} frames ({codes_file.frame_rate:g} frames/s), codebook {codes_file.codebook_size}: "
        f"{_kbps_label(codes_file.bitrate / 1000)}; model {codes_file.model_class} {codes_file.fingerprint}"
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
        sub.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    info = commands.add_parser("info", help="what a .codes file holds")
    info.add_argument("input")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0, or 2 for bad input with a one-line message)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    try:
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
    except CourseError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as error:  # e.g. an output folder that cannot be written
        print(
            f"error: {error.strerror or error} ({error.filename or ''}): check the path and its permissions.",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(main())
