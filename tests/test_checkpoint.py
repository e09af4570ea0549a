"""Tests of checkpoints and shipped weights: round trips, atomic writes, and the errors for bad files."""

from __future__ import annotations

import dataclasses
import errno
import io
import os
import random

import numpy as np
import pytest
import torch

import course_lib.atomic
from course_lib.atomic import DiskFullError, atomic_write
from course_lib.errors import CheckpointError, CourseError
from course_lib.train import load_checkpoint, load_weights, save_checkpoint, save_weights


@dataclasses.dataclass
class TinyConfig:
    hidden: int = 8
    kernel_sizes: tuple = (3, 5)


class TinyNet(torch.nn.Module):
    def __init__(self, config: TinyConfig | None = None):
        super().__init__()
        self.config = config or TinyConfig()
        self.encoder = torch.nn.Linear(4, self.config.hidden)
        self.decoder = torch.nn.Linear(self.config.hidden, 4)
        self.register_buffer("codebook_usage", torch.zeros(self.config.hidden))


class OtherNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = torch.nn.Linear(4, 8)


def trained_parts(seed: int = 0):
    torch.manual_seed(seed)
    model = TinyNet()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    model.decoder(model.encoder(torch.randn(2, 4))).sum().backward()
    optimizer.step()
    scheduler.step()
    return model, optimizer, scheduler


def test_checkpoint_round_trip(tmp_path):
    model, optimizer, scheduler = trained_parts()
    history = [{"step": 1, "loss": 0.5}]
    path = save_checkpoint(tmp_path / "a.pt", model, optimizer, scheduler, step=1, history=history, extra={"k": 3})
    torch.load(path, weights_only=True)  # loads without unpickling any code

    fresh, fresh_optimizer, fresh_scheduler = trained_parts(seed=1)
    checkpoint = load_checkpoint(path, fresh, fresh_optimizer, fresh_scheduler)
    assert checkpoint["step"] == 1 and checkpoint["history"] == history and checkpoint["extra"] == {"k": 3}
    for key, value in model.state_dict().items():
        assert torch.equal(value, fresh.state_dict()[key])
    assert fresh_scheduler.state_dict() == scheduler.state_dict()
    assert torch.equal(
        fresh_optimizer.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"]
    )


def test_rng_states_are_restored_on_request(tmp_path):
    model = TinyNet()
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    save_checkpoint(tmp_path / "a.pt", model)
    expected = (random.random(), np.random.rand(), torch.rand(1))
    load_checkpoint(tmp_path / "a.pt", model)  # default: the RNG is left alone
    assert random.random() != expected[0]
    load_checkpoint(tmp_path / "a.pt", model, restore_rng=True)
    assert (random.random(), np.random.rand(), torch.rand(1)) == expected


def test_checkpoint_of_another_config_names_what_differs(tmp_path):
    save_checkpoint(tmp_path / "a.pt", TinyNet(TinyConfig(hidden=16)))
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(tmp_path / "a.pt", TinyNet(TinyConfig(hidden=8)))
    message = str(caught.value)
    assert "config.hidden: saved 16, this model 8" in message
    assert "tensor encoder.weight: saved shape [16, 4], this model [8, 4]" in message
    assert "Fix:" in message


def test_checkpoint_of_another_model_names_what_differs(tmp_path):
    save_checkpoint(tmp_path / "a.pt", OtherNet())
    with pytest.raises(CheckpointError, match="model class: saved OtherNet, this model TinyNet") as caught:
        load_checkpoint(tmp_path / "a.pt", TinyNet())
    assert "missing: codebook_usage, decoder.bias" in str(caught.value)


@pytest.mark.parametrize("keep", [0.5, 0.0])
def test_cut_short_checkpoint_is_a_clear_error(tmp_path, keep):
    path = save_checkpoint(tmp_path / "a.pt", *trained_parts(), step=1)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError, match="cut short or corrupt"):
        load_checkpoint(path, TinyNet())


def test_foreign_files_are_refused(tmp_path):
    torch.save(TinyNet().state_dict(), tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not a course_lib checkpoint"):
        load_checkpoint(tmp_path / "plain.pt", TinyNet())
    torch.save({"config": TinyConfig()}, tmp_path / "pickled.pt")  # a pickled class instance
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        load_checkpoint(tmp_path / "pickled.pt", TinyNet())
    with pytest.raises(CheckpointError, match="No checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt", TinyNet())


def test_failed_save_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    model, optimizer, scheduler = trained_parts()
    path = save_checkpoint(tmp_path / "a.pt", model, optimizer, scheduler, step=1)

    def save_half_then_fail(obj, file, *args, **kwargs):
        file.write(b"PK\x03\x04 half a zip archive")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", save_half_then_fail)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(path, model, optimizer, scheduler, step=2)
    monkeypatch.undo()
    assert load_checkpoint(path, TinyNet())["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]  # no temporary file left behind


def test_atomic_write_replaces_whole_files_only(tmp_path):
    path = atomic_write(tmp_path / "f.bin", lambda file: file.write(b"old"))

    def fail_midway(file):
        file.write(b"ne")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, fail_midway)
    assert path.read_bytes() == b"old" and len(list(tmp_path.iterdir())) == 1
    atomic_write(path, lambda file: file.write(b"new"))
    assert path.read_bytes() == b"new"


TORCH_DISK_FULL = "[enforce fail at inline_container.cc:672] . file write failed"


class FullDisk(io.FileIO):
    """A file on a disk with ``room`` bytes left: the write that would go past it fails with ENOSPC."""

    room = 100

    def write(self, data):
        if self.tell() + len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(data)


def assert_disk_full(caught, path, kept):
    """The error says the disk is full, names the file asked for (not the hidden .tmp), and what was kept."""
    error = caught.value
    assert isinstance(error, CourseError) and isinstance(error, OSError) and error.errno == errno.ENOSPC
    message = str(error)
    assert f"Could not write {path}: the disk is full (" in message and " free in " in message, message
    assert ".tmp" not in message and "Fix: free some space" in message, message
    assert ("is unchanged" if kept else "Nothing was written") in message, message


@pytest.mark.parametrize(
    "failure",
    [OSError(errno.ENOSPC, "No space left on device"), OSError(errno.EDQUOT, "Disk quota exceeded"),
     RuntimeError(TORCH_DISK_FULL)],
    ids=["ENOSPC", "EDQUOT", "torch-file-write-failed"],
)  # fmt: skip
def test_a_full_disk_keeps_the_previous_file_and_says_so(tmp_path, failure):
    path = atomic_write(tmp_path / "f.bin", lambda file: file.write(b"old"))

    def fail_midway(file):
        file.write(b"half of the new")
        raise failure

    with pytest.raises(DiskFullError) as caught:
        atomic_write(path, fail_midway)
    if failure.args[0] == errno.EDQUOT:
        assert "disk quota is used up" in str(caught.value) and caught.value.errno == errno.EDQUOT
    else:
        assert_disk_full(caught, path, kept=True)
    assert caught.value.__cause__ is failure and caught.value.path == path
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_a_full_disk_at_fsync_leaves_no_file(tmp_path, monkeypatch):
    def fsync_fails(fd):
        raise OSError(errno.ENOSPC, "No space left on device")  # delayed allocation: the error comes at fsync

    monkeypatch.setattr(course_lib.atomic.os, "fsync", fsync_fails)
    with pytest.raises(DiskFullError) as caught:
        atomic_write(tmp_path / "new.bin", lambda file: file.write(b"data"))
    assert_disk_full(caught, tmp_path / "new.bin", kept=False)
    assert list(tmp_path.iterdir()) == []


def test_save_checkpoint_and_save_weights_on_a_full_disk(tmp_path, monkeypatch):
    model, optimizer, scheduler = trained_parts()
    checkpoint = save_checkpoint(tmp_path / "a.pt", model, optimizer, scheduler, step=1)
    weights = save_weights(tmp_path / "w.safetensors", model)
    before = weights.read_bytes()
    monkeypatch.setattr(course_lib.atomic.os, "fdopen", lambda fd, mode: FullDisk(fd, "wb"))
    with pytest.raises(DiskFullError) as caught:  # torch.save turns the ENOSPC into "unexpected pos ..."
        save_checkpoint(checkpoint, model, optimizer, scheduler, step=2)
    assert_disk_full(caught, checkpoint, kept=True)
    with pytest.raises(DiskFullError) as caught:
        save_weights(weights, model)
    assert_disk_full(caught, weights, kept=True)
    monkeypatch.undo()
    assert load_checkpoint(checkpoint, TinyNet())["step"] == 1 and weights.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt", "w.safetensors"]


def test_other_failures_are_not_called_a_full_disk_and_leave_no_temporary_file(tmp_path):
    path = atomic_write(tmp_path / "f.bin", lambda file: file.write(b"old"))
    for failure in (ValueError("a bug in write"), RuntimeError("[enforce fail at inline_container.cc:1] other")):

        def fail(file, failure=failure):
            file.write(b"x")
            raise failure

        with pytest.raises(type(failure)) as caught:
            atomic_write(path, fail)
        assert caught.value is failure
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["f.bin"]
    assert os.access(path, os.R_OK)


def test_weights_round_trip_with_metadata(tmp_path):
    model, _, _ = trained_parts()
    path = save_weights(tmp_path / "tiny.safetensors", model, {"steps": 500, "loss": 0.12, "note": "tiny preset"})
    fresh = TinyNet()
    assert load_weights(path, fresh) == {"steps": 500, "loss": 0.12, "note": "tiny preset"}
    for key, value in model.state_dict().items():
        assert torch.equal(value, fresh.state_dict()[key])


def test_tied_weights_can_be_saved(tmp_path):
    model = TinyNet(TinyConfig(hidden=4))
    model.decoder.weight = model.encoder.weight  # (4, 4): tied
    load_weights(save_weights(tmp_path / "tied.safetensors", model), model)


def test_weights_of_another_model_are_a_clear_error(tmp_path):
    path = save_weights(tmp_path / "w.safetensors", TinyNet(TinyConfig(hidden=16)))
    with pytest.raises(CheckpointError, match="config.hidden: saved 16, this model 8"):
        load_weights(path, TinyNet())
    other = OtherNet()
    path = save_weights(tmp_path / "other.safetensors", other)
    with pytest.raises(CheckpointError, match="model class: saved OtherNet"):
        load_weights(path, TinyNet())
    model = TinyNet()
    load_weights(path, model, strict=False)  # the encoder fits; the rest is left as it was
    assert torch.equal(model.encoder.weight, other.encoder.weight)


def test_cut_short_weights_are_a_clear_error(tmp_path):
    path = save_weights(tmp_path / "w.safetensors", TinyNet())
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="cut short or corrupt"):
        load_weights(path, TinyNet())
    with pytest.raises(CheckpointError, match="No weights file"):
        load_weights(tmp_path / "missing.safetensors", TinyNet())
