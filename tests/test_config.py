"""Scale presets, device choice, seeding and the doctor (course_lib.config, course_lib.doctor)."""

import dataclasses
import subprocess
import sys
from typing import ClassVar

import numpy as np
import pytest
import torch

from course_lib.config import ScaledConfig, data_dir, get_device, get_scale, seed_everything, training_device
from course_lib.doctor import FIX_TORCH_PAIR, requirement_checks, summary_line
from course_lib.errors import ConfigError


def test_scale_defaults_to_tiny_and_reads_the_environment(monkeypatch):
    monkeypatch.delenv("COURSE_SCALE", raising=False)
    assert get_scale() == "tiny"
    monkeypatch.setenv("COURSE_SCALE", "FULL")
    assert get_scale() == "full"
    assert get_scale("tiny") == "tiny"


def test_unknown_scale_and_device_raise_clear_errors(monkeypatch):
    with pytest.raises(ConfigError, match="COURSE_SCALE=tiny"):
        get_scale("huge")
    with pytest.raises(ConfigError, match="cuda, cuda:N, mps or cpu"):
        get_device("tpu")
    monkeypatch.setenv("COURSE_DEVICE", "gpu")
    with pytest.raises(ConfigError, match="Unknown device 'gpu'"):
        get_device()


def test_device_override_and_missing_cuda(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert get_device() == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            get_device("cuda")


def test_training_device_is_the_cpu_at_tiny_scale_and_the_best_device_at_full(monkeypatch):
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    monkeypatch.delenv("COURSE_SCALE", raising=False)
    assert training_device(None, "tiny") == torch.device("cpu")
    assert training_device(None, None) == torch.device("cpu")
    assert training_device(None, "full") == get_device()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert training_device(None, "full") == torch.device("cuda")
    assert training_device(None, "tiny") == torch.device("cpu")
    assert training_device("cpu", "full") == torch.device("cpu")
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert training_device(None, "full") == torch.device("cpu")


def test_seed_everything_repeats_all_generators():
    seed_everything(7)
    first = (torch.rand(3), np.random.rand(3))
    seed_everything(7)
    second = (torch.rand(3), np.random.rand(3))
    assert torch.equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    assert torch.equal(seed_everything(7).initial_seed() * torch.ones(1), 7 * torch.ones(1))


def test_data_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "data"))
    assert data_dir() == tmp_path / "data" and (tmp_path / "data").is_dir()


@dataclasses.dataclass
class _Demo(ScaledConfig):
    width: int = 8
    depth: int = 2
    full_overrides: ClassVar[dict] = {"width": 64}


def test_scaled_config_presets(monkeypatch):
    assert _Demo.tiny() == _Demo(8, 2)
    assert _Demo.full() == _Demo(64, 2)
    assert _Demo.for_scale("full", depth=3) == _Demo(64, 3)
    monkeypatch.setenv("COURSE_SCALE", "full")
    assert _Demo.for_scale().width == 64
    assert _Demo.tiny().to_dict() == {"width": 8, "depth": 2}


def test_doctor_reports_every_requirement_and_passes_here():
    checks = {check.name: check for check in requirement_checks()}
    for name in ("torch", "torchaudio", "numpy", "soundfile", "librosa"):
        assert name in checks and checks[name].ok, checks.get(name)
    result = subprocess.run([sys.executable, "-m", "course_lib", "doctor"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[OK] torch + torchaudio" in result.stdout and "device:" in result.stdout
    assert "scale tiny" in summary_line() or "scale full" in summary_line()


def test_doctor_names_the_fix_for_a_broken_torch_pair(monkeypatch):
    from course_lib import doctor

    class Failed:
        returncode = 1
        stderr = "OSError: libc10_cuda.so: cannot open shared object file"

    monkeypatch.setattr(doctor.subprocess, "run", lambda *a, **k: Failed())
    check = doctor.torchaudio_pair_check()
    assert not check.ok and "libc10_cuda" in check.detail
    assert check.fix == FIX_TORCH_PAIR and "torchaudio==2.11.0" in check.fix


def test_stage_recipe_takes_the_scales_preset_and_keeps_it_for_options_not_given():
    import dataclasses as dc

    from course_lib.config import stage_recipe

    @dc.dataclass
    class Plan:
        steps: int = 10
        lr: float = 1.0
        stage: str = ""

    tiny, full = {"a": {"steps": 20}, "b": {}}, {"a": {"steps": 2000, "lr": 0.5}, "b": {"lr": 0.1}}
    assert stage_recipe(Plan, tiny, full, "a", "tiny", {"lr": None}) == Plan(steps=20, lr=1.0)
    assert stage_recipe(Plan, tiny, full, "a", "full", {"steps": 7}, stage="a") == Plan(7, 0.5, "a")
    with pytest.raises(ConfigError, match="Unknown stage 'c': use one of a, b"):
        stage_recipe(Plan, tiny, full, "c")
