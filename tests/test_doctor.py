"""``python -m course_lib doctor``: every [FAIL] makes it exit non-zero, bad settings are reported, not raised."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from course_lib import doctor


def run_doctor(**env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("COURSE_DEVICE", "COURSE_SCALE")}
    command = [sys.executable, "-m", "course_lib", "doctor"]
    return subprocess.run(command, env={**environment, **env}, capture_output=True, text=True, timeout=300)


def missing_gpu() -> str:
    """A CUDA device this machine does not have: any on a CPU-only machine, else one past the last."""
    return f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda"


def test_a_missing_gpu_fails_the_doctor():
    result = run_doctor(COURSE_DEVICE=missing_gpu())
    assert result.returncode == 1, result.stdout + result.stderr
    assert "[FAIL] device:" in result.stdout and "fix: unset COURSE_DEVICE" in result.stdout
    assert "All requirements met." not in result.stdout
    assert "1 check(s) failed (device)" in result.stdout.splitlines()[-1]


def test_unknown_device_and_scale_names_are_failures_with_their_fix_not_tracebacks():
    result = run_doctor(COURSE_DEVICE="garbage", COURSE_SCALE="huge")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "[FAIL] device: Unknown device 'garbage'" in result.stdout
    assert "[FAIL] scale: Unknown scale 'huge'" in result.stdout
    assert "fix: unset COURSE_SCALE (tiny), or set COURSE_SCALE=tiny or full" in result.stdout
    assert "All requirements met." not in result.stdout
    assert "2 check(s) failed (device, scale)" in result.stdout.splitlines()[-1]


def test_a_gpu_index_past_the_last_is_a_failure(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("COURSE_DEVICE", "cuda:3")
    check = doctor.device_check()
    assert not check.ok and "1 GPU(s)" in check.detail and "cuda:0" in check.fix


def test_a_broken_torch_is_a_failure_with_the_reinstall_command(monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("libtorch_cpu.so: undefined symbol")

    monkeypatch.setattr(torch, "ones", broken)
    check = doctor.torch_check()
    assert not check.ok and "undefined symbol" in check.detail and check.fix == doctor.FIX_TORCH_PAIR


@pytest.mark.parametrize("failed", [0, 1])
def test_main_exits_non_zero_exactly_when_a_check_failed(monkeypatch, capsys, failed):
    checks = [doctor.Check("python", True, "3.11"), doctor.Check("device", not failed, "cuda", "set COURSE_DEVICE=cpu")]
    monkeypatch.setattr(doctor, "requirement_checks", lambda: checks)
    monkeypatch.setattr(doctor, "torchaudio_pair_check", lambda: doctor.Check("torch + torchaudio", True, "ok"))
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    monkeypatch.delenv("COURSE_SCALE", raising=False)
    assert doctor.main() == failed
    out = capsys.readouterr().out
    assert ("All requirements met." in out) == (not failed)
