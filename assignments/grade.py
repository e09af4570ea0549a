#!/usr/bin/env python3
"""``course-grade`` under its old name: ``python assignments/grade.py ...`` grades this folder (see INSTRUCTORS.md)."""

import sys
from pathlib import Path

from course_grading.cli import main

if __name__ == "__main__":
    sys.exit(main(["--course", str(Path(__file__).resolve().parent), *sys.argv[1:]]))
