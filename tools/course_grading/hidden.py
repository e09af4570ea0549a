"""Hidden checks, run in the grader's process against plain values taken out of the student's kernel.

In an instructor's source notebook a test cell has a public part (the self-check students see, run
in their kernel) and, between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``, hidden
checks. nbgrader would run both inside the student's kernel, where a submission can replace
``torch.allclose`` or strip ``assert`` statements. Here the hidden part never enters the kernel:
the grader runs it in its own process, where the name ``student`` reaches into the kernel::

    ### BEGIN HIDDEN TESTS
    x = torch.randn(300, 8, generator=torch.Generator().manual_seed(1))
    got = student.assign_codes(x, x[:16])          # runs in the kernel, returns plain data
    want = nearest_centers(x, x[:16])[0]           # the library's reference, in the grader
    assert torch.equal(torch.as_tensor(got), want), "assign_codes disagrees with the nearest-centre labels"
    ### END HIDDEN TESTS

``student.NAME(*args, **kwargs)`` calls the notebook's function ``NAME`` (arguments and result
cross as plain values, :mod:`course_grading.values`), ``student.evaluate(code)`` runs instructor
code in the kernel and returns its last expression's value. A test cell's points are earned when
its hidden part finishes without an exception; the assertion's message (never the code) is what the
student reads in the feedback.
"""

from __future__ import annotations

import math
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

BEGIN = "BEGIN HIDDEN TESTS"
END = "END HIDDEN TESTS"


class CheckFailure(Exception):
    """A hidden check could not pass for a reason on the student's side; ``str()`` is the feedback."""


class StudentCodeError(CheckFailure):
    """The student's function raised, is missing, or returned something that cannot be read."""


class StudentTimeout(CheckFailure):
    """The student's function did not return in time."""


class KernelUnavailable(CheckFailure):
    """The kernel is gone (died, killed, or the notebook's time is up)."""


def split_hidden(source: str) -> tuple[str, str]:
    """``(public, hidden)`` parts of a test cell's source; hidden regions joined in order, dedented."""
    public, hidden, inside = [], [], False
    for line in source.split("\n"):
        if BEGIN in line:
            if inside:
                raise ValueError(f"nested '{BEGIN}' in a test cell")
            inside = True
        elif END in line:
            if not inside:
                raise ValueError(f"'{END}' without '{BEGIN}' in a test cell")
            inside = False
        elif inside:
            hidden.append(line)
        else:
            public.append(line)
    if inside:
        raise ValueError(f"'{BEGIN}' without '{END}' in a test cell")
    return "\n".join(public).strip("\n"), textwrap.dedent("\n".join(hidden)).strip("\n")


class Student:
    """The student's kernel as the hidden checks see it; every call is bounded in time.

    Args:
        kernel: a started :class:`course_grading.kernel.SandboxedKernel`.
        call_timeout: seconds one call may take.
        seconds_left: the notebook's remaining time (a call never outlasts it).
    """

    _own = ("call", "evaluate", "has")

    def __init__(self, kernel: Any, call_timeout: float, seconds_left: Callable[[], float]) -> None:
        self._kernel = kernel
        self._call_timeout = call_timeout
        self._seconds_left = seconds_left

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args, **kwargs: self.call(name, *args, **kwargs)

    def _timeout(self) -> float:
        left = self._seconds_left()
        if left <= 1:
            raise KernelUnavailable("not checked: the notebook's time limit was reached")
        return min(self._call_timeout, left)

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """``name(*args, **kwargs)`` in the kernel; its result as plain values (tensors stay tensors)."""
        return self._answer(self._kernel.call(name, args, kwargs, timeout=self._timeout()), f"`{name}`")

    def evaluate(self, code: str) -> Any:
        """Run instructor ``code`` in the student's namespace; the value of its last expression."""
        return self._answer(self._kernel.evaluate(code, timeout=self._timeout()), "the notebook's code")

    def has(self, name: str) -> bool:
        """Whether the notebook defines ``name``."""
        return bool(self.evaluate(f"{name!r} in globals()"))

    def _answer(self, answer: dict, what: str) -> Any:
        if "value" in answer:
            return answer["value"]
        if "error" in answer:
            error = answer["error"] if isinstance(answer["error"], dict) else {}
            kind, message = str(error.get("type", "Error"))[:100], str(error.get("message", ""))[:500]
            raise StudentCodeError(f"{what} raised {kind}: {message}" if message else f"{what} raised {kind}")
        if "missing" in answer:
            raise StudentCodeError(f"{what} is not defined in the notebook: was its cell run, and is it spelled so?")
        if "not_callable" in answer:
            raise StudentCodeError(f"{what} is a {str(answer.get('type', 'value'))[:60]}, not a function")
        if "unsendable" in answer:
            raise StudentCodeError(f"{what} returned a value the grader cannot read: {str(answer['unsendable'])[:300]}")
        if "timeout" in answer:
            raise StudentTimeout(f"{what} did not return within {answer['timeout']:.0f} s")
        if "lost" in answer:
            raise KernelUnavailable(f"{what} could not finish: {str(answer['lost'])[:300]}")
        raise StudentCodeError(
            f"the grader could not read what {what} returned ({str(answer.get('garbled', ''))[:200]})"
        )


@dataclass
class Verdict:
    """The outcome of one test cell's hidden checks."""

    passed: bool
    message: str
    seconds: float = 0.0


def run_hidden(code: str, namespace: dict, grade_id: str) -> Verdict:
    """Run one test cell's hidden ``code`` in ``namespace`` (the notebook's hidden checks share it)."""
    start = time.monotonic()
    try:
        exec(compile(code, f"<hidden checks of {grade_id}>", "exec"), namespace)
    except AssertionError as error:
        message = str(error).strip() or "a hidden check failed"
        return Verdict(False, message, time.monotonic() - start)
    except CheckFailure as error:
        return Verdict(False, str(error), time.monotonic() - start)
    except Exception as error:  # e.g. a value of the wrong type or shape reaching the reference code
        detail = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
        message = f"the check could not be completed ({type(error).__name__}{': ' + detail if detail else ''})"
        return Verdict(False, message, time.monotonic() - start)
    return Verdict(True, "all hidden checks passed", time.monotonic() - start)


def close(got: Any, want: Any, rtol: float = 1e-4, atol: float = 1e-5) -> bool:
    """Whether ``got`` (a student's value) matches ``want`` within tolerances, shapes included.

    Tensors, arrays, numbers and (nested) lists; NaNs never match. For hidden checks:
    ``assert close(got, want), "..."``.
    """
    import numpy as np
    import torch

    def as_array(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value.detach().cpu().numpy()
        return np.asarray(value)

    try:
        got_array, want_array = as_array(got), as_array(want)
    except (ValueError, TypeError):
        return False
    if got_array.shape != want_array.shape or got_array.dtype.kind not in "biufc":
        return False
    if want_array.size == 0:
        return True
    if not np.all(np.isfinite(got_array)):
        return False
    return bool(np.allclose(got_array.astype(np.float64), want_array.astype(np.float64), rtol=rtol, atol=atol))


def difference(got: Any, want: Any) -> str:
    """A short description of how ``got`` differs from ``want``, for an assertion's message."""
    import numpy as np
    import torch

    if not isinstance(got, torch.Tensor | np.ndarray | int | float | list):
        return f"got a {type(got).__name__}"
    try:
        got_array = got.detach().cpu().numpy() if isinstance(got, torch.Tensor) else np.asarray(got)
        want_array = want.detach().cpu().numpy() if isinstance(want, torch.Tensor) else np.asarray(want)
    except (ValueError, TypeError):
        return "got a value that is not an array of numbers"
    if got_array.shape != want_array.shape:
        return f"shape {tuple(got_array.shape)} instead of {tuple(want_array.shape)}"
    if got_array.dtype.kind not in "biufc":
        return f"dtype {got_array.dtype} is not numeric"
    if not np.all(np.isfinite(got_array)):
        return "it holds NaN or infinite values"
    gap = np.abs(got_array.astype(np.float64) - want_array.astype(np.float64))
    return f"largest difference {gap.max():.3g}" if gap.size else "empty"


def hidden_namespace(student: Student) -> dict:
    """The globals a notebook's hidden checks start with: ``student``, ``torch``, ``np``, ``math``, ``close``, ``difference``."""
    import numpy as np
    import torch

    return {
        "__name__": "hidden_checks",
        "student": student,
        "torch": torch,
        "np": np,
        "math": math,
        "close": close,
        "difference": difference,
    }
