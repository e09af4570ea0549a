"""Extracting what was downloaded, atomically: archives, staging folders, and one split of a remote zip.

Archives are unpacked into a hidden staging folder (``$COURSE_DATA/.<name>.staging``) and only then
moved into ``$COURSE_DATA/<name>`` (:func:`publish`), so a loader never reads a partial or corrupt
dataset. Paths that would leave the folder (``../``, absolute paths, unsafe links) are refused.

For MAESTRO's 101 GB zip, one split can be taken alone: :class:`RemoteZip` lets :mod:`zipfile` read
the zip's directory and the split's members through HTTP range requests, and every member is checked
against the CRC-32 stored in the zip as it is read (the whole archive's sha256 cannot be checked on
a part of it).

Notebook: data_scripts/README.md.
"""

from __future__ import annotations

import csv
import dataclasses
import http.client
import io
import os
import shutil
import tarfile
import time
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from course_lib.data.download import (
    CHUNK,
    DeadLinkError,
    DownloadError,
    Log,
    RemoteFile,
    RetryableError,
    content_range_total,
    network_reason,
    open_url,
)


@dataclasses.dataclass(frozen=True)
class ZipSelection:
    """Members of a remote zip chosen by a column of an index CSV (MAESTRO: ``split == "test"``).

    ``index`` is the CSV's path inside the dataset folder (one of the subset's files); the members are
    ``prefix + row[c]`` for each ``c`` in ``path_columns`` of the rows where ``row[column] == value``.
    """

    archive: RemoteFile
    index: str
    column: str
    value: str
    path_columns: tuple[str, ...]
    prefix: str = ""


def _check_member(name: str, archive: Path) -> None:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
        raise DownloadError(f"{archive.name} holds an unsafe path {name!r}; refusing to extract it. Delete {archive}.")


def extract_archive(archive: Path, into: Path, progress: bool = True) -> None:
    """Unpack a zip or tar(.gz/.bz2/.xz) archive into ``into``, refusing paths that leave it.

    Raises:
        DownloadError: for a corrupt or unsafe archive, or a disk that is full.
    """
    into.mkdir(parents=True, exist_ok=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as bundle:
                for info in tqdm(bundle.infolist(), desc=f"extracting {archive.name}", disable=not progress):
                    _check_member(info.filename, archive)
                    bundle.extract(info, into)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as bundle:
                for member in tqdm(bundle, desc=f"extracting {archive.name}", unit=" files", disable=not progress):
                    _check_member(member.name, archive)
                    bundle.extract(member, into, filter="data")
        else:
            raise DownloadError(f"{archive} is neither a zip nor a tar archive: delete it and fetch again.")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error) as error:
        raise DownloadError(
            f"{archive.name} is corrupt ({error}): delete {archive} and fetch again; if it was checked against "
            "a published checksum, report the problem to the dataset's authors."
        ) from None
    except OSError as error:
        raise DownloadError(f"Cannot extract {archive.name} into {into} ({error}): is the disk full?") from None


def publish(staging: Path, destination: Path) -> None:
    """Move everything in ``staging`` into ``destination`` (each entry renamed in one step), then remove it.

    A folder that is new moves in whole; one that exists already is merged into, file by file, so
    fetching the validation split keeps the test split fetched before.
    """
    destination.mkdir(parents=True, exist_ok=True)
    for entry in sorted(staging.iterdir()):
        target = destination / entry.name
        if entry.is_dir() and target.is_dir():
            publish(entry, target)
            continue
        if target.is_dir():
            shutil.rmtree(target)
        elif entry.is_dir() and target.exists():
            target.unlink()
        os.replace(entry, target)  # file over file: atomic
    staging.rmdir()


class RemoteZip(io.RawIOBase):
    """A remote file read through HTTP range requests, seekable, so :mod:`zipfile` can read a few members.

    A read continues the open response when it follows the previous one, and opens a new range
    request after a seek; a dropped connection is reopened where it stopped, ``retries`` times.
    """

    def __init__(self, url: str, timeout: float = 30.0, retries: int = 4, backoff: float = 2.0) -> None:
        self.url, self.timeout, self.retries, self.backoff = url, timeout, retries, backoff
        self.position, self._response, self._response_position = 0, None, -1
        with self._call(lambda: open_url(url, timeout, 0, 0)) as probe:
            self.size = content_range_total(probe.headers.get("Content-Range")) if probe.status == 206 else None
        if self.size is None:
            raise DeadLinkError("the server does not answer range requests, so one split cannot be taken alone")

    def _call(self, action: Callable):
        for attempt in range(self.retries + 1):
            try:
                return action()
            except RetryableError:
                if attempt == self.retries:
                    raise
                self._drop()
                time.sleep(self.backoff * 2**attempt)

    def _drop(self) -> None:
        if self._response is not None:
            self._response.close()
        self._response, self._response_position = None, -1

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(base + offset, 0)
        return self.position

    def readinto(self, buffer) -> int:
        if self.position >= self.size:
            return 0

        def read() -> int:
            if self._response is None or self._response_position != self.position:
                self._drop()
                self._response = open_url(self.url, self.timeout, self.position, self.size - 1)
                self._response_position = self.position
                if self._response.status != 206:  # the whole file from byte 0: not what was asked for
                    raise DeadLinkError(f"the server ignored a range request (HTTP {self._response.status})")
            try:
                count = self._response.readinto(buffer)
            except (OSError, http.client.HTTPException) as error:
                raise RetryableError(f"connection lost at byte {self.position:,} ({network_reason(error)})") from None
            if not count:
                raise RetryableError(f"connection closed at byte {self.position:,}")
            return count

        count = self._call(read)
        self.position += count
        self._response_position = self.position
        return count

    def close(self) -> None:
        self._drop()
        super().close()


def fetch_zip_members(
    selection: ZipSelection,
    staging: Path,
    retries: int = 4,
    backoff: float = 2.0,
    timeout: float = 30.0,
    progress: bool = True,
    log: Log = print,
) -> int:
    """Extract the members that ``selection`` picks from its remote zip into ``staging``.

    Members already in ``staging`` with the right size are skipped (an interrupted fetch resumes
    member by member); each member is checked against its CRC-32 as it is read.

    Returns:
        The number of members extracted now.

    Raises:
        DownloadError: when no URL answers range requests, a member is missing or fails its CRC.
    """
    with open(staging / selection.index, newline="", encoding="utf-8") as handle:
        wanted = {
            selection.prefix + row[column]
            for row in csv.DictReader(handle)
            if row[selection.column] == selection.value
            for column in selection.path_columns
        }
    failures, remote = [], None
    for url in selection.archive.urls:
        try:
            remote = RemoteZip(url, timeout, retries, backoff)
            break
        except (RetryableError, DeadLinkError) as error:
            failures.append(f"  - {url}: {error}")
    if remote is None:
        raise DownloadError(
            f"Could not read {selection.archive.filename} remotely. Tried:\n" + "\n".join(failures) + "\n"
            "What to do: check your connection and run the same command again, or fetch the whole archive "
            "with --subset full."
        )
    log(f"Reading the members of {selection.column} {selection.value!r} from {remote.url}")
    try:
        with remote, zipfile.ZipFile(io.BufferedReader(remote, buffer_size=CHUNK)) as bundle:
            members = [info for info in bundle.infolist() if info.filename in wanted]
            absent = wanted - {info.filename for info in members}
            if absent:
                raise DownloadError(f"{len(absent)} files of the index are not in the archive, e.g. {min(absent)}.")
            todo = [
                i
                for i in members
                if not (staging / i.filename).is_file() or (staging / i.filename).stat().st_size != i.file_size
            ]
            bar = tqdm(total=sum(i.file_size for i in todo), unit="B", unit_scale=True, unit_divisor=1024,
                       desc=selection.archive.filename, disable=not progress, dynamic_ncols=True)  # fmt: skip
            with bar:
                for info in todo:
                    _check_member(info.filename, Path(selection.archive.filename))
                    target = staging / info.filename
                    partial = target.with_name(f".{target.name}.part")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with bundle.open(info) as source, open(partial, "wb") as out:
                        while chunk := source.read(CHUNK):
                            out.write(chunk)
                            bar.update(len(chunk))
                    os.replace(partial, target)
    except (RetryableError, DeadLinkError) as error:
        raise DownloadError(
            f"Lost {remote.url} ({error}). Run the same command again: members already fetched are kept."
        ) from None
    except zipfile.BadZipFile as error:
        for leftover in staging.rglob(".*.part"):
            leftover.unlink()
        raise DownloadError(f"A member of {selection.archive.filename} is corrupt ({error}): run again.") from None
    log(f"{len(todo)} members extracted, {len(members) - len(todo)} were already here.")
    return len(todo)
