"""The course's exceptions: each one names the problem and what to do about it.

Students should never have to read a stack trace from deep inside torch to learn that a file is
empty or a sample rate is wrong, so the library checks its inputs and raises these instead.
"""

from __future__ import annotations

import errno
from pathlib import Path


class CourseError(Exception):
    """Base class of every error the course raises on purpose."""


class AudioInputError(CourseError, ValueError):
    """An audio file or tensor that cannot be used as given (missing, empty, corrupt, NaN, wrong rate)."""


class ConfigError(CourseError, ValueError):
    """An unknown scale, device or option name."""


class CheckpointError(CourseError, RuntimeError):
    """A checkpoint that does not fit the model, or a file that was cut short."""


class DiskFullError(CourseError, OSError):
    """The disk (or the user's quota) filled up while writing a file; the previous file is intact.

    An ``OSError`` with ``errno`` ENOSPC (or EDQUOT), so code that catches ``OSError`` still catches it;
    ``path`` is the file that was being written.
    """

    def __init__(self, message: str, path: Path | str, code: int = errno.ENOSPC):
        super().__init__(code, message)
        self.path = path

    def __str__(self) -> str:
        return str(self.strerror)
