"""The skeleton every training command of the course shares: its options, its run facts, resume and clean stops.

Each ``python -m course_lib.<chapter>.train…`` command is a :class:`TrainingCommand`: it declares only
its recipe's own options and its stages, and gets from here

- the shared options ``--scale --steps --batch-size --seed --threads --device --out --fresh
  --checkpoint-every --no-progress``, with numbers checked (``--steps 0`` or ``-5`` is refused, never
  read as "the recipe's default");
- a :class:`Run`: the scale, the device (the CPU at the tiny scale, the best one at the full scale),
  the CPU threads, the command line as typed, and the training checkpoint next to ``--out``
  (``OUT.ckpt``, or ``OUT.<phase>.ckpt`` for a stage trained in several phases);
- **resume**: the checkpoint is written atomically every ``--checkpoint-every`` steps and when the run
  stops; the same command run again continues from it (``resuming from step 164 of 600``) and ends
  with the weights an uninterrupted run gives, bit for bit; ``--fresh`` starts over, and a checkpoint
  made with other arguments is refused with what differs. The checkpoints are removed once the
  weights are written;
- the run facts every weights file carries (:meth:`Run.facts`: command, scale, device, threads,
  versions, wall and CPU time);
- :meth:`TrainingCommand.exit`: a course error is printed as its message alone (exit status 2), a
  Ctrl-C saves a checkpoint and prints ``stopped at step 184; run the same command to resume``
  (exit status 130), never a traceback.

Notebooks: none (the commands behind the shipped checkpoints; the README lists each command).
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import torch

from course_lib.config import add_device_argument, get_scale, training_device
from course_lib.errors import ConfigError, CourseError
from course_lib.train.loop import TrainingInterrupted

CHECKPOINT_SUFFIX = ".ckpt"
# Options that change how a run is watched or where it is written, not what it computes:
# they may differ between a run and its resumption.
NOT_IN_IDENTITY = ("out", "fresh", "checkpoint_every", "no_progress")


def positive_int(text: str) -> int:
    """An ``argparse`` type: a whole number ≥ 1 (``--steps 0`` must not mean "the default")."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not allowed: give a number of at least 1")
    return value


def positive_float(text: str) -> float:
    """An ``argparse`` type: a finite number > 0 (a learning rate)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{value} is not allowed: give a number above 0")
    return value


@dataclasses.dataclass
class Run:
    """One invocation of a training command: its parsed arguments and what follows from them."""

    module: str
    args: argparse.Namespace
    scale: str
    device: torch.device
    command: str  # the command line as typed, recorded in the weights
    started: float = dataclasses.field(default_factory=time.perf_counter)
    cpu_started: float = dataclasses.field(default_factory=time.process_time)

    @property
    def out(self) -> Path:
        if self.args.out is None:
            raise ConfigError("Training needs --out: the weights file to write (its checkpoint goes next to it).")
        return self.args.out

    def identity(self, phase: str | None = None) -> dict[str, Any]:
        """What defines the run (its command, arguments and phase): a checkpoint of another run is refused."""
        arguments = {
            name: value if isinstance(value, (bool, int, float, type(None))) else str(value)
            for name, value in sorted(vars(self.args).items())
            if name not in NOT_IN_IDENTITY
        }
        return {"command": self.module, "scale": self.scale, "phase": phase, **arguments}

    def checkpoint_path(self, phase: str | None = None) -> Path:
        """The training checkpoint next to ``--out``: ``OUT.ckpt``, or ``OUT.<phase>.ckpt``."""
        return self.out.with_name(self.out.name + (f".{phase}" if phase else "") + CHECKPOINT_SUFFIX)

    def checkpoints(self) -> list[Path]:
        """Every training checkpoint of this ``--out`` that exists."""
        pattern = self.out.name + "*" + CHECKPOINT_SUFFIX
        return sorted(path for path in self.out.parent.glob(pattern) if path.is_file())

    def train_options(self, phase: str | None = None) -> dict[str, Any]:
        """:class:`course_lib.train.TrainConfig` fields that make a stage (or one phase of it) resumable."""
        return {
            "checkpoint_path": self.checkpoint_path(phase),
            "checkpoint_every": self.args.checkpoint_every,
            "resume": True,
            "run_identity": self.identity(phase),
            "progress": not self.args.no_progress,
        }

    def facts(self) -> dict[str, Any]:
        """The run facts every weights file of the course carries in its metadata."""
        return {
            "command": self.command,
            "scale": self.scale,
            "device": str(self.device),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "machine": platform.machine(),
            "train_seconds": round(time.perf_counter() - self.started, 1),
            "cpu_seconds": round(time.process_time() - self.cpu_started, 1),  # all threads of this process
        }

    def write(self, model: torch.nn.Module, metadata: dict[str, Any]) -> dict[str, Any]:
        """Save ``model``'s weights to ``--out`` with the run facts and ``metadata``, then :meth:`finish`.

        Returns the metadata written (the run facts first).
        """
        from course_lib.train.weights import save_weights

        metadata = {**self.facts(), **metadata}
        save_weights(self.out, model, metadata)
        self.finish()
        return metadata

    def finish(self) -> None:
        """After the weights are written: remove the training checkpoints (a rerun then trains again)."""
        for path in self.checkpoints():
            path.unlink()


class TrainingCommand:
    """A training command's parser with the shared options; :meth:`parse` gives the :class:`Run`.

    Args:
        module: the module run with ``python -m`` (e.g. ``"course_lib.codec.train"``).
        doc: the module's docstring: its first line is the description in ``--help``.
        out_required: ``False`` for a command that can also run without writing weights (then
            :meth:`parse` still refuses a training run without ``--out``, the place of its checkpoint).
    """

    def __init__(self, module: str, doc: str | None, out_required: bool = True) -> None:
        self.module = module
        self.parser = argparse.ArgumentParser(
            prog=f"python -m {module}",
            description=(doc or "").strip().split("\n\n")[0],
            epilog="Stopped or killed? Run the same command again: it resumes from OUT.ckpt (--fresh starts over).",
        )
        add = self.parser.add_argument
        add("--out", type=Path, required=out_required, help="the .safetensors file to write (its checkpoint: OUT.ckpt)")
        add("--scale", choices=("tiny", "full"), default=None, help="default: $COURSE_SCALE, else tiny")
        add("--steps", type=positive_int, help="training steps (default: the recipe's)")
        add("--batch-size", type=positive_int, help="examples per step (default: the recipe's)")
        add("--seed", type=int, help="the recipe's seed (default: the recipe's)")
        add("--threads", type=positive_int, default=1, help="torch threads on the CPU (default 1: the shipped files)")
        add_device_argument(self.parser)
        add("--fresh", action="store_true", help="start over, ignoring (and replacing) a checkpoint of an earlier run")
        add("--checkpoint-every", type=positive_int, default=100, help="steps between checkpoints (default 100)")
        add("--no-progress", action="store_true", help="no progress bar (for logs)")

    def add_argument(self, *names: str, **options: Any) -> argparse.Action:
        """Add one of the command's own options (``argparse`` arguments)."""
        return self.parser.add_argument(*names, **options)

    def parse(self, argv: list[str] | None = None) -> Run:
        """Parse ``argv`` (default ``sys.argv[1:]``); set the threads; remove old checkpoints under ``--fresh``."""
        argv = sys.argv[1:] if argv is None else list(argv)
        args = self.parser.parse_args(argv)
        if args.out is None:
            return Run(self.module, args, get_scale(args.scale), torch.device("cpu"), "")  # not a training run
        scale = get_scale(args.scale)
        device = training_device(args.device, args.scale)
        if device.type == "cpu":
            torch.set_num_threads(args.threads)
        run = Run(self.module, args, scale, device, f"python -m {self.module} " + shlex.join(argv))
        if args.out.is_dir():
            self.parser.error(f"--out {args.out} is a directory: give the .safetensors file to write")
        if args.fresh:
            run.finish()
        return run

    def exit(self, main: Callable[[list[str] | None], Any], argv: list[str] | None = None) -> NoReturn:
        """Run ``main(argv)`` as a command: exit 0, 2 with the message of a course error, 130 after a Ctrl-C."""
        sys.exit(run_as_command(main, argv))


def run_as_command(main: Callable[[list[str] | None], Any], argv: list[str] | None = None) -> int:
    """``main(argv)``'s exit status: 0; 2 for a :class:`CourseError` (its message alone); 130 for a Ctrl-C."""
    try:
        main(argv)
    except CourseError as error:
        print(error, file=sys.stderr)
        return 2
    except TrainingInterrupted as stop:
        saved = "; run the same command to resume" if stop.checkpoint is not None else ""
        print(f"stopped at step {stop.step}{saved}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("stopped; run the same command to resume (finished phases are kept)", file=sys.stderr)
        return 130
    return 0
