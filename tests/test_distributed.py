"""Data-parallel training: two gloo processes under torchrun train exactly like one process on the global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from course_lib.errors import ConfigError
from course_lib.train.distributed import DistributedContext, shard_batch, unwrap_model

WORKER = Path(__file__).with_name("ddp_worker.py")


def test_shard_batch_gives_each_process_its_contiguous_slice():
    batch = {"x": torch.arange(12).view(6, 2), "pair": (torch.arange(6), torch.tensor(3.0)), "name": "clip"}
    parts = [shard_batch(batch, DistributedContext(rank, 3, rank)) for rank in range(3)]
    assert torch.equal(torch.cat([p["x"] for p in parts]), batch["x"])
    assert parts[1]["pair"][0].tolist() == [2, 3] and parts[2]["pair"][1] == 3.0 and parts[0]["name"] == "clip"
    with pytest.raises(ConfigError, match="multiple of 4"):
        shard_batch(torch.zeros(6, 2), DistributedContext(0, 4, 0))


def test_unwrap_model_finds_the_module_inside_compile():
    model = torch.nn.Linear(2, 2)
    assert unwrap_model(torch.compile(model, backend="eager")) is model and unwrap_model(model) is model


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_on_the_global_batch(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COURSE_DEVICE": "cpu"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER)]
    result = subprocess.run([*command, str(tmp_path / "ddp")], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    result = subprocess.run(
        [sys.executable, str(WORKER), str(tmp_path / "single")], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    initial = _initial_weights()
    for name in ("function", "loader", "vq", "contrastive", "inner"):
        ddp = torch.load(tmp_path / "ddp" / f"{name}.pt", weights_only=True)
        single = torch.load(tmp_path / "single" / f"{name}.pt", weights_only=True)
        for key in single:
            # Trained (moved away from the start) and equal up to the order of float sums over the batch;
            # for the EMA codebook that needs the counts and sums of both halves of the batch.
            if single[key].is_floating_point():
                assert not torch.allclose(single[key], initial[name][key], atol=1e-3), (name, key)
            torch.testing.assert_close(ddp[key], single[key], rtol=1e-5, atol=1e-6, msg=f"{name} {key} differs")
    # The logged loss is the mean over both processes' halves: the single process's mean over the whole batch.
    ddp_history = json.loads((tmp_path / "ddp" / "history.json").read_text())
    single_history = json.loads((tmp_path / "single" / "history.json").read_text())
    assert [e["loss"] for e in ddp_history] == pytest.approx([e["loss"] for e in single_history], rel=1e-5)


def _initial_weights() -> dict[str, dict[str, torch.Tensor]]:
    sys.path.insert(0, str(WORKER.parent))
    try:
        from ddp_worker import InnerStep, TinyVQModel, make_embedding, make_model
    finally:
        sys.path.pop(0)
    plain = make_model().state_dict()
    return {
        "function": plain,
        "loader": plain,
        "vq": TinyVQModel().state_dict(),
        "contrastive": make_embedding().state_dict(),
        "inner": {**plain, **{f"critic.{k}": v for k, v in InnerStep().critic.state_dict().items()}},
    }
