"""The command line ``python -m course_lib.codec``: encode and decode a small WAV end to end, and every bad input."""

import subprocess
import sys

import pytest
import soundfile as sf
import torch

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
