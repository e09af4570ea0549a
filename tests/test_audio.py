"""Audio I/O, conditioning and spectrograms (course_lib.audio)."""

import math
import os

import numpy as np
import pytest
import soundfile as sf
import torch

from course_lib.audio import (
    MelConfig,
    audio_table,
    check_audio,
    load_audio,
    log_mel_spectrogram,
    log_mel_to_audio,
    loudness_normalize,
    mel_spectrogram,
    peak_normalize,
    require_mono,
    require_sample_rate,
    resample,
    rms_db,
    save_audio,
    spectral_convergence,
    stft,
    to_mono,
)
from course_lib.errors import AudioInputError


def sine(frequency: float, seconds: float = 1.0, sample_rate: int = 16_000, amplitude: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(seconds * sample_rate), dtype=torch.float64) / sample_rate
    return (amplitude * torch.sin(2 * math.pi * frequency * t)).float()


def peak_frequency(audio: torch.Tensor, sample_rate: int) -> float:
    spectrum = torch.fft.rfft(audio * torch.hann_window(audio.numel()))
    return float(spectrum.abs().argmax()) * sample_rate / audio.numel()


def test_save_then_load_round_trip(tmp_path):
    audio = sine(440.0)
    path = save_audio(tmp_path / "a.wav", audio, 16_000, subtype="FLOAT")
    loaded, rate = load_audio(path)
    assert rate == 16_000
    assert torch.allclose(loaded, audio, atol=1e-7)
    assert not list(tmp_path.glob(".*.tmp")), "the temporary file must be renamed away"


def test_saved_files_get_ordinary_permissions(tmp_path):
    old_mask = os.umask(0o022)
    try:
        path = save_audio(tmp_path / "a.flac", sine(440.0), 16_000)
    finally:
        os.umask(old_mask)
    assert path.stat().st_mode & 0o777 == 0o644, oct(path.stat().st_mode)


def test_load_resamples_and_mixes_to_mono(tmp_path):
    stereo = torch.stack([sine(440.0, sample_rate=22_050), sine(440.0, sample_rate=22_050) * 0.5])
    path = save_audio(tmp_path / "s.flac", stereo, 22_050)
    audio, rate = load_audio(path, sample_rate=16_000)
    assert rate == 16_000 and audio.dim() == 1
    assert audio.numel() == pytest.approx(16_000, abs=1)
    assert abs(audio.abs().max().item() - 0.375) < 0.01  # the mean of the two channels
    both, _ = load_audio(path, mono=False)
    assert both.shape[0] == 2


@pytest.mark.parametrize("target", [8_000, 22_050, 44_100])
def test_resampling_a_sine_keeps_its_frequency(target):
    audio = sine(440.0, seconds=1.0, sample_rate=16_000)
    out = resample(audio, 16_000, target)
    assert out.numel() == target
    assert peak_frequency(out, target) == pytest.approx(440.0, abs=1.5)


def test_missing_empty_and_corrupt_files_raise_clear_errors(tmp_path):
    with pytest.raises(AudioInputError, match="No audio file"):
        load_audio(tmp_path / "nothing.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioInputError, match="empty"):
        load_audio(tmp_path / "empty.wav")
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x01garbage" * 10)
    with pytest.raises(AudioInputError, match="corrupt"):
        load_audio(tmp_path / "corrupt.wav")
    sf.write(tmp_path / "zero.wav", np.zeros((0, 1), dtype=np.float32), 16_000)
    with pytest.raises(AudioInputError, match="no samples|empty"):
        load_audio(tmp_path / "zero.wav")


def test_nan_inf_and_wrong_rate_or_channels_are_named():
    with pytest.raises(AudioInputError, match="NaN or Inf"):
        check_audio(torch.tensor([0.0, float("nan"), 1.0]))
    with pytest.raises(AudioInputError, match="NaN or Inf"):
        save_audio("x.wav", torch.tensor([float("inf")]), 16_000)
    with pytest.raises(AudioInputError, match="empty"):
        check_audio(torch.zeros(0))
    with pytest.raises(AudioInputError, match="resample"):
        require_sample_rate(44_100, 16_000, "the codec")
    with pytest.raises(AudioInputError, match="to_mono"):
        require_mono(torch.zeros(2, 100))


def test_normalisation():
    audio = torch.stack([sine(220.0, amplitude=0.1), sine(220.0, amplitude=0.8)])
    assert torch.allclose(peak_normalize(audio).abs().amax(-1), torch.tensor([0.9, 0.9]), atol=1e-4)
    levelled = loudness_normalize(audio, target_db=-20.0)
    assert torch.allclose(rms_db(levelled), torch.tensor([-20.0, -20.0]), atol=0.05)
    assert to_mono(audio).shape == (16_000,)


def test_stft_shapes_and_batching():
    audio = torch.randn(3, 16_000)
    spec = stft(audio, n_fft=512, hop_length=128)
    assert spec.shape == (3, 257, 16_000 // 128 + 1) and spec.is_complex()
    assert torch.allclose(stft(audio[1], 512, 128), spec[1], atol=1e-5)


def test_mel_puts_a_sine_in_the_right_band():
    config = MelConfig()
    mel = mel_spectrogram(sine(1_000.0), config)
    assert mel.shape == (config.n_mels, 16_000 // config.hop_length + 1)
    band = int(mel.mean(-1).argmax())
    centres = torch.linspace(0, 2595 * math.log10(1 + 8_000 / 700), config.n_mels + 2)[1:-1]
    centre_hz = 700 * (10 ** (centres[band] / 2595) - 1)
    assert abs(centre_hz - 1_000) < 100


def test_log_mel_griffin_lim_round_trip_stays_under_stated_error():
    """mel → (NNLS inverse filterbank) → Griffin-Lim → mel: spectral convergence below 0.15."""
    torch.manual_seed(0)
    config = MelConfig()
    t = torch.arange(32_000) / 16_000
    audio = 0.5 * torch.sin(2 * math.pi * 440 * t) + 0.3 * torch.sin(2 * math.pi * 660 * t) * (t > 1)
    audio = audio + 0.02 * torch.randn_like(audio)
    reconstructed = log_mel_to_audio(log_mel_spectrogram(audio, config), config, length=audio.numel())
    error = spectral_convergence(mel_spectrogram(audio, config), mel_spectrogram(reconstructed, config))
    assert reconstructed.shape == audio.shape
    assert error < 0.15, f"spectral convergence {error:.3f}"


def test_audio_table_embeds_one_player_per_clip():
    table = audio_table({"a": sine(440.0), "b": sine(880.0), "c": sine(220.0)}, 16_000, columns=2, title="t")
    assert table.data.count("<audio") == 3
    assert table.data.count("<tr>") == 2
    assert "data:audio/flac;base64," in table.data
