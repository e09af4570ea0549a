"""The course's exceptions: each one names the problem and what to do about it.

Students should never have to read a stack trace from deep inside torch to learn that a file is
empty or a sample rate is wrong, so the library checks its inputs and raises these instead.
"""

from __future__ import annotations


class CourseError(Exception):
    """Base class of every error the course raises on purpose."""


class AudioInputError(CourseError, ValueError):
    """An audio file or tensor that cannot be used as given (missing, empty, corrupt, NaN, wrong rate)."""


class ConfigError(CourseError, ValueError):
    """An unknown scale, device or option name."""


class CheckpointError(CourseError, RuntimeError):
    """A checkpoint that does not fit the model, or a file that was cut short."""
