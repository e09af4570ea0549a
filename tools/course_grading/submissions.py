"""Collecting a folder of submissions into nbgrader's ``submitted/`` directory, checking everything.

The folder holds one sub-folder per student, named by the student's id, with that student's
notebook(s) inside, as an LMS export or a shared drive gives them::

    hand-ins/
        alice/01_codebooks.ipynb
        bob/01_codebooks.ipynb
        carol/01_codebooks (1).ipynb     <- renamed: reported, not graded

What nbgrader would trip on, or what could reach outside a student's own grade, is caught here and
recorded as a *problem* (named in that student's feedback and in the gradebook CSV):

- an id that is not a plain name (``..``, slashes, spaces): not collected, listed in the report;
- a notebook that is missing, or present under another name (``01_codebooks (1).ipynb``);
- a symbolic link or anything but a regular file (a link could point at the instructor's files);
- a file over :data:`MAX_NOTEBOOK_BYTES`, a file that is not valid JSON, or JSON that is not a
  valid notebook.

Such a notebook gets 0 points without being run. Valid notebooks are re-written (parsed and
serialised again, so only notebook data goes on; nbgrader metadata on cells the assignment does
not have is dropped, on the cells it has it is the released one; deleted test cells are put back) into ``submitted/<id>/<assignment>/``, with a
``timestamp.txt`` (the student's own, if valid, else the newest file time).
"""

from __future__ import annotations

import datetime
import json
import re
import shutil
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,63}$")
MAX_NOTEBOOK_BYTES = 20 * 1024 * 1024
NOTES_DIR = "grading_notes"
# What decides how a cell is graded (the rest of nbgrader's cell metadata it sets itself, e.g. the checksum).
GRADING_FLAGS = ("grade", "solution", "locked", "points", "task", "schema_version")


@dataclass
class Problem:
    notebook: str
    kind: str  # "missing", "renamed", "not_a_file", "too_large", "invalid_json", "invalid_notebook"
    message: str


@dataclass
class StudentSubmission:
    student: str
    collected: list[str] = field(default_factory=list)  # notebook names (without .ipynb) copied
    problems: list[Problem] = field(default_factory=list)  # notebooks not graded (0 points)
    notices: list[Problem] = field(default_factory=list)  # graded, but something was put right


@dataclass
class CollectReport:
    students: list[StudentSubmission] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # entries of the folder that are not a student

    def summary(self) -> str:
        lines = []
        for entry in self.students:
            status = "ok" if not entry.problems else "; ".join(f"{p.notebook}: {p.kind}" for p in entry.problems)
            lines.append(f"  {entry.student}: {status}")
        lines += [f"  skipped {name!r}: not a student folder with a plain id" for name in self.skipped]
        return "\n".join(lines)


def notes_path(course: Path, assignment: str, student: str) -> Path:
    return course / NOTES_DIR / assignment / f"{student}.json"


def read_problems(course: Path, assignment: str, student: str, kind: str = "problems") -> list[Problem]:
    """The problems (or with ``kind="notices"``, the notices) collect recorded for one student's submission."""
    path = notes_path(course, assignment, student)
    if not path.is_file():
        return []
    return [Problem(**entry) for entry in json.loads(path.read_text()).get(kind, [])]


def _check_notebook(path: Path, name: str) -> tuple[nbformat.NotebookNode | None, Problem | None]:
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISREG(info.st_mode):
        kind = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a regular file"
        return None, Problem(name, "not_a_file", f"{path.name} is {kind}; submit the notebook file itself.")
    if info.st_size > MAX_NOTEBOOK_BYTES:
        return None, Problem(
            name,
            "too_large",
            f"{path.name} is {info.st_size / 2**20:.0f} MiB, over the {MAX_NOTEBOOK_BYTES // 2**20} MiB limit; "
            "clear the outputs (Edit > Clear Outputs of All Cells) and submit it again.",
        )
    text = path.read_bytes().decode("utf-8", errors="replace")
    try:
        json.loads(text)
    except ValueError as error:
        return None, Problem(
            name,
            "invalid_json",
            f"{path.name} is not valid JSON ({error}), so it is not a notebook any more; it was probably cut off or "
            "edited outside Jupyter. Submit the file as Jupyter saved it.",
        )
    try:
        notebook = nbformat.reads(text, as_version=4)
        nbformat.validate(notebook)
    except Exception as error:  # nbformat raises several kinds
        first_line = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        return None, Problem(
            name,
            "invalid_notebook",
            f"{path.name} is JSON but not a valid notebook ({first_line}); submit it as Jupyter saved it.",
        )
    return notebook, None


def _timestamp(folder: Path, files: list[Path]) -> str:
    given = folder / "timestamp.txt"
    if given.is_file() and not given.is_symlink():
        text = given.read_text(errors="replace").strip()[:64]
        try:
            datetime.datetime.fromisoformat(text)
            return text
        except ValueError:
            pass
    newest = max((f.lstat().st_mtime for f in files), default=datetime.datetime.now().timestamp())
    return datetime.datetime.fromtimestamp(newest, tz=datetime.timezone.utc).isoformat()


def _grade_id(cell: nbformat.NotebookNode) -> str | None:
    meta = cell.metadata.get("nbgrader")
    return meta.get("grade_id") if isinstance(meta, dict) else None


def _sanitize(
    notebook: nbformat.NotebookNode, released: nbformat.NotebookNode
) -> tuple[nbformat.NotebookNode, list[str], list[str]]:
    """The submission with only the grading metadata it may carry, and the locked cells it deleted put back.

    nbgrader metadata is dropped from cells the assignment does not have (nbgrader's autograde
    crashes on a forged grade cell without an id) and replaced by the released one on the cells it
    has (a test cell marked ``solution: true`` or ``grade: false`` fails nbgrader's checksum, and
    changed points would count), ours everywhere. Test cells and other locked
    cells of the student version that the submission deleted are inserted again after the cell
    that precedes them in the student version (nbgrader's own ``add_missing_cells`` crashes when
    that cell is not a graded one). Returns the notebook, the restored cells' ids and the ids of the
    cells whose grading metadata was put back.
    """
    known = {_grade_id(c): c.metadata["nbgrader"] for c in released.cells if _grade_id(c) is not None}
    notebook.metadata.pop("course_grading", None)
    reset: list[str] = []
    for cell in notebook.cells:
        cell.metadata.pop("course_grading", None)
        if "nbgrader" not in cell.metadata:
            continue
        if _grade_id(cell) in known:  # flags, points and all as released: a flipped flag breaks nbgrader's checksum
            if any(cell.metadata["nbgrader"].get(key) != known[_grade_id(cell)].get(key) for key in GRADING_FLAGS):
                reset.append(_grade_id(cell))
            cell.metadata["nbgrader"] = nbformat.from_dict(json.loads(json.dumps(known[_grade_id(cell)])))
        else:
            del cell.metadata["nbgrader"]
    present = {_grade_id(c) for c in notebook.cells} - {None}
    restored = []
    for index, cell in enumerate(released.cells):
        meta = cell.metadata.get("nbgrader", {})
        grade_id = meta.get("grade_id")
        if grade_id in present or not meta.get("locked") or meta.get("solution"):
            continue
        previous = [_grade_id(c) for c in released.cells[:index] if _grade_id(c) in present]
        position = 0
        if previous:
            position = 1 + max(i for i, c in enumerate(notebook.cells) if _grade_id(c) == previous[-1])
        notebook.cells.insert(position, nbformat.from_dict(json.loads(json.dumps(cell))))
        present.add(grade_id)
        restored.append(grade_id)
    return notebook, restored, reset


def collect(
    course: Path,
    assignment: str,
    folder: Path,
    notebooks: dict[str, nbformat.NotebookNode],
    student: str | None = None,
) -> CollectReport:
    """Copy ``folder``'s submissions of ``assignment`` into ``course/submitted``, recording problems.

    Args:
        course: the nbgrader course directory.
        assignment: the assignment's name.
        folder: one sub-folder per student id.
        notebooks: the assignment's notebook names (without ``.ipynb``), each with its student
            version (the cells a submission must have).
        student: collect only this student (a re-submission); default all.

    Returns:
        What was collected and what was wrong, per student.
    """
    report = CollectReport()
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder: pass the folder that holds one sub-folder per student.")
    for entry in sorted(folder.iterdir()):
        if student is not None and entry.name != student:
            continue
        if not STUDENT_ID.match(entry.name) or entry.is_symlink() or not entry.is_dir():
            report.skipped.append(entry.name)
            continue
        submission = StudentSubmission(entry.name)
        target = course / "submitted" / entry.name / assignment
        if target.exists():
            shutil.rmtree(target)
        present = sorted(p for p in entry.iterdir() if p.suffix == ".ipynb")
        good: list[tuple[str, nbformat.NotebookNode]] = []
        for name in notebooks:
            path = entry / f"{name}.ipynb"
            if not path.exists() and not path.is_symlink():
                others = [p.name for p in present if p.stem not in notebooks]
                if others:
                    found = ", ".join(others)
                    submission.problems.append(
                        Problem(
                            name,
                            "renamed",
                            f"No notebook named {name}.ipynb was submitted; found {found} instead. The grader only "
                            f"grades {name}.ipynb: rename the file and ask for it to be graded again.",
                        )
                    )
                else:
                    submission.problems.append(
                        Problem(name, "missing", f"No notebook named {name}.ipynb was submitted.")
                    )
                continue
            notebook, problem = _check_notebook(path, name)
            if problem:
                submission.problems.append(problem)
            else:
                notebook, restored, reset = _sanitize(notebook, notebooks[name])
                good.append((name, notebook))
                if reset:
                    submission.notices.append(
                        Problem(
                            name,
                            "restored_metadata",
                            f"{name}.ipynb had changed grading metadata on {len(reset)} cell(s) ({', '.join(reset)}); "
                            "it was reset to the assignment's and the cells were graded.",
                        )
                    )
                if restored:
                    submission.notices.append(
                        Problem(
                            name,
                            "restored_cells",
                            f"{name}.ipynb lacked {len(restored)} read-only cell(s) of the assignment "
                            f"({', '.join(restored)}); they were put back and graded.",
                        )
                    )
        if good:
            target.mkdir(parents=True)
            for name, notebook in good:
                nbformat.write(notebook, target / f"{name}.ipynb")
                submission.collected.append(name)
            (target / "timestamp.txt").write_text(_timestamp(entry, [entry / f"{name}.ipynb" for name, _ in good]))
        notes = notes_path(course, assignment, entry.name)
        notes.parent.mkdir(parents=True, exist_ok=True)
        notes.write_text(
            json.dumps(
                {
                    "problems": [asdict(p) for p in submission.problems],
                    "notices": [asdict(p) for p in submission.notices],
                },
                indent=1,
            )
        )
        report.students.append(submission)
    return report
