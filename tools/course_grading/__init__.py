"""Grading the course's assignments with nbgrader, hardened: see assignments/INSTRUCTORS.md.

- ``cli``: the instructor's commands (release, collect, autograde, export, check).
- ``submissions``: checked collection of a folder of submissions.
- ``sandbox`` and ``kernel``: the student's kernel as an unprivileged user in its own file-system
  view, without network, under resource and time limits.
- ``values``: plain data across the sandbox boundary (no pickle).
- ``hidden`` and ``execute``: hidden checks run in the grader, outside the student's kernel; the
  nbgrader preprocessors that run the notebook and record the verdicts.
- ``feedback`` and ``export``: clean feedback HTML, one CSV row per question.
"""
