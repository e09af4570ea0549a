"""Downloading one file: resumable HTTP with retries and back-off, mirrors, and published checksums.

A file is downloaded to ``<folder>/<file>.part`` with HTTP range requests, so a connection cut
mid-file, a retry or a second run resumes where it stopped; pauses between tries double
(``backoff · 2^k`` seconds); a dead link (404, 403, a file of another size) moves on to the next
mirror. When the bytes are in, the size and the published md5/sha1/sha256 are checked (the size
the server announced, where nothing is published), and only then is ``.part`` renamed away. A
file that fails is deleted, and the error lists every URL tried with its reason and what to do.

Only the standard library speaks HTTP (urllib); tqdm draws the progress bar (bytes, rate, time left).

Notebook: data_scripts/README.md (``python data_scripts/fetch.py`` runs it; see
:mod:`course_lib.data.manifests` for a whole dataset, :mod:`course_lib.data.archives` for extraction).
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tqdm.auto import tqdm

from course_lib.errors import CourseError

CHUNK = 1 << 20  # bytes per read
USER_AGENT = "course-lib-fetch/0.1 (Python urllib)"
RETRY_STATUSES = {408, 425, 429, 500, 502, 503, 504}  # worth trying again; other HTTP errors mean a dead link
ALGORITHMS = ("md5", "sha1", "sha256")

Log = Callable[[str], None]


class DownloadError(CourseError, RuntimeError):
    """A download or extraction that failed: the message names the URL tried and what to do next."""


@dataclasses.dataclass(frozen=True)
class Checksum:
    """A digest as the dataset's authors published it (``source`` says where)."""

    algorithm: str
    value: str
    source: str = ""


@dataclasses.dataclass(frozen=True)
class RemoteFile:
    """One file to download: URLs in order (original, then mirrors), size and checksum when published.

    ``extract`` archives are unpacked into the dataset folder; other files are kept as they are,
    at ``target`` inside it (default: their file name).
    """

    filename: str
    urls: tuple[str, ...]
    size: int | None = None
    approx_size: str = ""
    checksum: Checksum | None = None
    checksum_note: str = ""
    extract: bool = True
    target: str = ""


class RetryableError(Exception):
    """A failure worth trying again (the network), after a pause; callers turn it into a DownloadError."""


class DeadLinkError(Exception):
    """A URL that will not work however often it is tried (404, 403, a different file): try the next one."""

    def __init__(self, message: str, status: int | None = None, total: int | None = None) -> None:
        super().__init__(message)
        self.status, self.total = status, total  # the HTTP status; the file size if the server said it


def network_reason(error: BaseException) -> str:
    """A network error in words a student can act on."""
    reason = getattr(error, "reason", error)
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused (the server is down, or you are offline)"
    if isinstance(reason, socket.gaierror):
        return "the host name could not be resolved (you are offline, or the host is gone)"
    if isinstance(reason, TimeoutError):
        return "no answer in time"
    return str(reason) or type(reason).__name__


def content_range_total(content_range: str | None) -> int | None:
    """The full size from a ``Content-Range: bytes 100-199/1000`` header (``None`` if unknown)."""
    if not content_range or "/" not in content_range:
        return None
    total = content_range.rsplit("/", 1)[1].strip()
    return int(total) if total.isdigit() else None


def open_url(url: str, timeout: float, start: int = 0, stop: int | None = None) -> http.client.HTTPResponse:
    """GET ``url`` from byte ``start`` (to ``stop`` inclusive), raising :class:`RetryableError` or :class:`DeadLinkError`."""
    headers = {"User-Agent": USER_AGENT}
    if start or stop is not None:
        headers["Range"] = f"bytes={start}-{'' if stop is None else stop}"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as error:
        error.close()
        if error.code in RETRY_STATUSES:
            raise RetryableError(f"HTTP {error.code} {error.reason}") from None
        total = content_range_total(error.headers.get("Content-Range"))
        raise DeadLinkError(f"HTTP {error.code} {error.reason}", error.code, total) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        raise RetryableError(network_reason(error)) from None


def _download_once(url: str, part: Path, size: int | None, timeout: float, progress: bool) -> int | None:
    """Download (the rest of) ``url`` into ``part``; returns the full size if the server said it."""
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have >= size:
        return size
    try:
        response = open_url(url, timeout, have)
    except DeadLinkError as error:
        if not have or error.status != 416:
            raise
        if error.total == have:  # "range not satisfiable": nothing left to send, the part is whole
            return have
        part.unlink()  # longer than the server's file: it cannot be the same file
        raise RetryableError("the partial download does not fit the server's file; starting over") from None
    with response:
        if have and response.status == 206:
            total, mode = content_range_total(response.headers.get("Content-Range")), "ab"
        else:  # a fresh start, or a server that ignored the Range header
            length = response.headers.get("Content-Length")
            have, mode, total = 0, "wb", int(length) if length and length.isdigit() else None
        if size is not None and total is not None and total != size:
            raise DeadLinkError(
                f"the server's file is {total:,} bytes but the manifest says {size:,} (it changed upstream)"
            )
        written = have
        bar = tqdm(
            total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
            desc=part.name.removesuffix(".part"), disable=not progress, dynamic_ncols=True,
        )  # fmt: skip
        with bar, open(part, mode) as out:
            while True:
                try:
                    chunk = response.read(CHUNK)
                except (OSError, http.client.HTTPException) as error:
                    raise RetryableError(f"connection lost after {written:,} bytes ({network_reason(error)})") from None
                if not chunk:
                    break
                out.write(chunk)
                written += len(chunk)
                bar.update(len(chunk))
    if total is not None and written < total:
        raise RetryableError(f"connection closed after {written:,} of {total:,} bytes")
    return total


def file_digest(path: Path, algorithm: str, progress: bool = False) -> str:
    """Hex digest of a file, read in chunks (with a progress bar for big files)."""
    digest = hashlib.new(algorithm)
    size = path.stat().st_size
    bar = tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=f"checking {algorithm}",
               disable=not progress or size < 256 * CHUNK, dynamic_ncols=True)  # fmt: skip
    with bar, open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def _problem(path: Path, remote: RemoteFile, server_size: int | None, progress: bool) -> str | None:
    """Why ``path`` is not the file the manifest describes, or ``None`` when it is."""
    actual = path.stat().st_size
    expected = remote.size if remote.size is not None else server_size
    if expected is not None and actual != expected:
        return f"it is {actual:,} bytes, expected {expected:,}"
    if remote.checksum is not None:
        digest = file_digest(path, remote.checksum.algorithm, progress)
        if digest != remote.checksum.value:
            return f"checksum mismatch: {remote.checksum.algorithm} {digest}, published {remote.checksum.value}"
    return None


def download_file(
    remote: RemoteFile,
    folder: Path,
    page: str = "",
    retries: int = 4,
    backoff: float = 2.0,
    timeout: float = 30.0,
    progress: bool = True,
    log: Log = print,
) -> Path:
    """Download ``remote`` into ``folder``, resuming a ``.part`` file, checked against the manifest.

    Each URL is tried ``retries + 1`` times with pauses of ``backoff · 2^k`` seconds (a connection
    cut mid-file resumes with a Range request); a dead link (404, ...) or a file that fails its
    checks moves on to the next URL. A file already at ``folder/filename`` is checked and used.

    Returns:
        The checked file, ``folder/filename``.

    Raises:
        DownloadError: every URL failed; the message lists each URL with its reason and what to do.
    """
    folder.mkdir(parents=True, exist_ok=True)
    final, part = folder / remote.filename, folder / f"{remote.filename}.part"
    if final.exists():
        problem = _problem(final, remote, None, progress)
        if problem is None:
            log(f"{remote.filename}: already here and checked ({final}).")
            return final
        log(f"{final} is not the right file ({problem}); downloading it again.")
        final.unlink()
    failures = []
    for url in remote.urls:
        log(f"Downloading {url}")
        for attempt in range(retries + 1):
            try:
                server_size = _download_once(url, part, remote.size, timeout, progress)
            except RetryableError as error:
                if attempt == retries:
                    failures.append(f"{url}: {error} (gave up after {retries + 1} tries)")
                else:
                    log(f"  {error}; trying again in {backoff * 2**attempt:g} s (the download resumes).")
                    time.sleep(backoff * 2**attempt)
                continue
            except DeadLinkError as error:
                failures.append(f"{url}: {error}")
                log(f"  {error}: trying the next URL." if url != remote.urls[-1] else f"  {error}.")
                break
            except OSError as error:  # writing, not reading: a full disk, a read-only folder
                raise DownloadError(f"Cannot write {part} ({error}): free some disk space or use --dest.") from None
            problem = _problem(part, remote, server_size, progress)
            if problem is None:
                os.replace(part, final)
                return final
            part.unlink()
            failures.append(f"{url}: {problem}; the file was deleted")
            log(f"  {problem}; the file was deleted.")
            break
    tried = "\n".join(f"  - {failure}" for failure in failures)
    raise DownloadError(
        f"Could not download {remote.filename}. Tried:\n{tried}\nWhat to do: check your connection (and "
        "HTTPS_PROXY if you are behind a proxy) and run the same command again: it resumes where it stopped. "
        f"Or download {remote.filename} by hand (from {page or 'the dataset page'}, or a link above), put it "
        f"at {final}, and run the same command again: it checks the file and goes on."
    )
