"""Tests of the shipped spectrogram diffusion models, their data (scaled log-mel patches) and the Fréchet mel distance."""

from __future__ import annotations

import math

import pytest
import torch

from course_lib.diffusion import (
    ConsistencyModel,
    MelPatches,
    SpectrogramScaling,
    consistency_sample,
    ddim_sample,
    frechet_mel_distance,
    held_out_patches,
    load_tiny_consistency,
    load_tiny_ddpm,
    load_tiny_distilled,
)
from course_lib.diffusion.pretrained import TINY_CONSISTENCY, TINY_DDPM, TINY_DISTILLED, read_metadata
from course_lib.diffusion.train import main, recipe
from course_lib.errors import CheckpointError, ConfigError
from course_lib.train import EMALoss


@pytest.fixture(scope="module")
def reference() -> torch.Tensor:
    """Every frame of 32 held-out clips (SynthMusic(seed=1)), ``(32, 64, 201)`` log-mel."""
    return held_out_patches(32).log_mels


def test_scaling_maps_the_log_mel_range_to_about_minus_one_to_one():
    scaling = SpectrogramScaling()
    floor, loud = torch.tensor(math.log(1e-5)), torch.tensor(1.5)
    assert scaling.to_model(floor).item() == pytest.approx(-1.0, abs=0.01)
    assert scaling.to_model(loud).item() == pytest.approx(1.0, abs=0.01)
    x = torch.linspace(-1, 1, 11)
    torch.testing.assert_close(scaling.to_model(scaling.to_log_mel(x)), x)
    assert scaling.to_log_mel(torch.tensor(-5.0)).item() == pytest.approx(math.log(1e-5))  # clamped at silence


def test_mel_patches_shapes_range_and_seeding():
    patches = MelPatches(4, seed=0)
    assert patches.log_mels.shape == (4, 64, 201)
    first = patches.random_batch(6, torch.Generator().manual_seed(0))
    again = patches.random_batch(6, torch.Generator().manual_seed(0))
    assert first.shape == (6, 1, 64, 64)
    torch.testing.assert_close(first, again)
    assert -1.01 < first.min() and first.max() < 1.2  # about [-1, 1]
    assert patches.fixed_batch(2).shape == (2, 1, 64, 64)
    with pytest.raises(ConfigError, match="frames"):
        MelPatches(1, seconds=0.5)


def test_frechet_mel_distance_of_real_data_is_small_and_of_noise_large(reference):
    scaling = SpectrogramScaling()
    real = held_out_patches(40).log_mels[32:]  # 8 clips the reference does not contain
    noise = scaling.to_log_mel(torch.randn(8, 64, 201, generator=torch.Generator().manual_seed(0)))
    real_fmd, noise_fmd = frechet_mel_distance(real, reference), frechet_mel_distance(noise, reference)
    assert real_fmd < 0.2 * noise_fmd, (real_fmd, noise_fmd)


def test_shipped_teacher_loads_with_its_settings():
    ddpm = load_tiny_ddpm("cpu")
    assert ddpm.shape == (1, 64, 64)
    assert ddpm.prediction_type == "v"
    assert ddpm.schedule.num_timesteps == 1000
    assert sum(p.numel() for p in ddpm.model.parameters()) < 400_000
    assert (
        "train_spectrogram_ddpm" in ddpm.metadata["command"]
    )  # made by the command's earlier name, now diffusion.train
    assert TINY_DDPM.stat().st_size < 5e6


def test_a_trained_tiny_model_samples_beat_noise_on_the_frechet_mel_distance(reference):
    """The issue's check: the shipped model's samples are measurably closer to held-out music than noise."""
    ddpm = load_tiny_ddpm("cpu")
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(4, *ddpm.shape, generator=generator)
    samples = ddim_sample(
        ddpm.model, ddpm.schedule, noise.shape, num_steps=20, prediction_type=ddpm.prediction_type, noise=noise,
        progress=False,
    )  # fmt: skip
    sample_fmd = frechet_mel_distance(ddpm.to_log_mel(samples), reference)
    noise_fmd = frechet_mel_distance(ddpm.to_log_mel(noise), reference)
    assert sample_fmd < 0.5 * noise_fmd, (sample_fmd, noise_fmd)
    audio = ddpm.to_audio(samples[:1], n_iter=4)
    assert audio.shape == (1, 63 * 160) and torch.isfinite(audio).all()


def test_shipped_students_beat_noise(reference):
    distilled, consistency = load_tiny_distilled("cpu"), load_tiny_consistency("cpu")
    assert isinstance(consistency.model, ConsistencyModel)
    assert TINY_DISTILLED.stat().st_size < 5e6 and TINY_CONSISTENCY.stat().st_size < 5e6
    noise = torch.randn(4, *distilled.shape, generator=torch.Generator().manual_seed(0))
    noise_fmd = frechet_mel_distance(distilled.to_log_mel(noise), reference)
    four_steps = ddim_sample(
        distilled.model, distilled.schedule, noise.shape, num_steps=4, spacing="trailing",
        prediction_type=distilled.prediction_type, noise=noise, progress=False,
    )  # fmt: skip
    one_step = consistency_sample(consistency.model, consistency.schedule, noise.shape, noise=noise, progress=False)
    for samples in (four_steps, one_step):
        assert frechet_mel_distance(distilled.to_log_mel(samples), reference) < 0.5 * noise_fmd


def test_metadata_of_a_missing_file_names_the_command(tmp_path):
    with pytest.raises(CheckpointError, match="course_lib.diffusion.train "):
        read_metadata(tmp_path / "missing.safetensors")


def test_ema_loss_averages_the_weights():
    model = torch.nn.Linear(2, 1)
    wrapped = EMALoss(lambda m, batch: {"loss": m(batch).sum()}, decay=0.5)
    wrapped(model, torch.ones(1, 2))  # first call: the copy
    with torch.no_grad():
        model.weight.add_(1.0)
    before = wrapped.ema.weight.clone()
    wrapped(model, torch.ones(1, 2))  # second call: moves towards the new weights (warm-up decay 2/11)
    expected = before + (1 - 2 / 11) * (model.weight - before)
    torch.testing.assert_close(wrapped.ema.weight, expected)


def test_recipes():
    assert recipe("teacher", "tiny").prediction_type == "v"
    assert recipe("progressive", "tiny").teacher_steps // 2**3 == recipe("progressive", "tiny").final_steps
    assert recipe("teacher", "full").steps > recipe("teacher", "tiny").steps
    assert recipe("teacher", "tiny", steps=7).steps == 7
    with pytest.raises(ConfigError):
        recipe("nonsense")


@pytest.mark.slow
def test_training_command_writes_a_loadable_checkpoint(tmp_path):
    out = tmp_path / "smoke.safetensors"
    metadata = main(["--steps", "2", "--clips", "4", "--eval-samples", "1", "--out", str(out)])
    config, saved = read_metadata(out)
    assert saved["steps"] == 2 and saved["stage"] == "teacher" and config["time_embedding"] == "adagn"
    assert math.isfinite(metadata["fmd_ddim50"])
