"""Whether students' notebooks can be graded on this machine: the canary run before each class, and ``doctor``.

A kernel that dies for one submission is that student's; a kernel that cannot start, import
``course_lib`` or answer the hidden checks *for anyone* is the grader's. Without this check that
second case gave every student 0 ("its cell was not run") with no error. So before grading a class,
``autograde`` runs :func:`canary`: the same sandboxed kernel a submission gets, which must start,
import ``course_lib``, define a function and have a hidden check (in the grader) call it and
compare its answer. If any step fails, nothing is graded and the instructor reads what failed and
how to fix it. ``course-grade doctor`` prints the same steps, after the machine's own prerequisites, as
``[OK]`` / ``[FAIL]`` lines.
"""

from __future__ import annotations

import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from course_grading import hidden, sandbox
from course_grading.kernel import KernelLost, SandboxedKernel

FIX_INSTALL = (
    "install the course into the environment you grade with (`make install`, or `pip install -e .[instructor]`), "
    "readable by every user (the kernel runs as `nobody`: `chmod -R a+rX` the environment if your umask is 077)"
)


@dataclass
class Check:
    """One step of the check: ``what`` was checked (or what failed), ``fix`` says how to put it right."""

    ok: bool
    what: str
    fix: str = ""

    def line(self) -> str:
        text = f"[{'OK' if self.ok else 'FAIL'}] {self.what}"
        return text + (f"\n       fix: {self.fix}" if self.fix and not self.ok else "")


def machine_checks(course_root: Path | None = None) -> list[Check]:
    """The prerequisites of the sandbox: Linux, root, the tools, the interpreter and the course in the view."""
    checks = [
        Check(sys.platform == "linux", f"operating system: {platform.system()} {platform.release()}", "grade on Linux"),
    ]
    problem = sandbox.sandbox_problem()
    checks.append(Check(problem is None, "root, unshare, setpriv, prlimit and mount" if problem is None else problem))
    read_only = sandbox.read_only_paths()
    aliases = sandbox.alias_paths(read_only)
    python = sandbox.kernel_python()
    checks.append(
        Check(
            sandbox.visible(python, read_only, aliases),
            f"the kernel's interpreter {python} (the grader runs {sys.executable})",
            "grade with the course environment's own Python (`.venv/bin/python`)",
        )
    )
    checks.append(
        Check(
            True,
            "the kernel's view (read-only): "
            + ", ".join(read_only + [f"{path} (= {real})" for path, real in aliases.items()]),
        )
    )
    if course_root is not None:
        course = str(Path(course_root).resolve())
        shown = [p for p in read_only + list(aliases) if course == p or course.startswith(p.rstrip("/") + "/")]
        checks.append(
            Check(
                not shown,
                f"the course folder {course} is not in the kernel's view"
                if not shown
                else f"the course folder {course} is inside {shown[0]}, which every kernel sees: "
                "students could read the solutions and hidden tests",
                "move the course folder (or the environment) so that neither contains the other",
            )
        )
    return checks


def canary(sandboxed: bool = True, timeout: float = 120.0) -> list[Check]:
    """Run the canary kernel; its steps, up to the first that failed (all passed when every one is ok)."""
    steps: list[Check] = []
    with tempfile.TemporaryDirectory(prefix="course-canary-") as folder:
        stderr = Path(folder) / "stderr.log"
        kernel = SandboxedKernel(sandboxed=sandboxed, stderr=stderr)

        def failed(what: str, fix: str) -> list[Check]:
            said = stderr.read_text(errors="replace").strip().splitlines()[-5:] if stderr.exists() else []
            detail = ("; the kernel said: " + " | ".join(line.strip() for line in said)) if said else ""
            return [*steps, Check(False, what + detail, fix)]

        start = time.monotonic()
        try:
            try:
                kernel.start(timeout=timeout)
            except (KernelLost, RuntimeError, OSError) as error:
                return failed(
                    f"a {'sandboxed ' if sandboxed else ''}kernel could not start: {error}",
                    "run `course-grade doctor` on this machine; " + FIX_INSTALL,
                )
            steps.append(
                Check(True, f"a {'sandboxed ' if sandboxed else ''}kernel starts ({time.monotonic() - start:.1f} s)")
            )
            result = kernel.execute("import course_lib\nprint(course_lib.__file__, end='')", timeout=timeout)
            if result.status != "ok":
                error = ": ".join(result.error or ("", "no answer"))
                return failed(f"course_lib cannot be imported in the kernel ({error})", FIX_INSTALL)
            where = "".join(o.get("text", "") for o in result.outputs if o.get("output_type") == "stream")
            steps.append(Check(True, f"course_lib imports in the kernel (from {where})"))
            result = kernel.execute("def canary_double(x):\n    return 2 * x", timeout=timeout)
            student = hidden.Student(kernel, timeout, lambda: timeout)
            verdict = hidden.run_hidden(
                "got = student.canary_double(torch.arange(3.0))\n"
                "assert close(got, 2 * torch.arange(3.0)), f'the answer came back wrong: {got!r}'",
                hidden.hidden_namespace(student),
                "canary",
            )
            if result.status != "ok" or not verdict.passed:
                return failed(f"the hidden checks cannot reach the kernel ({verdict.message})", FIX_INSTALL)
            steps.append(Check(True, "a hidden check in the grader calls the kernel's function and reads its answer"))
        finally:
            kernel.shutdown()
    return steps


def first_failure(checks: list[Check]) -> Check | None:
    return next((check for check in checks if not check.ok), None)


def doctor(course_root: Path | None = None, out: Callable[[str], None] = print) -> int:
    """Print whether students' notebooks can be graded here, one ``[OK]``/``[FAIL]`` line a step; 1 on any FAIL."""
    checks = machine_checks(course_root)
    for check in checks:
        out(check.line())
    if first_failure(checks) is None:
        for check in canary():
            checks.append(check)
            out(check.line())
    else:
        out("[FAIL] the canary kernel was not started: fix the failures above first")
        return 1
    return 0 if first_failure(checks) is None else 1
