"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Used for checkpoints, shipped weights and saved audio (downloads have their own ``.part`` files).
Whatever goes wrong while writing (a full disk, an exception in ``write``, Ctrl-C), the previous file
is left as it was and the hidden temporary file is removed. A full disk, which students meet when
checkpoints pile up, becomes a :class:`DiskFullError` that names the file asked for and the free space.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from course_lib.errors import DiskFullError

# torch.save raises RuntimeError("[enforce fail at inline_container.cc:...] ... file write failed") (or
# "unexpected pos ...") from its zip writer when a write comes up short, which is what a full disk does
TORCH_WRITE_FAILED = ("file write failed", "unexpected pos")


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _disk_full_code(error: BaseException) -> int | None:
    """ENOSPC/EDQUOT if ``error`` (or an exception it was raised from) says the disk is full, else None."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return error.errno
        if isinstance(error, RuntimeError) and "inline_container" in str(error):
            if any(sign in str(error) for sign in TORCH_WRITE_FAILED):
                return errno.ENOSPC
        error = error.__cause__ or error.__context__
    return None


def _free_space(folder: Path) -> str:
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return "free space unknown"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if free >= size:
            return f"{free / size:.1f} {unit} free"
    return f"{free} bytes free"


def _disk_full(path: Path, code: int, existed: bool) -> DiskFullError:
    where = "your disk quota is used up" if code == errno.EDQUOT else "the disk is full"
    kept = f"The previous {path.name} is unchanged." if existed else "Nothing was written."
    return DiskFullError(
        f"Could not write {path}: {where} ({_free_space(path.parent)} in {path.parent}). {kept} "
        "Fix: free some space (old checkpoints, caches under $COURSE_DATA, ~/.cache), or write to "
        "another folder, then run again.",
        path,
        code,
    )


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(file)`` on a temporary file next to ``path``, fsync it, then rename it to ``path``.

    The temporary file is in the same folder, so the rename is atomic; it gets the permissions an
    ordinary new file would get (``mkstemp`` alone would leave it readable by its owner only).

    Raises:
        DiskFullError: the disk filled up (``OSError`` ENOSPC/EDQUOT, or torch.save's "file write
            failed"); the previous file at ``path`` is intact and no temporary file is left.
        Anything ``write`` raises (KeyboardInterrupt included), after removing the temporary file.
    """
    path = Path(path)
    existed = path.exists()
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())  # the bytes are on disk before the rename makes them visible
        os.chmod(tmp_name, 0o666 & ~_current_umask())
        os.replace(tmp_name, path)
    except BaseException as error:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:  # already renamed, or gone
                pass
        code = _disk_full_code(error)
        if code is not None:
            raise _disk_full(path, code, existed) from error
        raise
    if os.name == "posix":  # make the rename itself durable (directories cannot be opened on Windows)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path
