"""The gradebook as a CSV with one row per student and question (an nbgrader export plugin).

nbgrader's own CSV has one row per student and assignment. This one (``nbgrader export`` with
``ExportApp.plugin_class`` set to :class:`QuestionCsvExport`) writes::

    student,assignment,notebook,question,points,max_points,total,max_total,note

``total``/``max_total`` are the student's points in the whole assignment (repeated on each of its
rows, late penalty subtracted); ``note`` says why a question got nothing when the reason is not the
answer itself: the notebook was missing or not valid (from ``collect``), or the run was cut short
(from the autograded notebook's events), else the hidden check's message.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.plugins import ExportPlugin

from course_grading.execute import METADATA_KEY
from course_grading.submissions import read_problems

COLUMNS = ["student", "assignment", "notebook", "question", "points", "max_points", "total", "max_total", "note"]


def _verdicts(course: Path, student: str, assignment: str, notebook: str) -> tuple[dict, list]:
    path = course / "autograded" / student / assignment / f"{notebook}.ipynb"
    if not path.is_file():
        return {}, []
    metadata = json.loads(path.read_text()).get("metadata", {}).get(METADATA_KEY, {})
    return metadata.get("verdicts", {}), metadata.get("events", [])


class QuestionCsvExport(ExportPlugin):
    """One CSV row per (student, assignment, question)."""

    def export(self, gradebook: Gradebook) -> None:
        destination = Path(self.to or "gradebook.csv")
        course = Path(self.parent.coursedir.root) if self.parent is not None else Path.cwd()
        rows = []
        for assignment in sorted(gradebook.assignments, key=lambda a: a.name):
            if self.assignment and assignment.name not in self.assignment:
                continue
            for student in sorted(gradebook.students, key=lambda s: s.id):
                if self.student and student.id not in self.student:
                    continue
                rows += self._student_rows(gradebook, course, assignment, student.id)
        destination.parent.mkdir(parents=True, exist_ok=True)
        with destination.open("w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(COLUMNS)
            writer.writerows(rows)
        self.log.info("Wrote %d rows to %s", len(rows), destination)

    def _student_rows(self, gradebook: Gradebook, course: Path, assignment, student: str) -> list[list]:
        try:
            submission = gradebook.find_submission(assignment.name, student)
        except MissingEntry:
            submission = None
        problems = {p.notebook: p for p in read_problems(course, assignment.name, student)}
        if submission is None and not problems:
            return []  # this student never handed this assignment in
        total = (submission.score - (submission.late_submission_penalty or 0)) if submission is not None else 0.0
        rows = []
        for notebook in sorted(assignment.notebooks, key=lambda n: n.name):
            verdicts, events = _verdicts(course, student, assignment.name, notebook.name)
            cut_short = [e["message"] for e in events if e.get("kind") in ("time_limit", "kernel_lost", "grader_error")]
            for cell in sorted(notebook.grade_cells, key=lambda c: c.name):
                points = 0.0
                if submission is not None:
                    try:
                        points = gradebook.find_grade(cell.name, notebook.name, assignment.name, student).score
                    except MissingEntry:
                        points = 0.0
                note = verdicts.get(cell.name, {}).get("message", "")
                if notebook.name in problems:
                    note = f"{problems[notebook.name].kind}: {problems[notebook.name].message}"
                elif (not note or note.startswith("not checked")) and cut_short:
                    note = cut_short[0]
                rows.append(
                    [student, assignment.name, notebook.name, cell.name, f"{points:g}", f"{cell.max_score:g}"]
                    + [f"{total:g}", f"{assignment.max_score:g}", note[:300]]
                )
        return rows
