"""nbgrader's configuration for the course's assignments (read by `nbgrader` run in this folder).

Run the grading through `course-grade ...` (or `python assignments/grade.py ...`; see INSTRUCTORS.md):
the installed grading package (`course_grading`) runs the canary first. Plain `nbgrader autograde`
uses the same sandboxed preprocessors below but skips the canary.
"""

c = get_config()  # noqa: F821 (defined by nbgrader's config loader)

c.CourseDirectory.course_id = "audio-music-generation"

# Student versions: solutions become this stub, hidden tests are removed.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# A test cell the submission deleted is put back (and graded) by `grade.py collect`: nbgrader's own
# OverwriteCells.add_missing_cells crashes when the cell before it is a read-only, ungraded one.
c.OverwriteCells.add_missing_cells = False

# Autograde: the notebook runs in the sandbox, each test cell's hidden part runs here, outside it.
c.Autograde.autograde_preprocessors = [
    "course_grading.execute.SandboxedExecute",
    "nbgrader.preprocessors.LimitOutput",
    "course_grading.execute.SaveVerdicts",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]
c.SandboxedExecute.cell_timeout = 120  # seconds per cell, and per call a hidden check makes
c.SandboxedExecute.time_limit = 600  # seconds per notebook, hidden checks included
c.SandboxedExecute.time_limits = {}  # per assignment, e.g. {"04_diffusion": 900}
c.SandboxedExecute.memory_mib = 6144
c.LimitOutput.max_lines = 200
c.LimitOutput.max_traceback = 40

# Feedback: the public part of the test cells only, no HTML or script from the submission, a report on top.
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "course_grading.feedback.CleanFeedback",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]

# The gradebook CSV: one row per student and question.
c.ExportApp.plugin_class = "course_grading.export.QuestionCsvExport"
