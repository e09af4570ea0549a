"""The seven training commands as a user meets them: resume after a crash, Ctrl-C, bad input (course_lib.train.command).

A crash is simulated in-process by raising from ``Trainer._train_step`` at a chosen step (what SIGKILL
leaves behind: the last checkpoint on disk, nothing else); one test kills a real process with
SIGKILL and one sends it SIGINT. "Bit-identical" is checked on the tensors of the weights files (their
metadata holds wall times, which differ).
"""

from __future__ import annotations

import importlib
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from course_lib.train import Trainer
from course_lib.train.command import run_as_command

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINTS = ROOT / "course_lib" / "checkpoints"
FAST = ["--checkpoint-every", "2", "--no-progress", "--device", "cpu"]
# The smallest runs of each command that still take every path: GAN steps for the codec and the
# vocoder, EMA for the DDPM teacher, a target network for consistency, three phases for progressive.
COMMANDS = {
    "vqvae": ("course_lib.quantize.train", ["--model", "vqvae", "--steps", "6"]),
    "codec": (
        "course_lib.codec.train",
        ["--steps", "6", "--adversarial-start", "3", "--batch-size", "2", "--clips", "32"],
    ),
    "joint_embedding": ("course_lib.joint_embedding.train", ["--steps", "6", "--batch-size", "8", "--clips", "64"]),
    "attributes": ("course_lib.attributes.train", ["--steps", "6", "--batch-size", "8", "--clips", "64"]),
    "ddpm_teacher": (
        "course_lib.diffusion.train",
        ["--steps", "6", "--batch-size", "2", "--clips", "8", "--eval-samples", "2"],
    ),
    "progressive": (
        "course_lib.diffusion.train",
        ["--stage", "progressive", "--teacher", str(CHECKPOINTS / "ddpm_tiny.safetensors"), "--steps", "2",
         "--batch-size", "2", "--clips", "8", "--eval-samples", "2"],
    ),  # fmt: skip
    "consistency": (
        "course_lib.diffusion.train",
        ["--stage", "consistency", "--teacher", str(CHECKPOINTS / "ddpm_tiny.safetensors"), "--steps", "6",
         "--batch-size", "2", "--clips", "8", "--eval-samples", "2"],
    ),  # fmt: skip
    "mel_vae": ("course_lib.latent_diffusion.train", ["--stage", "vae", "--steps", "6", "--batch-size", "2", "--clips", "8"]),
    "vocoder": ("course_lib.latent_diffusion.train", ["--stage", "vocoder", "--steps", "6", "--batch-size", "2", "--clips", "8"]),
    "lm_delay": (
        "course_lib.lm.train",
        ["--stage", "delay", "--steps", "6", "--batch-size", "2", "--clips", "8", "--validation-clips", "4"],
    ),
}  # fmt: skip


class SimulatedCrash(Exception):
    """Raised in place of a step: the process "dies" with only its last checkpoint on disk."""


def crash_at_call(monkeypatch: pytest.MonkeyPatch, call: int) -> None:
    """Make the ``call``-th training step of this process (counted over every phase) crash."""
    original, calls = Trainer._train_step, [0]

    def train_step(self, batch):
        calls[0] += 1
        if calls[0] == call:
            raise SimulatedCrash
        return original(self, batch)

    monkeypatch.setattr(Trainer, "_train_step", train_step)


def tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(path)


def assert_same_weights(a: Path, b: Path) -> None:
    first, second = tensors(a), tensors(b)
    assert first.keys() == second.keys()
    different = [name for name in first if not torch.equal(first[name], second[name])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_crashed_run_resumes_to_the_weights_of_an_uninterrupted_one(name, tmp_path, monkeypatch, capsys):
    module, arguments = COMMANDS[name]
    main = importlib.import_module(module).main
    reference, crashed = tmp_path / "reference.safetensors", tmp_path / "crashed.safetensors"
    main([*arguments, *FAST, "--out", str(reference)])
    with monkeypatch.context() as patch:
        crash_at_call(patch, 5)  # after the checkpoint of step 4 (of phase 2 for progressive, 2 steps a phase)
        with pytest.raises(SimulatedCrash):
            main([*arguments, *FAST, "--out", str(crashed)])
    assert not crashed.exists() and list(tmp_path.glob("crashed.safetensors*.ckpt"))
    capsys.readouterr()
    main([*arguments, *FAST, "--out", str(crashed)])
    assert "resuming from step" in capsys.readouterr().out
    assert_same_weights(reference, crashed)
    assert not list(tmp_path.glob("*.ckpt"))  # removed once the weights are written


def test_a_checkpoint_of_other_arguments_is_refused_and_fresh_starts_over(tmp_path, monkeypatch, capsys):
    from course_lib.quantize.train import main

    out = tmp_path / "vqvae.safetensors"
    with monkeypatch.context() as patch:
        crash_at_call(patch, 3)
        with pytest.raises(SimulatedCrash):
            main(["--model", "vqvae", "--steps", "6", *FAST, "--out", str(out)])
    assert run_as_command(main, ["--model", "vqvae", "--steps", "8", *FAST, "--out", str(out)]) == 2
    message = capsys.readouterr().err
    assert "was written by another run" in message and "steps: 6 in the checkpoint, 8 now" in message
    assert "--fresh" in message and "Traceback" not in message
    main(["--model", "vqvae", "--steps", "8", *FAST, "--fresh", "--out", str(out)])
    assert "resuming" not in capsys.readouterr().out and out.is_file()


@pytest.mark.parametrize(
    ("argv", "environment", "expected"),
    [
        (["--steps", "0"], {}, "0 is not allowed"),
        (["--steps", "-5"], {}, "-5 is not allowed"),
        (["--threads", "-1"], {}, "-1 is not allowed"),
        ([], {"COURSE_SCALE": "huge"}, "Unknown scale 'huge'"),
        ([], {"COURSE_DEVICE": "garbage"}, "garbage"),
    ],
)
def test_bad_input_is_one_clear_line_with_exit_status_2(argv, environment, expected, tmp_path, monkeypatch, capsys):
    from course_lib.quantize.train import main

    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    arguments = ["--model", "vqvae", "--out", str(tmp_path / "v.safetensors"), *argv]
    with pytest.raises(SystemExit) as exit_info:  # argparse exits itself for a bad number
        raise SystemExit(run_as_command(main, arguments))
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert expected in error and "Traceback" not in error
    assert not (tmp_path / "v.safetensors").exists()


def test_a_pickle_given_as_the_codec_is_refused_from_the_shell(tmp_path):
    fake = tmp_path / "codec.safetensors"
    fake.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    result = _shell(["course_lib.lm.train", "--stage", "delay", "--codec", str(fake), "--out", str(tmp_path / "o")])
    assert result.returncode == 2, result.stderr
    assert str(fake) in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("module", sorted({module for module, _ in COMMANDS.values()}))
def test_every_command_answers_a_bad_scale_with_one_line(module, tmp_path):
    extra = ["--model", "vqvae"] if module == "course_lib.quantize.train" else []
    extra += ["--stage", "delay"] if module.endswith("lm.train") else []
    extra += ["--stage", "vae"] if module.endswith("latent_diffusion.train") else []
    result = _shell([module, *extra, "--out", str(tmp_path / "o.safetensors")], COURSE_SCALE="huge")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("Unknown scale 'huge'")


def _shell(argv: list[str], **environment: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **environment}
    return subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True, env=env, timeout=300)


# A run in its own process, told to kill itself (SIGKILL, or Ctrl-C's SIGINT) at one step.
DRIVER = """
import os, signal, sys
from course_lib.train import Trainer
number, at = int(sys.argv[1]), int(sys.argv[2])
original = Trainer._train_step
def train_step(self, batch):
    if self.step == at:
        os.kill(os.getpid(), number)
    return original(self, batch)
Trainer._train_step = train_step
from course_lib.train.command import run_as_command
from course_lib.quantize.train import main
sys.exit(run_as_command(main, sys.argv[3:]))
"""


def _driven(number: int, at: int, argv: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-c", DRIVER, str(number), str(at), *argv]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def test_sigkill_then_the_same_command_gives_the_same_weights(tmp_path):
    arguments = ["--model", "vqvae", "--steps", "6", *FAST]
    reference, killed = tmp_path / "reference.safetensors", tmp_path / "killed.safetensors"
    assert _driven(0, -1, [*arguments, "--out", str(reference)]).returncode == 0  # signal 0: nothing happens
    result = _driven(signal.SIGKILL, 5, [*arguments, "--out", str(killed)])
    assert result.returncode == -signal.SIGKILL and not killed.exists()
    result = _driven(0, -1, [*arguments, "--out", str(killed)])
    assert result.returncode == 0 and "resuming from step 4 of 6" in result.stdout
    assert_same_weights(reference, killed)


def test_ctrl_c_saves_prints_one_line_exits_130_and_resumes(tmp_path):
    arguments = ["--model", "vqvae", "--steps", "6", "--checkpoint-every", "100", "--no-progress", "--device", "cpu"]
    reference, stopped = tmp_path / "reference.safetensors", tmp_path / "stopped.safetensors"
    assert _driven(0, -1, [*arguments, "--out", str(reference)]).returncode == 0
    result = _driven(signal.SIGINT, 3, [*arguments, "--out", str(stopped)])
    assert result.returncode == 130, result.stderr
    assert result.stderr.strip().endswith("stopped at step 4; run the same command to resume")
    assert "Traceback" not in result.stderr and not stopped.exists()
    result = _driven(0, -1, [*arguments, "--out", str(stopped)])
    assert "resuming from step 4 of 6" in result.stdout
    assert_same_weights(reference, stopped)
