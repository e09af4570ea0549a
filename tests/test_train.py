"""Tests of the training loop: exact resume, logging, clipping, batches on the device, AMP on CUDA."""

from __future__ import annotations

import dataclasses
import math
from collections import namedtuple

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from course_lib.config import seed_everything
from course_lib.errors import ConfigError
from course_lib.train import TrainConfig, Trainer, TrainHistory
from course_lib.train.loop import move_to_device


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_model() -> torch.nn.Module:
    # Dropout draws from the torch RNG, so exact resume also tests the restored RNG state.
    return torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Dropout(0.1), torch.nn.Linear(16, 1))


def make_dataset(n: int = 64) -> TensorDataset:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(n, 4, generator=generator)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.01 * torch.randn(n, 1, generator=generator)
    return TensorDataset(x, y)


def mse(model: torch.nn.Module, batch) -> torch.Tensor:
    x, y = batch
    return torch.nn.functional.mse_loss(model(x), y)


def run(tmp_path, seed_for_init: int, own_generator: bool, resume=False, until_step=None, crash_at=None) -> Trainer:
    """Build everything afresh, as a new Python process would, and train (``crash_at``: die at that step)."""
    seed_everything(seed_for_init, deterministic=True)
    model = make_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.7)
    generator = torch.Generator().manual_seed(7) if own_generator else None
    loader = DataLoader(make_dataset(), batch_size=8, shuffle=True, generator=generator)  # 8 batches an epoch
    config = TrainConfig(steps=30, log_every=4, checkpoint_every=7, checkpoint_path=tmp_path / "run.pt", progress=False)
    calls = []

    def loss_fn(model, batch):
        calls.append(1)
        if len(calls) == crash_at:
            raise KeyboardInterrupt  # the student stops the kernel
        return mse(model, batch)

    trainer = Trainer(model, loss_fn, config, optimizer=optimizer, scheduler=scheduler, device="cpu")
    trainer.fit(loader, resume=resume, until_step=until_step)
    return trainer


@pytest.mark.parametrize(
    "own_generator, stop",
    [(False, "until_step"), (True, "until_step"), (False, "crash")],
    ids=["global-rng-shuffle", "loader-generator", "crash-after-periodic-checkpoint"],
)
def test_interrupted_and_resumed_run_matches_uninterrupted_run(tmp_path, own_generator, stop):
    full = run(tmp_path / "full", 0, own_generator)
    if stop == "until_step":
        # Stop at step 13: mid-epoch (batch 5 of 8), mid log window, after the checkpoint at step 7.
        assert run(tmp_path / "split", 0, own_generator, until_step=13).step == 13
    else:
        # Die during step 11: the last checkpoint is the periodic one at step 7 (batch 7 of 8).
        with pytest.raises(KeyboardInterrupt):
            run(tmp_path / "split", 0, own_generator, crash_at=11)
    resumed = run(tmp_path / "split", 123, own_generator, resume=True)

    assert resumed.step == full.step == 30
    for (name, p_full), p_resumed in zip(full.model.named_parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(p_full, p_resumed), name
    state_full, state_resumed = full.optimizer.state_dict(), resumed.optimizer.state_dict()
    assert state_full["param_groups"] == state_resumed["param_groups"]
    for index, per_param in state_full["state"].items():
        for key, value in per_param.items():
            assert torch.equal(value, state_resumed["state"][index][key]), (index, key)
    assert full.scheduler.state_dict() == resumed.scheduler.state_dict()
    assert resumed.history == full.history  # continuous: the log window open at step 13 carried over


def test_resume_without_checkpoint_starts_from_scratch(tmp_path, capsys):
    trainer = run(tmp_path, 0, own_generator=False, resume=True, until_step=5)
    assert "No checkpoint" in capsys.readouterr().out
    assert trainer.step == 5 and (tmp_path / "run.pt").is_file()


def test_resume_needs_a_checkpoint_path():
    trainer = Trainer(make_model(), mse, TrainConfig(steps=2, progress=False), device="cpu")
    with pytest.raises(ConfigError, match="checkpoint_path"):
        trainer.fit([make_dataset()[:8]], resume=True)


def test_loss_falls_on_a_linear_regression():
    seed_everything(0)
    model = torch.nn.Linear(4, 1)
    loader = DataLoader(make_dataset(), batch_size=16, shuffle=True)
    config = TrainConfig(steps=150, lr=5e-2, log_every=10, progress=False)
    history = Trainer(model, mse, config, device="cpu").fit(loader)
    assert history[-1]["loss"] < 0.01 * history[0]["loss"]  # you should see about 10 → 1e-4


def test_history_holds_the_logged_terms_as_floats():
    def terms(model, batch):
        x, y = batch
        error = model(x) - y
        return {"loss": error.pow(2).mean(), "l1": error.abs().mean(), "constant": 2.0}

    config = TrainConfig(steps=12, log_every=5, grad_clip=1.0, progress=False)
    trainer = Trainer(torch.nn.Linear(4, 1), terms, config, device="cpu")
    history = trainer.fit(DataLoader(make_dataset(), batch_size=16))
    assert history is trainer.history and isinstance(history, TrainHistory)
    assert [entry["step"] for entry in history] == [5, 10, 12]  # every log_every steps, and the last one
    assert set(history[0]) == {"step", "loss", "l1", "constant", "grad_norm", "lr"}
    assert all(isinstance(value, float) for entry in history for key, value in entry.items() if key != "step")
    arrays = history.as_arrays()
    assert arrays["step"].tolist() == [5, 10, 12] and arrays["loss"].shape == (3,)
    assert arrays["constant"].tolist() == [2.0, 2.0, 2.0]


def test_grad_clip_limits_the_gradient_norm():
    def huge_loss(model, batch):
        return 1e4 * mse(model, batch)

    data = [make_dataset()[:16]]
    config = TrainConfig(steps=1, lr=1e-6, grad_clip=0.5, log_every=1, progress=False)
    trainer = Trainer(torch.nn.Linear(4, 1), huge_loss, config, device="cpu")
    history = trainer.fit(data)
    assert history[-1]["grad_norm"] > 100  # the norm before clipping ...
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in trainer.model.parameters()]))
    assert norm <= 0.5 * (1 + 1e-5)  # ... and the gradient the optimizer used


def test_callable_data_gets_the_step():
    seen = []

    def batch_for(step):
        seen.append(step)
        return make_dataset()[:8]

    Trainer(torch.nn.Linear(4, 1), mse, TrainConfig(steps=3, progress=True), device="cpu").fit(batch_for)
    assert seen == [0, 1, 2]


def test_bad_data_and_bad_loss_are_clear_errors():
    trainer = Trainer(torch.nn.Linear(4, 1), mse, TrainConfig(steps=2, progress=False), device="cpu")
    with pytest.raises(ConfigError, match="DataLoader"):
        trainer.fit(make_dataset())  # a Dataset is neither iterable of batches nor callable
    with pytest.raises(ConfigError, match="no batches"):
        trainer.fit([])
    vector_loss = Trainer(torch.nn.Linear(4, 1), lambda m, b: m(b[0]) - b[1], TrainConfig(progress=False), device="cpu")
    with pytest.raises(ConfigError, match="scalar"):
        vector_loss.fit([make_dataset()[:8]])
    with pytest.raises(ConfigError, match="grad_clip"):
        TrainConfig(grad_clip=0)


def test_move_to_device_keeps_the_batch_structure():
    Pair = namedtuple("Pair", "audio label")

    @dataclasses.dataclass
    class Clip:
        audio: torch.Tensor
        name: str

    batch = {"pair": Pair(torch.zeros(2), 3), "clips": [Clip(torch.ones(1), "a")], "meta": ("x", torch.ones(1))}
    moved = move_to_device(batch, torch.device("cpu"))
    assert isinstance(moved["pair"], Pair) and moved["pair"].label == 3
    assert isinstance(moved["clips"][0], Clip) and moved["clips"][0].name == "a"
    assert moved["meta"][0] == "x" and torch.equal(moved["meta"][1], torch.ones(1))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine; run `make gpu-check` on one")
def test_cuda_amp_trains_and_resumes(tmp_path):
    dtypes = set()

    def loss_fn(model, batch):
        x, y = batch
        prediction = model(x)
        dtypes.add(prediction.dtype)
        return torch.nn.functional.mse_loss(prediction.float(), y)

    def trainer(steps):
        seed_everything(0)
        model = torch.nn.Sequential(torch.nn.Linear(4, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
        config = TrainConfig(steps=steps, lr=1e-2, log_every=10, checkpoint_path=tmp_path / "amp.pt", progress=False)
        return Trainer(model, loss_fn, config, device="cuda")

    loader = DataLoader(make_dataset(), batch_size=16, shuffle=True)
    first = trainer(100)
    history = first.fit(loader, until_step=60)
    assert dtypes <= {torch.bfloat16, torch.float16} and first.amp_dtype in dtypes
    assert next(first.model.parameters()).device.type == "cuda"
    resumed = trainer(100)
    history = resumed.fit(loader, resume=True)
    assert resumed.step == 100 and history[-1]["loss"] < 0.1 * history[0]["loss"]


def test_warmup_cosine_schedule_matches_its_formula():
    from course_lib.train import warmup_cosine_schedule

    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=2.0)
    scheduler = warmup_cosine_schedule(optimizer, steps=12, warmup_steps=4, final_fraction=0.1)
    rates = []
    for _ in range(14):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    # warm-up: (s + 1) / 4 of the peak; then 0.1 + 0.9 * (1 + cos(pi p)) / 2 with p = (s - 4) / 8, held at 0.1
    expected = [2.0 * (s + 1) / 4 for s in range(4)]
    expected += [2.0 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, (s - 4) / 8)))) for s in range(4, 14)]
    assert rates == pytest.approx(expected, rel=1e-12)
    assert rates[4] == pytest.approx(2.0) and rates[-1] == pytest.approx(0.2)


def _train_linear(compile_option, steps: int = 5) -> torch.nn.Module:
    seed_everything(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    x, y = make_dataset().tensors

    def batch_at(step: int):
        return x[step * 8 : step * 8 + 8], y[step * 8 : step * 8 + 8]

    config = TrainConfig(steps=steps, log_every=5, progress=False, compile=compile_option)
    Trainer(model, mse, config, device="cpu").fit(batch_at)
    return model


def test_compiled_training_matches_eager_training():
    # dynamo traces the model for real; the "eager" backend runs the captured graph without code generation.
    eager, compiled = _train_linear(False), _train_linear("eager")
    for a, b in zip(eager.parameters(), compiled.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_failed_compilation_falls_back_to_eager_mode(monkeypatch, capsys):
    class Uncompilable(torch.nn.Module):
        def forward(self, *args, **kwargs):
            raise RuntimeError("InductorError: no working C++ compiler found")

    monkeypatch.setattr(torch, "compile", lambda model, backend: Uncompilable())
    fallen_back = _train_linear(True)
    assert "torch.compile failed (RuntimeError: InductorError" in capsys.readouterr().out
    for a, b in zip(_train_linear(False).parameters(), fallen_back.parameters(), strict=True):
        assert torch.equal(a, b)
