"""nbgrader's autograde step with the notebook run in the sandbox and the hidden checks run outside it.

Two nbgrader preprocessors, swapped in for nbgrader's own by ``assignments/nbgrader_config.py``:

- :class:`SandboxedExecute` replaces ``Execute``: it runs the submission cell by cell in a
  :class:`course_grading.kernel.SandboxedKernel` (time limit per cell and per notebook, output
  caps, interrupt / kill / restart), runs each test cell's public part in the kernel and its hidden
  part in this process (:mod:`course_grading.hidden`), taking both from the gradebook -- never from
  the submission. Verdicts go into ``resources`` (which the submission cannot touch) and, for the
  feedback, into the notebook's metadata with the *events* of the run (a timeout, a restart,
  output cut, an error, replaced test functions).
- :class:`SaveVerdicts` replaces ``SaveAutoGrades``: a test cell's score is its verdict (full
  points or 0), not nbgrader's reading of the cell's outputs (where any stderr line meant 0).
"""

from __future__ import annotations

import time
from typing import Any

import nbformat
from nbgrader import utils
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.preprocessors import NbGraderPreprocessor, SaveAutoGrades
from traitlets import Bool, Dict, Integer

from course_grading import hidden, sandbox
from course_grading.kernel import KERNEL_START_FAILED, CellResult, KernelLost, OutputCaps, SandboxedKernel

METADATA_KEY = "course_grading"


class KernelStartFailed(RuntimeError):
    """A submission's first kernel did not start: nothing of the student's had run yet."""


def _event(kind: str, message: str, cell: int | None = None) -> dict:
    return {"kind": kind, "cell": cell, "message": message}


class SandboxedExecute(NbGraderPreprocessor):
    """Execute a submission in the sandbox and decide each test cell by its hidden checks."""

    cell_timeout = Integer(120, help="Seconds one cell (or one call from a hidden check) may run.").tag(config=True)
    time_limit = Integer(600, help="Seconds the whole notebook may take, hidden checks included.").tag(config=True)
    time_limits = Dict({}, help="Time limit per assignment, overriding time_limit: {'04_diffusion': 900}.").tag(
        config=True
    )
    memory_mib = Integer(6144, help="Address space of the kernel (MiB).").tag(config=True)
    max_restarts = Integer(2, help="Kernel restarts (after a kill or a crash) before the rest is not run.").tag(
        config=True
    )
    sandboxed = Bool(
        True,
        help="Run the kernel in the sandbox. False only for the instructor's own notebooks (course-grade check --no-sandbox).",
    ).tag(config=True)

    def preprocess(self, nb: nbformat.NotebookNode, resources: dict) -> tuple[nbformat.NotebookNode, dict]:
        info = resources["nbgrader"]
        assignment = info["assignment"]
        limit = float(self.time_limits.get(assignment, self.time_limit))
        start = time.monotonic()
        deadline = start + limit
        verdicts: dict[str, dict] = {}
        events: list[dict] = []
        resources[METADATA_KEY] = {"verdicts": verdicts}
        sources = self._test_sources(info)
        for cell in nb.cells:  # nothing the submission wrote in outputs or our metadata survives
            cell.metadata.pop(METADATA_KEY, None)
            if cell.cell_type == "code":
                cell.outputs = []
                cell.execution_count = None

        limits = sandbox.Limits(cpu_seconds=int(limit) + 120, memory_mib=self.memory_mib)
        kernel = SandboxedKernel(limits=limits, caps=OutputCaps(), sandboxed=self.sandboxed)
        try:
            self._run(nb, kernel, sources, deadline, limit, verdicts, events)
        except KernelStartFailed as error:
            self.log.error("%s for %s/%s: %s", KERNEL_START_FAILED, info["student"], info["notebook"], error)
            kernel.shutdown()
            raise
        except Exception as error:  # the grader's own failure: nothing is awarded, the instructor is told
            self.log.error("Grading %s/%s failed: %r", info["student"], info["notebook"], error)
            events.append(_event("grader_error", f"The grader failed on this notebook ({error}); ask your instructor."))
        finally:
            kernel.shutdown()
        for grade_id in sources:
            if grade_id not in verdicts:
                verdicts[grade_id] = {"passed": False, "message": "not checked: its cell was not run"}
        # set last: a NotebookNode copies what it is given
        nb.metadata[METADATA_KEY] = {
            "events": events,
            "verdicts": verdicts,
            "time_limit": limit,
            "seconds": round(time.monotonic() - start, 1),
        }
        return nb, resources

    def _test_sources(self, info: dict) -> dict[str, str]:
        """grade_id -> the instructor's source of each autograded test cell, from the gradebook."""
        sources = {}
        with Gradebook(info["db_url"]) as gradebook:
            notebook = gradebook.find_notebook(info["notebook"], info["assignment"])
            for grade_cell in notebook.grade_cells:
                if grade_cell.cell_type != "code":
                    continue
                try:
                    source_cell = gradebook.find_source_cell(grade_cell.name, info["notebook"], info["assignment"])
                except MissingEntry:
                    continue
                solution_ids = {cell.name for cell in notebook.solution_cells}
                if grade_cell.name not in solution_ids:
                    sources[grade_cell.name] = source_cell.source
        return sources

    def _run(
        self,
        nb: nbformat.NotebookNode,
        kernel: SandboxedKernel,
        sources: dict[str, str],
        deadline: float,
        limit: float,
        verdicts: dict[str, dict],
        events: list[dict],
    ) -> None:
        def left() -> float:
            return deadline - time.monotonic()

        try:
            kernel.start(timeout=min(120.0, max(left(), 1.0)))
        except (KernelLost, RuntimeError, OSError) as error:
            raise KernelStartFailed(str(error)) from None
        student = hidden.Student(kernel, float(self.cell_timeout), left)
        namespace = hidden.hidden_namespace(student)
        replay: list[str] = []  # code that ran without trouble, re-run after a restart
        truncated: list[int] = []
        code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
        for number, cell in enumerate(code_cells, start=1):
            last = number == len(code_cells)
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            is_test = grade_id in sources and utils.is_grade(cell) and not utils.is_solution(cell)
            if is_test:
                public, hidden_code = hidden.split_hidden(sources[grade_id])
            else:
                public, hidden_code = cell.source, ""
            if left() <= 1:
                events.append(
                    _event(
                        "time_limit",
                        f"The notebook reached its {limit:.0f}-second time limit before code cell {number}: "
                        "that cell and the ones after it were not run, and their checks get 0 points.",
                        number,
                    )
                )
                return
            result = kernel.execute(public, timeout=min(self.cell_timeout, left())) if public.strip() else CellResult()
            cell.outputs = result.outputs
            cell.execution_count = number
            if result.dropped_chars:
                truncated.append(number)
            if result.status == "error" and result.error:
                events.append(
                    _event("error", f"Code cell {number} raised {result.error[0]}: {result.error[1][:300]}", number)
                )
            if result.status == "timeout" and left() <= 1:
                events.append(
                    _event(
                        "time_limit",
                        f"Code cell {number} was still running when the notebook reached its {limit:.0f}-second time "
                        "limit: it and the cells after it were not run, and their checks get 0 points.",
                        number,
                    )
                )
                if is_test:
                    verdicts[grade_id] = {
                        "passed": False,
                        "message": "not checked: the notebook's time limit was reached",
                    }
                return
            if result.status == "timeout":
                events.append(
                    _event(
                        "timeout",
                        f"Code cell {number} ran past the {self.cell_timeout}-second limit per cell and was "
                        "interrupted; the cells after it still ran.",
                        number,
                    )
                )
            if result.status == "lost":
                why = result.error[1] if result.error else "the kernel died"
                if last and not is_test:  # nothing left to run: no restart
                    events.append(
                        _event(
                            "kernel_lost", f"The kernel was lost in code cell {number}, the last one ({why}).", number
                        )
                    )
                elif not self._recover(kernel, replay, number, result, left, events):
                    if is_test:
                        verdicts[grade_id] = {
                            "passed": False,
                            "message": "not checked: the kernel was lost in this cell",
                        }
                    return
            elif result.status in ("ok", "error"):
                replay.append(public)
            if is_test:
                if not hidden_code.strip():  # a test cell must be decided outside the kernel, never by default
                    verdict = hidden.Verdict(False, "this test cell has no hidden checks (an error in the assignment)")
                elif result.status in ("timeout", "lost"):
                    verdict = hidden.Verdict(False, "not checked: the cell's own code did not finish")
                else:
                    verdict = hidden.run_hidden(hidden_code, namespace, grade_id)
                verdicts[grade_id] = {"passed": verdict.passed, "message": verdict.message}
                cell.outputs.append(_verdict_output(verdict))
                if not kernel.alive() and not last and not self._recover(kernel, replay, number, None, left, events):
                    return
        if truncated:
            cells = ", ".join(str(n) for n in truncated)
            events.append(
                _event(
                    "output_truncated",
                    f"Code cell(s) {cells} printed more than the grader keeps ({kernel.caps.cell_chars:,} characters "
                    f"per cell, {kernel.caps.notebook_chars:,} per notebook); the rest of their output was dropped.",
                )
            )
        changed = kernel.tamper_report()
        if changed:
            events.append(
                _event(
                    "tampering",
                    f"The notebook replaced {', '.join(changed)}. The grader's checks run outside the notebook, so this "
                    "changes no grade, but the self-checks shown in the notebook may say 'passed' when they did not.",
                )
            )

    def _recover(
        self,
        kernel: SandboxedKernel,
        replay: list[str],
        number: int,
        result: CellResult | None,
        left: Any,
        events: list[dict],
    ) -> bool:
        """Restart a lost kernel and replay the cells that ran before; False when grading must stop here."""
        why = result.error[1] if result is not None and result.error else "the kernel died"
        if kernel.restarts >= self.max_restarts or left() <= 5:
            events.append(
                _event(
                    "kernel_lost",
                    f"The kernel was lost in code cell {number} ({why}), and was not restarted "
                    f"(restarts used: {kernel.restarts}, seconds left: {max(left(), 0):.0f}): the cells after it were not run.",
                    number,
                )
            )
            return False
        try:
            kernel.restart(timeout=min(120.0, left()))
        except (KernelLost, RuntimeError) as error:
            events.append(
                _event("kernel_lost", f"The kernel could not be restarted after code cell {number}: {error}.")
            )
            return False
        for code in replay:
            outcome = kernel.execute(code, timeout=min(self.cell_timeout, max(left(), 1.0)), keep_outputs=False)
            if outcome.status in ("timeout", "lost"):
                events.append(
                    _event(
                        "kernel_lost",
                        f"After the kernel was restarted at code cell {number}, re-running the earlier cells failed: "
                        "the cells after it were not run.",
                        number,
                    )
                )
                return False
        events.append(
            _event(
                "restarted",
                f"Code cell {number} {why}; the kernel was restarted, the cells before it were re-run, and grading "
                "went on with the next cell.",
                number,
            )
        )
        return True


def _verdict_output(verdict: hidden.Verdict) -> nbformat.NotebookNode:
    if verdict.passed:
        return nbformat.v4.new_output("stream", name="stdout", text="[grader] hidden checks passed\n")
    return nbformat.v4.new_output(
        "error",
        ename="HiddenCheckFailed",
        evalue=verdict.message,
        traceback=[f"[grader] hidden checks failed: {verdict.message}"],
    )


class SaveVerdicts(SaveAutoGrades):
    """Record each autograded test cell's score from its verdict (full points or 0)."""

    def _add_score(self, cell: nbformat.NotebookNode, resources: dict) -> None:
        verdicts = resources.get(METADATA_KEY, {}).get("verdicts")
        grade_id = cell.metadata["nbgrader"]["grade_id"]
        if verdicts is None or utils.is_solution(cell) or cell.cell_type != "code":
            return super()._add_score(cell, resources)
        grade = self.gradebook.find_grade(grade_id, self.notebook_id, self.assignment_id, self.student_id)
        verdict = verdicts.get(grade_id, {"passed": False})
        grade.auto_score = float(grade.max_score) if verdict.get("passed") is True else 0.0
        grade.needs_manual_grade = grade.manual_score is not None
        self.gradebook.db.commit()
