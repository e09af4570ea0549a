"""The command line ``python -m course_lib.codec``: encode and decode a small WAV end to end, and every bad input."""

import errno
import os
import subprocess
import sys

import pytest
import soundfile as sf
import torch
from test_codes_file import DELETE, flip_a_byte, rewrite_codes

from course_lib.codec.__main__ import main
from course_lib.codec.model import Codec, CodecConfig
from course_lib.codec.pretrained import TINY_CODEC
from course_lib.data import SynthMusic
from course_lib.train import save_weights

SMALL = dict(channels=2, latent_dim=4, n_q=4, codebook_size=16, kmeans_init=False, offered_n_q=(2, 4))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A one-second SynthMusic WAV at 16 kHz, a stereo one at 44.1 kHz, and two different small codecs."""
    folder = tmp_path_factory.mktemp("codec_cli")
    audio = SynthMusic(n_clips=1, seconds=1.0, sample_rate=16_000, seed=3)[0].audio
    sf.write(folder / "clip.wav", audio.numpy(), 16_000)
    stereo = SynthMusic(n_clips=1, seconds=0.5, sample_rate=44_100, seed=3)[0].audio
    sf.write(folder / "stereo.wav", torch.stack([stereo, 0.5 * stereo], dim=1).numpy(), 44_100)
    (folder / "notes.txt").write_text("not audio")
    weights = {}
    for seed in (0, 1):
        torch.manual_seed(seed)
        weights[seed] = save_weights(folder / f"small_{seed}.safetensors", Codec(CodecConfig(**SMALL)), {"seed": seed})
    return folder, weights


def test_encode_then_decode_a_wav_file(files, capsys):
    folder, weights = files
    codes, decoded = folder / "clip.codes", folder / "clip_decoded.wav"
    assert main(["encode", str(folder / "clip.wav"), str(codes), "--bitrate", "0.4", "--weights", str(weights[0])]) == 0
    printed = capsys.readouterr().out
    assert "0.4 kbps" in printed and "real time" in printed
    # 1 s at 50 frames/s x 2 levels x 4 bits = 400 bits = 50 bytes of codes, plus the JSON header
    assert 50 < codes.stat().st_size < 50 + 1500
    assert main(["decode", str(codes), str(decoded), "--weights", str(weights[0])]) == 0
    assert "real time" in capsys.readouterr().out
    info = sf.info(str(decoded))
    assert (info.samplerate, info.frames, info.channels) == (16_000, 16_000, 1)
    assert main(["info", str(codes)]) == 0 and "2 levels" in capsys.readouterr().out


def test_bad_inputs_exit_with_one_line_and_status_2(files, capsys):
    folder, weights = files
    small = ["--weights", str(weights[0])]
    cases = {
        "No audio file": ["encode", str(folder / "missing.wav"), str(folder / "x.codes"), *small],
        "not a format": ["encode", str(folder / "notes.txt"), str(folder / "x.codes"), *small],
        "--mono": ["encode", str(folder / "stereo.wav"), str(folder / "x.codes"), *small],
        "offers 0.4 kbps, 0.8 kbps": [
            "encode",
            str(folder / "clip.wav"),
            str(folder / "x.codes"),
            "--bitrate",
            "6",
            *small,
        ],
        "must be a number": ["encode", str(folder / "clip.wav"), str(folder / "x.codes"), "--bitrate", "six", *small],
        "not a course_lib codes file": ["decode", str(folder / "clip.wav"), str(folder / "x.wav"), *small],
        "No codes file": ["decode", str(folder / "missing.codes"), str(folder / "x.wav"), *small],
    }
    for message, argv in cases.items():
        assert main(argv) == 2, message
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and "Traceback" not in err, (message, err)


def test_stereo_and_other_rates_are_mixed_down_and_resampled_on_request(files, capsys):
    folder, weights = files
    codes = folder / "stereo.codes"
    argv = [
        "encode",
        str(folder / "stereo.wav"),
        str(codes),
        "--mono",
        "--bitrate",
        "0.8",
        "--weights",
        str(weights[0]),
    ]
    assert main(argv) == 0
    assert "resampled" in capsys.readouterr().out
    from course_lib.codec.codes_file import load_codes

    assert load_codes(codes).num_samples == 8000  # 0.5 s at 16 kHz


def test_decoding_with_another_model_is_refused(files, capsys):
    folder, weights = files
    codes = folder / "clip_other.codes"
    assert main(["encode", str(folder / "clip.wav"), str(codes), "--bitrate", "0.4", "--weights", str(weights[0])]) == 0
    capsys.readouterr()
    assert main(["decode", str(codes), str(folder / "y.wav"), "--weights", str(weights[1])]) == 2
    assert "another codec" in capsys.readouterr().err
    assert not (folder / "y.wav").exists()


def test_the_module_runs_as_a_command_with_the_shipped_codec(files, tmp_path):
    folder, _ = files
    codes, decoded = tmp_path / "clip.codes", tmp_path / "clip.wav"
    run = [sys.executable, "-m", "course_lib.codec"]
    encoded = subprocess.run(
        [*run, "encode", str(folder / "clip.wav"), str(codes), "--bitrate", "3"], capture_output=True, text=True
    )
    assert encoded.returncode == 0, encoded.stderr
    assert "3 kbps (6 levels" in encoded.stdout and TINY_CODEC.exists()
    assert 375 <= codes.stat().st_size < 375 + 1500  # 1 s at 3 kbps = 375 bytes of codes
    out = subprocess.run([*run, "decode", str(codes), str(decoded)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert sf.info(str(decoded)).frames == 16_000


@pytest.fixture(scope="module")
def small_codes(files):
    """``clip.wav`` encoded at 0.4 kbps by the small codec 0: 50 frames x 2 levels x 4 bits = 50 bytes of codes."""
    folder, weights = files
    path = folder / "small.codes"
    assert main(["encode", str(folder / "clip.wav"), str(path), "--bitrate", "0.4", "--weights", str(weights[0])]) == 0
    return path


def refused(argv, capsys, *messages):
    """Run ``main(argv)``; assert exit 2 and one line on stderr holding every one of ``messages``; -> that line."""
    assert main(argv) == 2, argv
    captured = capsys.readouterr()
    err = captured.err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for message in messages:
        assert message in err, (message, err)
    return err


def test_an_output_that_is_the_input_is_refused_in_every_spelling(files, tmp_path, monkeypatch, capsys):
    folder, weights = files
    small = ["--weights", str(weights[0])]
    song = tmp_path / "song.wav"
    song.write_bytes((folder / "clip.wav").read_bytes())
    (tmp_path / "link.wav").symlink_to(song)
    os.link(song, tmp_path / "hard.wav")
    monkeypatch.chdir(tmp_path)
    for output in ("song.wav", "./song.wav", str(song), "../" + tmp_path.name + "/song.wav", "link.wav", "hard.wav"):
        refused(["encode", "song.wav", output, *small], capsys, "is the input file", "another name")
    assert song.read_bytes() == (folder / "clip.wav").read_bytes()
    # a codes file named .wav by mistake, decoded onto itself
    assert main(["encode", "song.wav", "coded.wav", "--bitrate", "0.4", *small]) == 0
    coded = (tmp_path / "coded.wav").read_bytes()
    for output in ("coded.wav", "./coded.wav"):
        refused(["decode", "coded.wav", output, *small], capsys, "is the input file")
    assert (tmp_path / "coded.wav").read_bytes() == coded


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(frames=-5), "frames is -5"),
        (dict(num_samples=0), "num_samples is 0"),
        (dict(codebook_size=0), "codebook_size is 0"),
        (dict(bits_per_code=0), "bits_per_code is 0"),
        (dict(num_samples=-100), "num_samples is -100"),
        (dict(num_samples=12_000), "frames is 50, but 12000 samples make 38 frames"),
        (dict(frames="50"), "frames is '50', not a whole number"),
        (dict(num_samples=DELETE), "lacks num_samples"),
        (dict(sample_rate=8000, frame_rate=25.0), "header disagrees with it: sample_rate 8000 (file) vs 16000"),
        (dict(format="course_lib.codes/3"), "update course_lib"),
    ],
)
def test_a_bad_header_is_refused_and_nothing_is_written(files, small_codes, tmp_path, capsys, changes, message):
    _, weights = files
    bad, output = rewrite_codes(small_codes, tmp_path / "bad.codes", **changes), tmp_path / "bad.wav"
    refused(["decode", str(bad), str(output), "--weights", str(weights[0])], capsys, message)
    assert list(tmp_path.iterdir()) == [bad]  # no WAV, and no hidden .tmp either


@pytest.mark.parametrize(
    ("payload", "message"),
    [(flip_a_byte, "CRC-32"), (lambda payload: payload + b"more", "4 bytes follow the 50 bytes of codes")],
)
def test_a_changed_payload_is_refused(files, small_codes, tmp_path, capsys, payload, message):
    _, weights = files
    bad = rewrite_codes(small_codes, tmp_path / "bad.codes", payload=payload)
    refused(["decode", str(bad), str(tmp_path / "bad.wav"), "--weights", str(weights[0])], capsys, message)
    refused(["info", str(bad)], capsys, message)
    assert not (tmp_path / "bad.wav").exists()


def test_a_format_1_file_still_decodes_and_says_it_has_no_checksum(files, small_codes, tmp_path, capsys):
    _, weights = files
    old = rewrite_codes(small_codes, tmp_path / "old.codes", format="course_lib.codes/1", payload_crc32=DELETE)
    assert main(["decode", str(old), str(tmp_path / "old.wav"), "--weights", str(weights[0])]) == 0
    assert "without a checksum" in capsys.readouterr().out
    assert sf.info(str(tmp_path / "old.wav")).frames == 16_000
    assert main(["info", str(old)]) == 0 and "no checksum" in capsys.readouterr().out
    assert main(["info", str(small_codes)]) == 0 and "CRC-32" in capsys.readouterr().out


def test_threads_must_be_a_positive_whole_number(files, small_codes, tmp_path, capsys):
    _, weights = files
    for threads in ("-1", "0", "two"):
        argv = ["decode", str(small_codes), str(tmp_path / "x.wav"), "--weights", str(weights[0]), "--threads", threads]
        refused(argv, capsys, "--threads must be a whole number", "at least 1")
    assert not (tmp_path / "x.wav").exists()


def test_an_empty_input_is_called_empty(files, tmp_path, capsys):
    _, weights = files
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "empty.codes").write_bytes(b"")
    err = refused(["encode", str(tmp_path / "empty.wav"), str(tmp_path / "x.codes")], capsys, "empty.wav is empty")
    assert "ffmpeg" not in err
    refused(["decode", str(tmp_path / "empty.codes"), str(tmp_path / "x.wav")], capsys, "empty.codes is empty")


def test_write_failures_name_the_users_path_not_the_hidden_temporary_file(
    files, small_codes, tmp_path, monkeypatch, capsys
):
    folder, weights = files
    small = ["--weights", str(weights[0])]
    (tmp_path / "taken.codes").mkdir()
    (tmp_path / "taken.wav").mkdir()
    err = refused(
        ["encode", str(folder / "clip.wav"), str(tmp_path / "taken.codes"), "--bitrate", "0.4", *small], capsys
    )
    assert "taken.codes is a folder" in err and ".tmp" not in err
    err = refused(["decode", str(small_codes), str(tmp_path / "taken.wav"), *small], capsys)
    assert "taken.wav is a folder" in err and ".tmp" not in err

    def no_permission(source, target):  # what a folder the user cannot write to gives
        raise PermissionError(13, "Permission denied", str(source), None, str(target))

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    output = tmp_path / "out.wav"
    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", no_permission)
        err = refused(["decode", str(small_codes), str(output), *small], capsys, f"Cannot write {output}: Permission")
    assert ".tmp" not in err and list(tmp_path.glob(".*")) == []
    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", disk_full)
        err = refused(["decode", str(small_codes), str(output), *small], capsys, str(output))
    assert ("No space left" in err or "disk is full" in err) and ".tmp" not in err
    assert not output.exists() and list(tmp_path.glob(".*")) == []


@pytest.mark.parametrize("case", ["threads", "codebook"])
def test_failures_exit_2_with_one_line_from_the_shell(files, small_codes, tmp_path, case):
    """The exit status and stderr a script sees, for two inputs that used to end in a traceback."""
    _, weights = files
    small = ["--weights", str(weights[0])]
    if case == "threads":
        argv = ["decode", str(small_codes), str(tmp_path / "x.wav"), "--threads", "-1", *small]
    else:
        bad = rewrite_codes(small_codes, tmp_path / "bad.codes", codebook_size=0)
        argv = ["decode", str(bad), str(tmp_path / "x.wav"), *small]
    run = subprocess.run([sys.executable, "-m", "course_lib.codec", *argv], capture_output=True, text=True)
    assert run.returncode == 2 and run.stderr.startswith("error: ") and run.stderr.count("\n") == 1, run.stderr
    assert not (tmp_path / "x.wav").exists()
