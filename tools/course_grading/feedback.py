"""Feedback students can read: a report of the run on top, no hidden test code, nothing that can script.

nbgrader's feedback HTML is the autograded notebook, so it would show each test cell's hidden
part, and whatever HTML or JavaScript a submission displayed. :class:`CleanFeedback` (a
``generate_feedback`` preprocessor, after ``GetGrades``) puts back the public part of every test
cell, keeps only text and PNG/JPEG images in outputs (a submission's ``text/html`` could run script
in the instructor's browser), escapes HTML in markdown, and adds a first cell with the score, each
question's verdict (the assertion's message, never the check's code) and the events of the run:
a timeout, a restart, output that was cut, an error, replaced test functions.

:func:`write_problem_page` writes the page for a notebook that could not be graded at all (missing,
renamed, not valid JSON): the problem, the fix, and 0 points.
"""

from __future__ import annotations

import html
from pathlib import Path

import nbformat
from nbgrader import utils
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.preprocessors import NbGraderPreprocessor

from course_grading.execute import METADATA_KEY
from course_grading.hidden import split_hidden
from course_grading.submissions import read_problems

SAFE_MIME_TYPES = ("text/plain", "image/png", "image/jpeg")


def _escape(text: object) -> str:
    return html.escape(str(text), quote=False).replace("|", "&#124;").replace("\n", " ")


class CleanFeedback(NbGraderPreprocessor):
    """Make the autograded notebook fit to hand back (see the module docstring)."""

    def preprocess(self, nb: nbformat.NotebookNode, resources: dict) -> tuple[nbformat.NotebookNode, dict]:
        info = resources["nbgrader"]
        public_sources = self._public_sources(info)
        report = nb.metadata.get(METADATA_KEY, {})
        rows = []
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                cell.source = cell.source.replace("<", "&lt;").replace(">", "&gt;")
                cell.pop("attachments", None)
            elif cell.cell_type == "raw":
                cell.metadata = {}
            else:
                cell.outputs = [_safe_output(output) for output in cell.outputs if _safe_output(output) is not None]
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if grade_id in public_sources:
                cell.source = public_sources[grade_id]
            if utils.is_grade(cell):
                verdict = report.get("verdicts", {}).get(grade_id, {})
                score = cell.metadata.nbgrader.get("score")
                points = cell.metadata.nbgrader.get("points")
                rows.append((grade_id, score, points, verdict.get("message", "")))
        notices = []
        database = str(info.get("db_url", ""))
        if database.startswith("sqlite:///"):
            course = Path(database[len("sqlite:///") :]).parent
            notices = [n.message for n in read_problems(course, info["assignment"], info["student"], "notices")]
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(_report_markdown(info, rows, report, notices)))
        return nb, resources

    def _public_sources(self, info: dict) -> dict[str, str]:
        sources = {}
        with Gradebook(info["db_url"]) as gradebook:
            notebook = gradebook.find_notebook(info["notebook"], info["assignment"])
            for grade_cell in notebook.grade_cells:
                try:
                    source = gradebook.find_source_cell(grade_cell.name, info["notebook"], info["assignment"]).source
                except MissingEntry:
                    continue
                try:
                    sources[grade_cell.name] = split_hidden(source)[0]
                except ValueError:
                    sources[grade_cell.name] = ""
        return sources


def _safe_output(output: nbformat.NotebookNode) -> nbformat.NotebookNode | None:
    if output.get("output_type") not in ("display_data", "execute_result"):
        return output
    data = {key: value for key, value in output.get("data", {}).items() if key in SAFE_MIME_TYPES}
    if not data:
        return None
    output["data"] = data
    output["metadata"] = {}
    return output


def _points(value: object) -> str:
    return "–" if value is None else f"{float(value):g}"


def _report_markdown(info: dict, rows: list[tuple], report: dict, notices: list[str] | None = None) -> str:
    score, max_score = info.get("score"), info.get("max_score")
    lines = [
        f"## Grading report: {_escape(info['assignment'])} / {_escape(info['notebook'])}",
        "",
        f"**Score: {_points(score)} of {_points(max_score)} points.**"
        + (f" (late penalty: {_points(info['late_penalty'])})" if info.get("late_penalty") else ""),
        "",
        "Each question's hidden checks ran in the grader, outside your notebook, on values taken from it.",
        "",
        '<table style="border-collapse: collapse;">',
        "<tr><th style='text-align: left; padding: 2px 12px 2px 0;'>question</th>"
        "<th style='text-align: left; padding: 2px 12px 2px 0;'>points</th><th style='text-align: left;'>result</th></tr>",
    ]
    for grade_id, score_value, points, message in rows:
        lines.append(
            f"<tr><td style='padding: 2px 12px 2px 0;'>{_escape(grade_id)}</td>"
            f"<td style='padding: 2px 12px 2px 0;'>{_points(score_value)} / {_points(points)}</td><td>{_escape(message)}</td></tr>"
        )
    lines.append("</table>")
    events = [str(notice) for notice in notices or []] + [str(e.get("message", "")) for e in report.get("events", [])]
    if events:
        lines += ["", "**What happened while grading:**", ""]
        lines += [f"- {_escape(event)}" for event in events]
    return "\n".join(lines)


def write_problem_page(
    path: Path, student: str, assignment: str, notebook: str, message: str, max_score: float
) -> Path:
    """The feedback page of a notebook that could not be graded: what was wrong, the fix, 0 points."""
    body = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Feedback: {html.escape(assignment)} / {html.escape(notebook)}</title></head>
<body style="font-family: sans-serif; max-width: 50em; margin: 2em auto;">
<h2>Grading report: {html.escape(assignment)} / {html.escape(notebook)}</h2>
<p>Student: {html.escape(student)}</p>
<p><strong>Score: 0 of {max_score:g} points.</strong> Your notebook could not be graded:</p>
<p>{html.escape(message)}</p>
<p>Nothing in it was run. Fix the problem and ask your instructor to grade it again.</p>
</body></html>
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    return path
