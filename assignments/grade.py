#!/usr/bin/env python3
"""The instructor's grading commands; see INSTRUCTORS.md (this file only finds tools/course_grading)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

from course_grading.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
