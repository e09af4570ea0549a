"""Fetching a dataset from its manifest: license first, then download, check, extract, summarize.

A manifest (``data_scripts/manifests/<name>.json``) says where a dataset lives: for each subset or
split, the files with their URLs (mirrors after the original), size, published checksum, license
and citation. :func:`fetch` then

1. prints the license, terms and citation, and stops unless ``accept_license`` where the terms ask
   for it;
2. downloads each file (:func:`course_lib.data.download.download_file`: resumable, retried, checked
   against the published checksum) to ``$COURSE_DATA/downloads``;
3. extracts it into ``$COURSE_DATA/.<name>.staging`` and moves the result into ``$COURSE_DATA/<name>``
   (:mod:`course_lib.data.archives`), or reads one split out of a remote zip;
4. prints what is on disk: files, hours of audio, bytes.

Notebook: data_scripts/README.md (the command line is ``python data_scripts/fetch.py``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import soundfile as sf

from course_lib.config import data_dir
from course_lib.data.archives import ZipSelection, extract_archive, fetch_zip_members, publish
from course_lib.data.download import ALGORITHMS, Checksum, DownloadError, Log, RemoteFile, download_file
from course_lib.data.musiccaps import download_clips
from course_lib.errors import ConfigError

AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".au", ".aif", ".aiff"}
MIDI_SUFFIXES = {".mid", ".midi"}


class LicenseNotAcceptedError(DownloadError):
    """A dataset whose terms must be accepted (``--accept-license``) before it is downloaded."""


@dataclasses.dataclass(frozen=True)
class Subset:
    """What ``--subset NAME`` (or ``--split NAME``) fetches."""

    name: str
    description: str
    files: tuple[RemoteFile, ...] = ()
    disk_gb: float | None = None
    requires_acceptance: bool = False
    zip_members: ZipSelection | None = None
    youtube_clips: str | None = None  # a CSV inside the dataset folder whose rows yt-dlp fetches


@dataclasses.dataclass(frozen=True)
class Manifest:
    """A dataset's manifest: where it lives, under which terms, and how to cite it."""

    name: str
    title: str
    homepage: str
    license: str
    license_url: str
    citation: str
    default_subset: str
    subsets: dict[str, Subset]
    terms: str = ""
    notes: tuple[str, ...] = ()


def load_manifest(path: str | os.PathLike) -> Manifest:
    """Read and check a manifest JSON file.

    Raises:
        ConfigError: for a missing file, invalid JSON or a missing field (the message names it).
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"No manifest at {path}: see data_scripts/manifests/ for the datasets there are.") from None
    except json.JSONDecodeError as error:
        raise ConfigError(f"Manifest {path} is not valid JSON ({error}).") from None
    try:
        return _manifest_from_json(raw)
    except (KeyError, TypeError, ValueError) as error:
        raise ConfigError(f"Manifest {path} is missing or mistypes a field: {error!r}.") from None


def _remote_from_json(raw: dict) -> RemoteFile:
    checksum = raw["checksum"]
    if checksum is not None and checksum["algorithm"] not in ALGORITHMS:
        raise ValueError(f"checksum algorithm {checksum['algorithm']!r} is not one of {ALGORITHMS}")
    if checksum is None and not raw.get("checksum_note"):
        raise ValueError(f"{raw['filename']}: a file without a checksum needs a checksum_note saying why")
    if not raw["urls"]:
        raise ValueError(f"{raw['filename']}: no URL")
    return RemoteFile(
        filename=raw["filename"],
        urls=tuple(raw["urls"]),
        size=raw.get("size_bytes"),
        approx_size=raw.get("approx_size", ""),
        checksum=None
        if checksum is None
        else Checksum(checksum["algorithm"], checksum["value"].lower(), checksum.get("source", "")),
        checksum_note=raw.get("checksum_note", ""),
        extract=raw.get("extract", True),
        target=raw.get("target", ""),
    )


def _manifest_from_json(raw: dict) -> Manifest:
    subsets = {}
    for name, entry in raw["subsets"].items():
        members = entry.get("zip_members")
        selection = None
        if members is not None:
            selection = ZipSelection(
                _remote_from_json(members["archive"]), members["index"], members["column"], members["value"],
                tuple(members["path_columns"]), members.get("prefix", ""),
            )  # fmt: skip
        subsets[name] = Subset(
            name=name,
            description=entry["description"],
            files=tuple(_remote_from_json(f) for f in entry.get("files", [])),
            disk_gb=entry.get("disk_gb"),
            requires_acceptance=entry.get("requires_acceptance", raw.get("requires_acceptance", False)),
            zip_members=selection,
            youtube_clips=entry.get("youtube_clips"),
        )
    if raw["default_subset"] not in subsets:
        raise ValueError(f"default_subset {raw['default_subset']!r} is not one of the subsets")
    return Manifest(
        name=raw["name"], title=raw["title"], homepage=raw["homepage"], license=raw["license"],
        license_url=raw["license_url"], citation=raw["citation"], default_subset=raw["default_subset"],
        subsets=subsets, terms=raw.get("terms", ""), notes=tuple(raw.get("notes", [])),
    )  # fmt: skip


@dataclasses.dataclass(frozen=True)
class FolderSummary:
    """What a dataset folder holds."""

    files: int
    audio_files: int
    midi_files: int
    hours: float
    bytes: int

    def __str__(self) -> str:
        midi = f", {self.midi_files:,} MIDI" if self.midi_files else ""
        duration = f"{self.hours:.1f} hours" if self.hours >= 1 else f"{self.hours * 60:.1f} minutes"
        return f"{self.files:,} files ({self.audio_files:,} audio{midi}), {duration} of audio, {human_size(self.bytes)} on disk"


def human_size(count: float) -> str:
    """Bytes in binary units: ``human_size(7.2 * 2**30) == "7.2 GiB"``."""
    if count < 1024:
        return f"{int(count)} B"
    for unit in ("KiB", "MiB", "GiB"):
        count /= 1024
        if count < 1024 or unit == "GiB":
            break
    return f"{count:.1f} {unit}"


def summarize(folder: Path) -> FolderSummary:
    """Count files, audio hours (from the files' headers) and bytes under ``folder`` (hidden files skipped)."""
    files = audio = midi = size = 0
    seconds = 0.0
    for path in _visible_files(folder):
        files += 1
        size += path.stat().st_size
        suffix = path.suffix.lower()
        if suffix in MIDI_SUFFIXES:
            midi += 1
        elif suffix in AUDIO_SUFFIXES:
            audio += 1
            try:
                seconds += sf.info(path).duration
            except (sf.LibsndfileError, RuntimeError):
                pass  # an unreadable file still counts as a file; loaders report it by name
    return FolderSummary(files, audio, midi, seconds / 3600, size)


def _visible_files(folder: Path) -> Iterable[Path]:
    for base, folders, names in os.walk(folder):
        folders[:] = [f for f in folders if not f.startswith(".")]
        yield from (Path(base) / name for name in names if not name.startswith("."))


def describe(manifest: Manifest, subset: Subset) -> str:
    """What will be fetched, from where, under which license, and how to cite it (printed before downloading)."""
    files = [f"{f.filename} ({f.approx_size or human_size(f.size or 0)})" for f in subset.files]
    if subset.zip_members is not None:
        files.append(f"the {subset.zip_members.value} members of {subset.zip_members.archive.filename}")
    lines = [
        f"{manifest.title}, subset {subset.name!r}: {subset.description}",
        f"  files:    {', '.join(files)}",
        f"  page:     {manifest.homepage}",
        f"  license:  {manifest.license} ({manifest.license_url})",
    ]
    if manifest.terms:
        lines.append(f"  terms:    {manifest.terms}")
    lines.append(f"  cite:     {manifest.citation}")
    lines.extend(f"  note:     {note}" for note in manifest.notes)
    return "\n".join(lines)


def fetch(
    manifest: Manifest,
    subset: str | None = None,
    root: str | os.PathLike | None = None,
    accept_license: bool = False,
    keep_archives: bool = False,
    limit: int | None = None,
    yt_dlp: list[str] | None = None,
    retries: int = 4,
    backoff: float = 2.0,
    timeout: float = 30.0,
    progress: bool = True,
    log: Log = print,
) -> FolderSummary:
    """Fetch one subset of a dataset into ``root/<name>`` (see the module docstring for the steps).

    Args:
        manifest: from :func:`load_manifest`.
        subset: a name in ``manifest.subsets`` (``--subset``/``--split``); ``None`` for the default.
        root: the folder that holds the datasets (default ``$COURSE_DATA``).
        accept_license: accept terms that must be accepted (``--accept-license``).
        keep_archives: keep the downloaded archives in ``root/downloads`` after extraction.
        limit: MusicCaps audio: only the first ``limit`` clips.
        yt_dlp: the command that runs yt-dlp (default: found on PATH).
        retries, backoff, timeout: see :func:`download_file`.
        progress: show progress bars.
        log: where messages go.

    Returns:
        What ``root/<name>`` holds afterwards.

    Raises:
        ConfigError: an unknown subset.
        LicenseNotAcceptedError: terms to accept and ``accept_license`` is false.
        DownloadError: a download, check or extraction that failed (nothing is left in ``root/<name>``).
    """
    name = manifest.default_subset if subset is None else subset
    if name not in manifest.subsets:
        raise ConfigError(f"{manifest.title} has no subset {name!r}: use one of {', '.join(manifest.subsets)}.")
    chosen = manifest.subsets[name]
    root = Path(root) if root is not None else data_dir()
    log(describe(manifest, chosen))
    if chosen.requires_acceptance and not accept_license:
        raise LicenseNotAcceptedError(
            f"{manifest.title} is distributed under {manifest.license} ({manifest.license_url}). "
            f"{manifest.terms} If you accept these terms, run the same command again with --accept-license."
        )
    _check_disk(root, chosen)
    downloads, staging = root / "downloads", root / f".{manifest.name}.staging"
    if staging.exists() and chosen.zip_members is None:  # a remote-zip fetch resumes from its staging folder
        shutil.rmtree(staging)
    staging.mkdir(parents=True, exist_ok=True)
    fetched = []
    try:
        for remote in chosen.files:
            path = download_file(remote, downloads, manifest.homepage, retries, backoff, timeout, progress, log)
            fetched.append(path)
            if remote.extract:
                extract_archive(path, staging, progress)
            else:
                target = staging / (remote.target or remote.filename)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
        if chosen.zip_members is not None:
            fetch_zip_members(chosen.zip_members, staging, retries, backoff, timeout, progress, log)
    except BaseException:
        if chosen.zip_members is None:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    destination = root / manifest.name
    publish(staging, destination)
    if not keep_archives:
        for path in fetched:
            path.unlink(missing_ok=True)
    if chosen.youtube_clips is not None:
        download_clips(
            destination / chosen.youtube_clips, destination / "audio", limit, yt_dlp, progress=progress, log=log
        )
    summary = summarize(destination)
    log(f"{manifest.title} in {destination}: {summary}.")
    return summary


def _check_disk(root: Path, subset: Subset) -> None:
    if not subset.disk_gb:
        return
    existing = root
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if free < subset.disk_gb * 1e9:
        raise DownloadError(
            f"Subset {subset.name!r} needs about {subset.disk_gb:g} GB free (download and extraction) but "
            f"{existing} has {human_size(free)}: free some space, or fetch onto a bigger disk with --dest DIR "
            "(then set COURSE_DATA=DIR so the loaders find it)."
        )
