"""The instructor's commands: release, collect, autograde, export (and check, for CI and authors).

Each one is a thin layer over nbgrader's command line (``nbgrader generate_assignment``,
``autograde``, ``generate_feedback``, ``export``) run in the course folder with the course's
configuration (``assignments/nbgrader_config.py``), plus what nbgrader lacks: checked collection
of a folder of submissions, the sandbox, hidden checks outside the kernel, clean feedback, one CSV
row per question. See ``assignments/INSTRUCTORS.md``.

    course-grade release                        # student versions -> assignments/release/
    course-grade collect 01_codebooks hand-ins/
    sudo .venv/bin/course-grade autograde 01_codebooks
    course-grade export                         # gradebook.csv + feedback/<student>/...
    sudo .venv/bin/course-grade doctor          # can this machine grade? [OK]/[FAIL] lines

Run them in the repository's root or in the course folder itself (or name it: --course DIR).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

from course_grading import doctor, sandbox
from course_grading.hidden import split_hidden
from course_grading.kernel import KERNEL_START_FAILED
from course_grading.submissions import collect, notes_path, read_problems

PRIVATE = ("source", "submitted", "autograded", "feedback", "grading_notes")


class GradingError(Exception):
    """A problem the instructor can fix; the message says how."""


class Course:
    """An nbgrader course folder: ``nbgrader_config.py``, ``source/<assignment>/<notebook>.ipynb``, ..."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        if not (self.root / "nbgrader_config.py").is_file() or not (self.root / "source").is_dir():
            raise GradingError(
                f"{self.root} is not a course folder (it needs nbgrader_config.py and source/): run course-grade in "
                "the repository's root or its assignments/ folder, or pass --course DIR (assignments/ or a copy of it)."
            )

    def assignments(self) -> list[str]:
        return sorted(p.name for p in (self.root / "source").iterdir() if p.is_dir() and not p.name.startswith("."))

    def notebooks(self, assignment: str) -> list[str]:
        folder = self.root / "source" / assignment
        if not folder.is_dir():
            raise GradingError(f"No assignment {assignment!r}: the course has {', '.join(self.assignments())}.")
        return sorted(p.stem for p in folder.glob("*.ipynb"))

    def pick(self, names: list[str] | None) -> list[str]:
        known = self.assignments()
        for name in names or []:
            if name not in known:
                raise GradingError(f"No assignment {name!r}: the course has {', '.join(known)}.")
        return list(names) if names else known

    def lock(self) -> None:
        """Instructor-only permissions on what students must not read (belt and braces: the sandbox hides it)."""
        for name in PRIVATE:
            path = self.root / name
            if path.is_dir():
                path.chmod(0o700)
        database = self.root / "gradebook.db"
        if database.exists():
            database.chmod(0o600)

    def nbgrader(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run ``nbgrader ARGS`` in the course folder, by this interpreter (which has the grading package)."""
        env = dict(os.environ)
        env.setdefault("OMP_NUM_THREADS", "1")
        # nbgrader runs `alembic` (its database migrations) from PATH: the environment's bin/ must be on it
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "/usr/bin:/bin")])
        command = [sys.executable, "-m", "nbgrader", *args, f"--CourseDirectory.root={self.root}"]
        completed = subprocess.run(command, cwd=self.root, env=env, capture_output=True, text=True)
        if check and completed.returncode != 0:
            tail = "\n".join((completed.stdout + completed.stderr).strip().splitlines()[-25:])
            raise GradingError(f"`nbgrader {' '.join(args)}` failed:\n{tail}")
        return completed


def default_course(folder: Path | None = None) -> Path:
    """The course folder an instructor means: ``folder`` (the current one) when it is a course folder,
    else its ``assignments/`` (the repository's root)."""
    folder = Path.cwd() if folder is None else folder
    return folder if (folder / "nbgrader_config.py").is_file() else folder / "assignments"


def check_source(course: Course, assignment: str) -> None:
    """Refuse a source whose test cells could award points without hidden checks."""
    for name in course.notebooks(assignment):
        notebook = nbformat.read(course.root / "source" / assignment / f"{name}.ipynb", as_version=4)
        for cell in notebook.cells:
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("grade") and not meta.get("solution") and cell.cell_type == "code":
                _, hidden_code = split_hidden(cell.source)
                if not hidden_code.strip():
                    raise GradingError(
                        f"{assignment}/{name}.ipynb: test cell {meta.get('grade_id')!r} has no '### BEGIN HIDDEN TESTS' "
                        "region. Its points are decided by hidden checks run outside the student's kernel: add them."
                    )


def release(course: Course, assignments: list[str] | None = None) -> list[Path]:
    """Generate the student versions (``release/<assignment>/``) and register the assignments in the gradebook."""
    chosen = course.pick(assignments)
    for assignment in chosen:
        check_source(course, assignment)
    # one nbgrader run for all of them (its assignment argument is a glob): nbgrader starts slowly
    for pattern in ["*"] if chosen == course.assignments() else chosen:
        course.nbgrader("generate_assignment", pattern, "--force")
    written = []
    for assignment in chosen:
        written += sorted((course.root / "release" / assignment).glob("*.ipynb"))
    course.lock()
    return written


def collect_folder(course: Course, assignment: str, folder: Path, student: str | None = None) -> str:
    """Collect ``folder`` (one sub-folder per student) for ``assignment``; returns the report's text."""
    if not (course.root / "release" / assignment).is_dir():
        raise GradingError(f"{assignment} was not released yet: run `course-grade release {assignment}` first.")
    released = {
        name: nbformat.read(course.root / "release" / assignment / f"{name}.ipynb", as_version=4)
        for name in course.notebooks(assignment)
    }
    report = collect(course.root, assignment, folder, released, student)
    course.lock()
    return f"collected {len(report.students)} submission(s) of {assignment}:\n{report.summary()}"


def autograde(
    course: Course,
    assignment: str,
    student: str | None = None,
    cell_timeout: int | None = None,
    time_limit: int | None = None,
    sandboxed: bool = True,
) -> str:
    """Grade the collected submissions of ``assignment`` (all, or one ``student``); returns a summary."""
    if sandboxed and (problem := sandbox.sandbox_problem()):
        raise GradingError(problem)
    check_grader(course, sandboxed)
    course.lock()
    options = []
    if cell_timeout is not None:
        options.append(f"--SandboxedExecute.cell_timeout={cell_timeout}")
    if time_limit is not None:
        options.append(f"--SandboxedExecute.time_limit={time_limit}")
    if not sandboxed:
        options.append("--SandboxedExecute.sandboxed=False")
    submitted = course.root / "submitted"
    students = sorted(p.name for p in submitted.iterdir() if (p / assignment).is_dir()) if submitted.is_dir() else []
    if student is not None:
        students = [s for s in students if s == student]
    failed = []
    if students:
        args = ["autograde", assignment, "--force", *options]
        if student is not None:
            args.append(f"--student={student}")
        completed = course.nbgrader(*args, check=False)
        log = completed.stdout + completed.stderr
        failed = [s for s in students if f"error processing assignment '{assignment}' for student '{s}'" in log]
        if KERNEL_START_FAILED in log:  # the grader's fault, not theirs: no 0 on record, the instructor is told
            raise GradingError(
                "a kernel could not start during grading, although the canary's did (out of memory or processes?); "
                "the affected students have no grade recorded. Run `course-grade doctor`, then autograde again:\n"
                + "\n".join(line for line in log.splitlines() if KERNEL_START_FAILED in line)[-3000:]
            )
        if completed.returncode != 0 and not failed:
            raise GradingError(f"`nbgrader {' '.join(args)}` failed:\n" + "\n".join(log.strip().splitlines()[-25:]))
    # Students whose every notebook was unusable were not handed to nbgrader: they get 0, on record.
    ungradable = []
    for path in sorted((course.root / "grading_notes" / assignment).glob("*.json")):
        if (student is None or path.stem == student) and path.stem not in students:
            ungradable.append(path.stem)
    if ungradable or failed:
        _record_zero_submissions(course, assignment, ungradable + failed)
    course.lock()
    summary = f"graded {len(students) - len(failed)} submission(s) of {assignment}"
    if ungradable:
        summary += f"; {len(ungradable)} with no gradable notebook got 0: {', '.join(ungradable)}"
    if failed:
        raise GradingError(
            f"{summary}; nbgrader failed on {', '.join(failed)} (0 points recorded): rerun with "
            f"`nbgrader autograde {assignment} --student=ID` in {course.root} to see why."
        )
    return summary


_CANARY_PASSED: set[tuple] = set()


def check_grader(course: Course, sandboxed: bool = True) -> None:
    """Stop before any grade is recorded when the grader itself cannot run a notebook (the canary)."""
    checks = doctor.machine_checks(course.root) if sandboxed else []
    read_only = sandbox.read_only_paths()
    setup = (sandboxed, sandbox.kernel_python(), *read_only, *sandbox.alias_paths(read_only).items())
    if doctor.first_failure(checks) is None and setup not in _CANARY_PASSED:
        checks += doctor.canary(sandboxed=sandboxed)
    failure = doctor.first_failure(checks)
    if failure is None:
        _CANARY_PASSED.add(setup)  # once per set-up and process: `check` grades several assignments
    else:
        raise GradingError(
            "the grader cannot run students' notebooks on this machine, so nothing was graded or recorded.\n"
            f"  what failed: {failure.what}\n  how to fix it: {failure.fix}\n"
            "  `course-grade doctor` checks each step (run it as you run autograde, e.g. with sudo)."
        )


def _record_zero_submissions(course: Course, assignment: str, students: list[str]) -> None:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course.root / 'gradebook.db'}") as gradebook:
        for student in students:
            gradebook.update_or_create_student(student)
            submission = gradebook.update_or_create_submission(assignment, student)
            for notebook in submission.notebooks:
                for grade in notebook.grades:
                    grade.auto_score = 0.0
                    grade.needs_manual_grade = False
            gradebook.db.commit()


def export(course: Course, to: Path | None = None, assignments: list[str] | None = None) -> tuple[Path, list[Path]]:
    """Feedback HTML for every graded notebook, a page for every ungradable one, and the gradebook CSV."""
    from nbgrader.api import Gradebook

    from course_grading.feedback import write_problem_page

    pages: list[Path] = []
    chosen = course.pick(assignments)
    with Gradebook(f"sqlite:///{course.root / 'gradebook.db'}") as gradebook:
        released = {a.name for a in gradebook.assignments}
    unreleased = [a for a in chosen if a not in released]
    if assignments and unreleased:
        raise GradingError(f"{', '.join(unreleased)} was never released here: run `course-grade release` first.")
    chosen = [a for a in chosen if a in released]
    for assignment in chosen:
        if (course.root / "autograded").is_dir() and any((course.root / "autograded").glob(f"*/{assignment}")):
            course.nbgrader("generate_feedback", assignment, "--force")
        with Gradebook(f"sqlite:///{course.root / 'gradebook.db'}") as gradebook:
            max_scores = {n.name: n.max_score for n in gradebook.find_assignment(assignment).notebooks}
        for notes in sorted((course.root / "grading_notes" / assignment).glob("*.json")):
            for problem in read_problems(course.root, assignment, notes.stem):
                page = course.root / "feedback" / notes.stem / assignment / f"{problem.notebook}.html"
                write_problem_page(
                    page, notes.stem, assignment, problem.notebook, problem.message, max_scores.get(problem.notebook, 0)
                )
        pages += sorted((course.root / "feedback").glob(f"*/{assignment}/*.html"))
    destination = (to or course.root / "gradebook.csv").resolve()
    args = ["export", f"--to={destination}"]
    if assignments:
        args.append(f"--assignment={json.dumps(chosen)}")
    if not chosen:
        raise GradingError("Nothing to export: no assignment was released and graded in this course folder yet.")
    course.nbgrader(*args)
    course.lock()
    return destination, pages


def check(
    course: Course, assignments: list[str] | None = None, sandboxed: bool = True, keep: Path | None = None
) -> bool:
    """Grade each source (the solutions) and its student version in a scratch copy of the course.

    True when every solution gets every point and every student version gets none of them --
    what CI checks. Prints one line per question.
    """
    ok = True
    scratch = Path(tempfile.mkdtemp(prefix="course-check-")) if keep is None else keep
    try:
        copy = scratch / "course"
        copy.mkdir(parents=True, exist_ok=True)
        shutil.copy2(course.root / "nbgrader_config.py", copy / "nbgrader_config.py")
        for assignment in course.pick(assignments):
            shutil.copytree(course.root / "source" / assignment, copy / "source" / assignment, dirs_exist_ok=True)
        scratch_course = Course(copy)
        for assignment in course.pick(assignments):
            release(scratch_course, [assignment])
            folder = scratch / "hand-ins" / assignment
            for who, origin in (("solution", "source"), ("student_version", "release")):
                (folder / who).mkdir(parents=True, exist_ok=True)
                for name in scratch_course.notebooks(assignment):
                    shutil.copy2(copy / origin / assignment / f"{name}.ipynb", folder / who / f"{name}.ipynb")
            collect_folder(scratch_course, assignment, folder)
            autograde(scratch_course, assignment, sandboxed=sandboxed)
            ok &= _report_check(scratch_course, assignment)
    finally:
        if keep is None:
            shutil.rmtree(scratch, ignore_errors=True)
    return ok


def _report_check(course: Course, assignment: str) -> bool:
    from nbgrader.api import Gradebook

    ok = True
    with Gradebook(f"sqlite:///{course.root / 'gradebook.db'}") as gradebook:
        for notebook in gradebook.find_assignment(assignment).notebooks:
            for cell in sorted(notebook.grade_cells, key=lambda c: c.name):
                solution = gradebook.find_grade(cell.name, notebook.name, assignment, "solution").score
                stub = gradebook.find_grade(cell.name, notebook.name, assignment, "student_version").score
                good = solution == cell.max_score and stub == 0
                ok &= good
                print(
                    f"{'ok  ' if good else 'FAIL'} {assignment}/{notebook.name} {cell.name}: solution {solution:g}/"
                    f"{cell.max_score:g}, student version {stub:g}"
                )
    if not ok:
        verdicts = _verdict_messages(course, assignment)
        for line in verdicts:
            print("    " + line)
    return ok


def _verdict_messages(course: Course, assignment: str) -> list[str]:
    lines = []
    for path in sorted((course.root / "autograded").glob(f"*/{assignment}/*.ipynb")):
        metadata = json.loads(path.read_text()).get("metadata", {}).get("course_grading", {})
        for grade_id, verdict in metadata.get("verdicts", {}).items():
            lines.append(f"{path.parts[-3]} {grade_id}: {verdict.get('message')}")
        lines += [f"{path.parts[-3]} event: {e.get('message')}" for e in metadata.get("events", [])]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="course-grade", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--course", type=Path, help="the course folder (default: this folder if it is one, else assignments/ in it)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("release", help="generate the student versions into release/")
    p.add_argument("assignments", nargs="*")
    p = commands.add_parser("collect", help="copy a folder of submissions (one sub-folder per student) in")
    p.add_argument("assignment")
    p.add_argument("folder", type=Path)
    p.add_argument("--student", help="collect only this student (a re-submission)")
    p = commands.add_parser("autograde", help="run and grade the collected submissions (as root: the sandbox)")
    p.add_argument("assignment")
    p.add_argument("--student", help="grade only this student (regrade)")
    p.add_argument("--cell-timeout", type=int, help="seconds per cell (default in nbgrader_config.py)")
    p.add_argument("--time-limit", type=int, help="seconds per notebook (default in nbgrader_config.py)")
    p = commands.add_parser("export", help="write gradebook.csv and the feedback HTML")
    p.add_argument("assignments", nargs="*")
    p.add_argument("--to", type=Path, help="CSV path (default: gradebook.csv in the course folder)")
    p = commands.add_parser("check", help="solutions must get every point, student versions none (CI)")
    p.add_argument("assignments", nargs="*")
    p.add_argument("--no-sandbox", action="store_true", help="trusted notebooks only: run without the sandbox")
    commands.add_parser("doctor", help="whether this machine can grade: the sandbox, the interpreter, the canary")
    args = parser.parse_args(argv)
    try:
        course = Course(args.course or default_course())
        if args.command == "doctor":
            return doctor.doctor(course.root)
        if args.command == "release":
            for path in release(course, args.assignments):
                print(f"released {path.relative_to(course.root)}")
        elif args.command == "collect":
            print(collect_folder(course, args.assignment, args.folder, args.student))
        elif args.command == "autograde":
            print(autograde(course, args.assignment, args.student, args.cell_timeout, args.time_limit))
        elif args.command == "export":
            csv_path, pages = export(course, args.to, args.assignments)
            print(f"wrote {csv_path} and {len(pages)} feedback page(s) under {course.root / 'feedback'}")
        elif args.command == "check":
            return 0 if check(course, args.assignments, sandboxed=not args.no_sandbox) else 1
    except GradingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


__all__ = [
    "Course",
    "GradingError",
    "autograde",
    "check",
    "check_grader",
    "collect_folder",
    "default_course",
    "export",
    "main",
    "notes_path",
    "release",
]
