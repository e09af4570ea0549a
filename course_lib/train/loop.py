"""The one training loop every model in the course uses: ``Trainer(model, loss_fn, config).fit(data)``.

Each step: move the batch to the device, compute ``loss_fn(model, batch)``, back-propagate, clip the
gradient norm, take an optimizer step and a scheduler step. Around that sit the habits of a real run:

- **No host-device sync per step.** ``loss.item()`` makes the CPU wait until the GPU has finished all
  queued work, which stalls the pipeline every step. The loop adds the detached losses up *on the
  device* and reads them back once every ``log_every`` steps (one ``.tolist()``), so the history holds
  plain floats: the mean of each logged term over the last window.
- **Mixed precision (AMP), CUDA only.** Inside ``torch.autocast`` matrix products run in 16-bit floats,
  roughly twice as fast and half the memory. bfloat16 keeps float32's exponent range, so it needs no
  care; float16 (older GPUs) can underflow small gradients to zero, so a ``GradScaler`` multiplies the
  loss before ``backward`` and divides the gradients back before the step. CPU and MPS run in float32.
- **Checkpoints and exact resume.** Every ``checkpoint_every`` steps, and when ``fit`` returns, the
  trainer writes model, optimizer, scheduler, step, history, RNG states and the position in the data
  (:mod:`course_lib.train.checkpoint`). ``fit(data, resume=True)`` continues from there and ends with
  the same weights, bit for bit on one machine, as a run that was never interrupted.
- **Stopping cleanly.** During ``fit`` a first Ctrl-C (SIGINT, or a SIGTERM from a scheduler) lets the
  current step finish, writes a checkpoint and raises :class:`TrainingInterrupted`; a second Ctrl-C
  stops at once. ``fit(resume=True)`` then continues bit for bit.
- **State outside the model.** A ``loss_fn`` with ``state_dict()`` / ``load_state_dict()`` (a GAN
  loss holding its discriminator and that optimizer, an EMA of the weights) is checkpointed with the
  run, and so is the generator of a :class:`course_lib.data.batches.GeneratorBatches` data function.
- **Several GPUs.** Under ``torchrun`` the model is wrapped in DistributedDataParallel and each process
  trains on its slice of every batch (:mod:`course_lib.train.distributed`); nothing else changes.
- **torch.compile** (``TrainConfig.compile``): the forward and backward passes are compiled into fused
  kernels on the first step; if compilation fails (no compiler, an unsupported operation) the loop
  says so and goes on in eager mode.

Notebooks: every notebook that trains a model, from the VQ-VAE to latent diffusion.
"""

from __future__ import annotations

import dataclasses
import itertools
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from tqdm.auto import tqdm

from course_lib.config import ScaledConfig, get_device, seed_everything
from course_lib.errors import CheckpointError, ConfigError
from course_lib.train.checkpoint import load_checkpoint, read_checkpoint, rng_state, save_checkpoint, set_rng_state
from course_lib.train.distributed import (
    average_over_processes,
    init_distributed,
    shard_batch,
    uses_distributed_sampler,
    wrap_model,
)


@dataclasses.dataclass
class TrainConfig(ScaledConfig):
    """How long and how to train. Defaults are the ``tiny`` preset; ``TrainConfig.full()`` trains longer.

    ``grad_clip=None`` turns clipping off; ``checkpoint_path=None`` writes no checkpoints; ``seed=None``
    leaves the random generators as they are when training starts from step 0. ``compile=True``
    runs the model through ``torch.compile`` (a backend name such as ``"inductor"`` or ``"eager"``
    picks the backend), falling back to eager mode if compilation fails. ``resume=True`` makes
    ``fit`` continue from ``checkpoint_path`` when a checkpoint is there; ``run_identity`` (plain data:
    what defines the run, e.g. a command's arguments) is stored in every checkpoint, and resuming from
    a checkpoint with another identity is refused with what differs.

    Notebooks: notebooks/02_vq_vae.ipynb, 03_hierarchical_vqvae.ipynb, 07_ddpm.ipynb, 08_latent_diffusion.ipynb,
    09_controlnet.ipynb, 10_fast_sampling.ipynb
    """

    steps: int = 500
    lr: float = 1e-3
    weight_decay: float = 0.01
    grad_clip: float | None = 1.0
    log_every: int = 10
    checkpoint_every: int = 100
    checkpoint_path: str | Path | None = None
    amp: bool = True
    progress: bool = True
    seed: int | None = 0
    compile: bool | str = False
    resume: bool = False
    run_identity: dict[str, Any] | None = None
    full_overrides: ClassVar[dict] = {"steps": 20_000, "log_every": 50, "checkpoint_every": 1_000}

    def __post_init__(self) -> None:
        for name in ("steps", "log_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"TrainConfig.{name} must be at least 1, got {getattr(self, name)}.")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ConfigError(f"TrainConfig.grad_clip must be positive or None (no clipping), got {self.grad_clip}.")


class TrainHistory(list):
    """The logged entries, one dict per ``log_every`` steps: ``{"step": 10, "loss": 0.52, "lr": 1e-3, ...}``.

    Besides ``loss`` and ``lr`` it holds every other term ``loss_fn`` returned, and ``grad_norm`` (the
    norm before clipping) when clipping is on.
    """

    def as_arrays(self) -> dict[str, np.ndarray]:
        """One array per key, for plotting (NaN where an entry lacks the key)."""
        keys = dict.fromkeys(key for entry in self for key in entry)
        return {
            key: np.array([entry.get(key, np.nan) for entry in self], dtype=np.int64 if key == "step" else float)
            for key in keys
        }


class TrainingInterrupted(KeyboardInterrupt):
    """Raised by :meth:`Trainer.fit` after a Ctrl-C: the step that finished last, and the checkpoint written (or None)."""

    def __init__(self, step: int, checkpoint: Path | None) -> None:
        super().__init__(f"stopped at step {step}")
        self.step, self.checkpoint = step, checkpoint


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Move the tensors in ``batch`` (nested in dicts, lists, tuples, dataclasses) to ``device``.

    Copies from pinned memory (``DataLoader(pin_memory=True)``) to a GPU are asynchronous, so the next
    batch travels while the GPU still works on the last one.
    """
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=batch.is_pinned())
    if isinstance(batch, Mapping):
        return {key: move_to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a namedtuple
        return type(batch)(*(move_to_device(value, device) for value in batch))
    if isinstance(batch, list | tuple):
        return type(batch)(move_to_device(value, device) for value in batch)
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        fields = [field.name for field in dataclasses.fields(batch) if field.init]
        return dataclasses.replace(batch, **{name: move_to_device(getattr(batch, name), device) for name in fields})
    return batch


def amp_dtype(device: torch.device, enabled: bool = True) -> torch.dtype | None:
    """The autocast dtype: bfloat16 on CUDA GPUs that have it, float16 on older ones, None elsewhere."""
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _loss_terms(output: Any, device: torch.device) -> dict[str, torch.Tensor]:
    if isinstance(output, torch.Tensor):
        output = {"loss": output}
    if not isinstance(output, Mapping) or "loss" not in output:
        raise ConfigError(
            f"loss_fn must return a scalar tensor or a dict with a 'loss' key, got {type(output).__name__}."
        )
    terms = {name: torch.as_tensor(value, device=device) for name, value in output.items()}
    for name, value in terms.items():
        if value.ndim != 0:
            raise ConfigError(f"loss_fn's {name!r} has shape {tuple(value.shape)}; reduce it to a scalar (.mean()).")
    return terms


def _data_generators(data: Any) -> list[torch.Generator]:
    """The torch.Generator objects a DataLoader shuffles with (if it was given one)."""
    found: list[torch.Generator] = []
    for owner in (data, getattr(data, "sampler", None)):
        generator = getattr(owner, "generator", None)
        if isinstance(generator, torch.Generator) and all(generator is not g for g in found):
            found.append(generator)
    return found


class Trainer:
    """Trains ``model`` by minimising ``loss_fn(model, batch)``; see the module docstring for the loop.

    Args:
        loss_fn: ``(model, batch) -> loss``: a scalar tensor, or a dict with ``"loss"`` and other scalar
            terms to log (e.g. a VQ-VAE's reconstruction and commitment losses).
        optimizer: default ``AdamW(lr, weight_decay)`` from the config.
        scheduler: optional learning-rate scheduler, stepped after every optimizer step.
        device: default :func:`course_lib.config.get_device` (cuda → mps → cpu).

    Notebooks: notebooks/02_vq_vae.ipynb, 03_hierarchical_vqvae.ipynb, 07_ddpm.ipynb, 08_latent_diffusion.ipynb,
    09_controlnet.ipynb, 10_fast_sampling.ipynb
    """

    def __init__(
        self,
        model: torch.nn.Module,
        loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor | Mapping[str, torch.Tensor]],
        config: TrainConfig | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler: Any | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        self.config = config or TrainConfig()
        self.context = init_distributed()  # joins torchrun's process group; a no-op in a plain run
        self.device = get_device(device)
        self.model = model.to(self.device)
        self._forward_model = self._wrap(compiled=bool(self.config.compile))  # what loss_fn is given
        self.loss_fn = loss_fn
        self.optimizer = optimizer or torch.optim.AdamW(
            self.model.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay
        )
        self.scheduler = scheduler
        self.amp_dtype = amp_dtype(self.device, self.config.amp)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.step = 0
        self.history = TrainHistory()
        self._window: dict[str, torch.Tensor] = {}  # per-term sums on the device since the last log
        self._window_steps = 0
        self._position: dict[str, Any] = {"epoch": 0, "batch": 0, "epoch_start_rng": None}
        self._generators: list[torch.Generator] = []

    def fit(
        self, data: Iterable | Callable[[int], Any], resume: bool | None = None, until_step: int | None = None
    ) -> TrainHistory:
        """Train until ``config.steps`` (or ``until_step``) and return the history.

        Args:
            data: an iterable of batches (a DataLoader, re-iterated each epoch) or a function
                ``step -> batch``. Batches may be tensors or dicts/lists/tuples/dataclasses of them.
                On resume, the batches of the current epoch that were already used are read again
                and dropped; for an endless stream that is slow, so pass a function instead.
            resume: continue from ``config.checkpoint_path`` (default ``config.resume``). If no file is
                there yet, training starts from scratch with a message (not an error), so one notebook
                cell works for both cases.
            until_step: stop after this step (≤ ``config.steps``); calling ``fit`` again continues.

        Raises:
            TrainingInterrupted: after a Ctrl-C, once the checkpoint of the last finished step is written.
        """
        self._generators = _data_generators(data)
        last = self.config.steps if until_step is None else until_step
        if last > self.config.steps:
            raise ConfigError(f"until_step={last} is past config.steps={self.config.steps}; raise config.steps.")
        resume = self.config.resume if resume is None else resume
        resumed = resume and self._resume(last)
        for generator, state in zip(self._generators, self._position.pop("generator_states", []), strict=False):
            generator.set_state(state)  # a DataLoader's own generator, as it was at the checkpoint
        if not resumed and self.step == 0 and self.config.seed is not None:
            seed_everything(self.config.seed)
        batches = self._batches(data)
        self.model.train()
        shard = self.context.enabled and not uses_distributed_sampler(data)
        show = self.config.progress and self.context.is_main
        with (
            _StopRequests() as stop,
            tqdm(total=last, initial=self.step, disable=not show, desc="training", unit="step") as bar,
        ):
            while self.step < last:
                batch = next(batches)
                terms = self._train_step(
                    move_to_device(shard_batch(batch, self.context) if shard else batch, self.device)
                )
                self.step += 1
                for name, value in terms.items():
                    value = value.detach().float()
                    self._window[name] = self._window[name] + value if name in self._window else value
                self._window_steps += 1
                logged = self.step % self.config.log_every == 0 or self.step == self.config.steps
                if logged:
                    bar.set_postfix(loss=f"{self._log()['loss']:.4g}")
                saved = None
                if self.config.checkpoint_path is not None and (
                    self.step % self.config.checkpoint_every == 0 or self.step == last
                ):
                    saved = self.save()
                bar.update(1)
                if self._stop_agreed(stop, logged):
                    if saved is None and self.config.checkpoint_path is not None:
                        saved = self.save()
                    raise TrainingInterrupted(self.step, saved)
        return self.history

    def _stop_agreed(self, stop: _StopRequests, logged: bool) -> bool:
        """Whether to stop after this step: a Ctrl-C came; under torchrun, on any process, checked when logging."""
        if not self.context.enabled:
            return stop.requested
        if not logged:  # an all-reduce per step would cost a synchronisation; the log step has one anyway
            return False
        flag = torch.tensor([float(stop.requested)], device=self.device)
        return bool(average_over_processes(flag, self.context).item() > 0)

    def _wrap(self, compiled: bool) -> torch.nn.Module:
        """The model as the loss function sees it: in DDP under torchrun, compiled if asked."""
        model = wrap_model(self.model, self.context)
        if not compiled:
            return model
        backend = self.config.compile if isinstance(self.config.compile, str) else "inductor"
        return torch.compile(model, backend=backend)

    def _forward_backward(self, batch: Any) -> dict[str, torch.Tensor]:
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            terms = _loss_terms(self.loss_fn(self._forward_model, batch), self.device)
        self.scaler.scale(terms["loss"]).backward()  # scale() is a no-op unless float16 AMP is on
        return terms

    def _train_step(self, batch: Any) -> dict[str, torch.Tensor]:
        try:
            terms = self._forward_backward(batch)
        except Exception as error:  # torch.compile compiles in the first step: fall back to eager mode once
            if not self.config.compile:
                raise
            first_line = (str(error).strip().splitlines() or [""])[0][:200]
            print(f"torch.compile failed ({type(error).__name__}: {first_line}); training in eager mode.")
            self.config = dataclasses.replace(self.config, compile=False)
            self._forward_model = self._wrap(compiled=False)
            terms = self._forward_backward(batch)
        if self.config.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
            terms["grad_norm"] = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.scaler.step(self.optimizer)  # skips the step if float16 gradients overflowed
        self.scaler.update()
        if self.scheduler is not None:
            self.scheduler.step()
        return terms

    def _log(self) -> dict[str, float | int]:
        """Average the window's sums and read them back: the only host-device sync of the loop."""
        names = list(self._window)
        means = torch.stack([self._window[name] for name in names]) / self._window_steps
        means = average_over_processes(means, self.context).tolist()  # the same entry on every process
        entry = {
            "step": self.step,
            **dict(zip(names, means, strict=True)),
            "lr": float(self.optimizer.param_groups[0]["lr"]),
        }
        self.history.append(entry)
        self._window, self._window_steps = {}, 0
        return entry

    def _batches(self, data: Iterable | Callable[[int], Any]) -> Iterator[Any]:
        """Yield batches forever, re-iterating ``data`` each epoch and recording where we are in it."""
        if not isinstance(data, Iterable):
            if not callable(data):
                raise ConfigError(
                    f"data must be an iterable of batches or a function step -> batch, got {type(data).__name__}; "
                    "wrap a Dataset in torch.utils.data.DataLoader(dataset, batch_size=..., shuffle=True)."
                )
            while True:
                yield data(self.step)
        iterator = self._reposition(data) if self._position["batch"] else None
        while True:
            if iterator is None:
                self._position.update(epoch_start_rng=rng_state(self._generators), batch=0)
                if uses_distributed_sampler(data):
                    data.sampler.set_epoch(self._position["epoch"])  # a new shuffle, the same on every process
                iterator = iter(data)
            try:
                batch = next(iterator)
            except StopIteration:
                if self._position["batch"] == 0:
                    raise ConfigError("data yielded no batches: check the dataset is not empty.") from None
                self._position["epoch"] += 1
                iterator = None
                continue
            self._position["batch"] += 1
            yield batch

    def _reposition(self, data: Iterable) -> Iterator[Any]:
        """Rebuild the current epoch's iterator and skip the batches this run has already used.

        A shuffling DataLoader draws its order from the RNG when the epoch starts; with the RNG state
        from that moment restored, iterating again gives the same order, and skipping batch by batch
        lands on the next unseen one. The RNG state of *now* is put back afterwards.
        """
        now = rng_state(self._generators)
        set_rng_state(self._position["epoch_start_rng"], self._generators)
        if uses_distributed_sampler(data):
            data.sampler.set_epoch(self._position["epoch"])
        iterator = iter(data)
        skipped = sum(1 for _ in itertools.islice(iterator, self._position["batch"]))
        if skipped < self._position["batch"]:
            raise ConfigError(
                f"data has {skipped} batches per epoch but the checkpoint was at batch {self._position['batch']}: "
                "resume with the same data and batch size."
            )
        set_rng_state(now, self._generators)
        return iterator

    def save(self, path: str | Path | None = None) -> Path:
        """Write a checkpoint of the whole run to ``path`` (default ``config.checkpoint_path``).

        Under torchrun only rank 0 writes (every process holds the same weights).
        """
        path = path or self.config.checkpoint_path
        if path is None:
            raise ConfigError("No checkpoint path: pass one, or set TrainConfig(checkpoint_path=...).")
        if not self.context.is_main:
            return Path(path)
        extra = {
            "scaler": self.scaler.state_dict(),
            "window": dict(self._window),
            "window_steps": self._window_steps,
            "position": {**self._position, "generator_states": [g.get_state() for g in self._generators]},
            "run_identity": self.config.run_identity,
            "loss_state": self.loss_fn.state_dict() if hasattr(self.loss_fn, "state_dict") else None,
        }
        return save_checkpoint(
            path, self.model, self.optimizer, self.scheduler, step=self.step, history=self.history, extra=extra
        )

    def load(self, path: str | Path | None = None, checkpoint: dict[str, Any] | None = None) -> None:
        """Restore the whole run, RNG states included, from a :meth:`save` checkpoint (``checkpoint``: already read)."""
        path = path or self.config.checkpoint_path
        if path is None:
            raise ConfigError("No checkpoint path: pass one, or set TrainConfig(checkpoint_path=...).")
        checkpoint = load_checkpoint(
            path, self.model, self.optimizer, self.scheduler, restore_rng=True, checkpoint=checkpoint
        )
        extra = checkpoint["extra"]
        self.step = checkpoint["step"]
        self.history = TrainHistory(checkpoint["history"])
        if extra["scaler"]:  # empty when saved without float16 AMP
            self.scaler.load_state_dict(extra["scaler"])
        self._window = {name: value.to(self.device) for name, value in extra["window"].items()}
        self._window_steps = extra["window_steps"]
        self._position = dict(extra["position"])  # its generator states are applied by fit()
        if extra.get("loss_state") is not None and hasattr(self.loss_fn, "load_state_dict"):
            self.loss_fn.load_state_dict(extra["loss_state"])

    def _resume(self, last: int) -> bool:
        path = self.config.checkpoint_path
        if path is None:
            raise ConfigError("resume=True needs TrainConfig(checkpoint_path=...) to know where to look.")
        if not Path(path).exists():
            print(f"No checkpoint at {path} yet: training from scratch.", flush=True)
            return False
        checkpoint = read_checkpoint(path)  # read once: its run identity first, then the states
        self._check_run_identity(path, checkpoint["extra"].get("run_identity"))
        self.load(path, checkpoint)
        print(f"resuming from step {self.step} of {last} ({path})", flush=True)
        return True

    def _check_run_identity(self, path: str | Path, saved: dict[str, Any] | None) -> None:
        """Refuse a checkpoint written by a run with another ``run_identity`` (other arguments, another stage)."""
        mine = self.config.run_identity
        if mine is None or saved == mine:
            return
        saved = saved or {}
        differences = [
            f"{key}: {saved.get(key, '<absent>')!r} in the checkpoint, {mine.get(key, '<absent>')!r} now"
            for key in sorted(set(saved) | set(mine))
            if saved.get(key, "<absent>") != mine.get(key, "<absent>")
        ]
        listing = "\n".join(f"  - {d}" for d in differences)
        raise CheckpointError(
            f"{path} was written by another run:\n{listing}\nFix: run with the arguments it was made with to "
            "resume it, or start over (--fresh on the command line, or delete the checkpoint)."
        )


class _StopRequests:
    """Within ``with``: the first SIGINT/SIGTERM sets ``requested`` (the step finishes); a second SIGINT stops at once.

    Only the main thread can own signal handlers; elsewhere (a worker thread) nothing is installed.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopRequests:
        if threading.current_thread() is threading.main_thread():
            for number in self.SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, number: int, frame: Any) -> None:
        if self.requested and number == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping after this step (Ctrl-C again to stop at once) ...", flush=True)

    def __exit__(self, *exc: Any) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
