"""The graded assignments end to end: the instructor's four commands on a fresh copy, hostile submissions included.

From a copy of ``assignments/`` (the course folder; the grading package is installed with the course),
``course-grade``'s ``release``, ``collect``, ``autograde`` and ``export`` turn a folder of submissions of assignment 1
(tests/fixtures/submissions/hostile.py: a perfect one, an unanswered one, and every hostile case of
issue #8) into the gradebook CSV and feedback pages; each student gets exactly the points the
fixture says, the instructor's files are unchanged, the feedback names what happened and shows no
hidden test code. For the other assignments, ``check``: the solutions get every point, the student
versions none. Needs root and Linux (the sandbox); skipped elsewhere, with the reason.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from course_grading import cli, sandbox

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("hostile", ROOT / "tests" / "fixtures" / "submissions" / "hostile.py")
hostile = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hostile)

ASSIGNMENTS = ["01_codebooks", "02_codec", "03_language_model", "04_diffusion"]
SANDBOX_PROBLEM = sandbox.sandbox_problem()
needs_sandbox = pytest.mark.skipif(
    SANDBOX_PROBLEM is not None, reason=f"grading sandbox unavailable: {SANDBOX_PROBLEM}"
)
# Short limits keep the hostile loops cheap; a correct notebook needs far less per cell.
CELL_TIMEOUT = 15


def fresh_copy(tmp_path: Path, name: str = "clone") -> Path:
    """What a clone holds for grading: assignments/, without generated files."""
    clone = tmp_path / name
    ignore = shutil.ignore_patterns(
        "submitted", "autograded", "feedback", "grading_notes", "gradebook.*", "__pycache__"
    )
    shutil.copytree(ROOT / "assignments", clone / "assignments", ignore=ignore)
    return clone


def grade(clone: Path, *args: str, python: str = sys.executable, old_name: bool = False) -> str:
    """``course-grade ARGS`` run in the clone's root (``python -m course_grading``: by that very interpreter), or
    with ``old_name`` ``python assignments/grade.py ARGS`` run from elsewhere (it grades its own folder)."""
    command = [python, str(clone / "assignments" / "grade.py")] if old_name else [python, "-m", "course_grading"]
    completed = subprocess.run(
        [*command, *args], cwd=clone.parent if old_name else clone, capture_output=True, text=True, timeout=1500
    )
    assert completed.returncode == 0, f"course-grade {' '.join(args)} failed:\n{completed.stdout}\n{completed.stderr}"
    return completed.stdout


def digest(paths: list[Path]) -> dict[str, str]:
    files = sorted(p for root in paths for p in ([root] if root.is_file() else root.rglob("*")) if p.is_file())
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_committed_student_versions_are_generated_from_the_sources(tmp_path):
    """assignments/release/ is what `course-grade release` makes from assignments/source/ (re-run it after editing a source)."""
    clone = fresh_copy(tmp_path)
    shutil.rmtree(clone / "assignments" / "release", ignore_errors=True)
    grade(clone, "release", old_name=True)
    for assignment in cli.Course(ROOT / "assignments").assignments():
        for path in sorted((clone / "assignments" / "release" / assignment).glob("*.ipynb")):
            committed = ROOT / "assignments" / "release" / assignment / path.name
            assert committed.is_file(), f"{committed} is missing: run `course-grade release`"
            assert nbformat.read(committed, as_version=4) == nbformat.read(path, as_version=4), (
                f"{committed} is out of date: run `course-grade release`"
            )


def test_student_versions_have_stubs_points_and_no_hidden_tests():
    for assignment in ASSIGNMENTS:
        for path in (ROOT / "assignments" / "release" / assignment).glob("*.ipynb"):
            notebook = nbformat.read(path, as_version=4)
            text = nbformat.writes(notebook)
            assert "BEGIN HIDDEN TESTS" not in text and "BEGIN SOLUTION" not in text and "student." not in text
            solutions = [c for c in notebook.cells if c.metadata.get("nbgrader", {}).get("solution")]
            tests = [c for c in notebook.cells if c.metadata.get("nbgrader", {}).get("grade")]
            assert solutions and all("raise NotImplementedError()" in c.source for c in solutions)
            assert tests and all(c.metadata["nbgrader"]["points"] > 0 for c in tests)
            assert "Points:" in notebook.cells[0].source, "the first cell states the assignment's points"


@needs_sandbox
@pytest.mark.slow
@pytest.mark.parametrize("assignment", ASSIGNMENTS[1:])
def test_solutions_pass_and_student_versions_fail(assignment, capsys):
    """Assignment 1's pair is graded in the workflow test below."""
    assert cli.check(cli.Course(ROOT / "assignments"), [assignment]), capsys.readouterr().out


def linked_environment(tmp_path: Path) -> str:
    """The course's environment reached through a symbolic link, in a folder whose name has a space and an é."""
    folder = tmp_path / "linked env é"
    folder.mkdir()
    (folder / ".venv").symlink_to(Path(sys.prefix).resolve(), target_is_directory=True)
    python = folder / ".venv" / "bin" / Path(sys.executable).name
    assert python.exists() and str(Path(python).parent) != str(Path(python).parent.resolve())
    return str(python)


@needs_sandbox
@pytest.mark.slow
def test_four_commands_grade_a_folder_of_hostile_submissions(tmp_path):
    """Graded as issue #23 found it: a symlinked environment (every student got 0), in paths with spaces and é."""
    python = linked_environment(tmp_path)
    clone = fresh_copy(tmp_path, "a course é/clone")
    course = clone / "assignments"
    assignment = hostile.ASSIGNMENT
    grade(clone, "release", assignment, python=python)
    folder = tmp_path / "hand-ins"
    expected = hostile.build(folder, course)
    output = grade(clone, "collect", assignment, str(folder), python=python)
    assert "skipped 'bad id!'" in output

    instructor_files = [course / "source", course / "release", course / "nbgrader_config.py", course / "grade.py"]
    before = digest(instructor_files + [course / "submitted" / "perfect"])
    grade(clone, "autograde", assignment, f"--cell-timeout={CELL_TIMEOUT}", python=python)
    assert digest(instructor_files + [course / "submitted" / "perfect"]) == before, (
        "a submission changed instructor files"
    )
    grade(clone, "export", python=python)

    with (course / "gradebook.csv").open() as file:
        rows = list(csv.DictReader(file))
    points = {(r["student"], r["question"]): float(r["points"]) for r in rows}
    notes = {(r["student"], r["question"]): r["note"] for r in rows}
    for student, questions in expected.items():
        if questions is None:
            assert not any(r["student"] == student for r in rows), f"{student} must not be in the gradebook"
            continue
        got = {q: points.get((student, q)) for q in questions}
        assert got == {q: float(p) for q, p in questions.items()}, (
            f"{student}: {got} (notes: {[notes.get((student, q)) for q in questions]})"
        )
        total = {float(r["total"]) for r in rows if r["student"] == student}
        assert total == {float(sum(questions.values()))}, (student, total)

    feedback = {
        s: (course / "feedback" / s / assignment / f"{assignment}.html") for s in expected if expected[s] is not None
    }
    pages = {s: p.read_text() for s, p in feedback.items()}
    source = nbformat.read(course / "source" / assignment / f"{assignment}.ipynb", as_version=4)
    hidden_lines = [
        line.strip()
        for cell in source.cells
        for line in cli.split_hidden(cell.source)[1].splitlines()
        if len(line.strip()) > 30 and cell.metadata.get("nbgrader", {}).get("grade")
    ]
    solution_lines = [line.strip() for line in source.cells[3].source.splitlines() if "sq_distances" in line]
    for student, page in pages.items():
        if student != "reads_hidden":  # whose own code names the markers it looks for
            assert "BEGIN HIDDEN TESTS" not in page and "student." not in page, (
                f"hidden test code in {student}'s feedback"
            )
        leaked = [line for line in hidden_lines if line in page]
        assert not leaked, f"{student}'s feedback shows hidden test code: {leaked[:2]}"
        assert "<script>alert" not in page
    assert all(line not in pages["reads_hidden"] for line in solution_lines)

    # each case is named in its feedback
    named = {
        "raises": "my update step is broken",
        "loops_forever": f"ran past the {CELL_TIMEOUT}-second limit per cell",
        "ignores_interrupts": "the kernel was restarted",
        "huge_output": "printed more than the grader keeps",
        "monkeypatches": "torch.allclose",
        "tampers_files": "The kernel was lost",
        "renamed": "01_codebooks (1).ipynb",
        "missing": "No notebook named 01_codebooks.ipynb",
        "invalid_json": "not valid JSON",
        "symlink": "symbolic link",
        "perfect": "Score: 13 of 13 points",
        "unanswered": "NotImplementedError",
        "forged_cells": "they were put back and graded",
        "forged_flags": "test_kmeans, test_bitrate, test_vq_vae_loss",
    }
    for student, phrase in named.items():
        assert phrase in pages[student], f"{student}'s feedback should say {phrase!r}"

    autograded = course / "autograded"
    loud = autograded / "huge_output" / assignment / f"{assignment}.ipynb"
    assert loud.stat().st_size < 2_000_000, "the grader kept megabytes of output"
    tamper_log = json.dumps(
        nbformat.read(autograded / "tampers_files" / assignment / f"{assignment}.ipynb", 4).cells[2].outputs
    )
    assert "succeeded" not in tamper_log.replace("plant a gradebook here', 'succeeded", ""), tamper_log
    reader = json.dumps(
        nbformat.read(autograded / "reads_hidden" / assignment / f"{assignment}.ipynb", 4).cells[2].outputs
    )
    assert "found: []" in reader, reader
