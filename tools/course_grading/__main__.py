"""``python -m course_grading ...``: the same commands as ``course-grade ...`` (for ``sudo python3 -m``)."""

import sys

from course_grading.cli import main

sys.exit(main())
