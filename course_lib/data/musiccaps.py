"""MusicCaps (Agostinelli et al. 2023, MusicLM): 5,521 ten-second clips with captions written by musicians.

Google released only text: a CSV of YouTube ids, start/end times, an aspect list ("pop, tinny wide hi
hats, mellow piano melody") and a free caption. The audio is YouTube's; ``download_clips`` fetches
each ten-second section with `yt-dlp <https://github.com/yt-dlp/yt-dlp>`_ (optional, needs ffmpeg),
skips videos that are gone (private, removed, region-locked) and reports how many, so a local copy
holds fewer clips than the paper's, and each student's copy may differ.

Layout (in ``$COURSE_DATA/musiccaps``)::

    musiccaps-public.csv   ytid, start_s, end_s, audioset_positive_labels, aspect_list, caption,
                           author_id, is_balanced_subset, is_audioset_eval
    audio/<ytid>.flac      the clip (source rate, usually 44.1 or 48 kHz)
    unavailable.txt        ids that yt-dlp could not fetch

Splits: ``None`` (all 5,521), ``train`` (2,663 from AudioSet's train split), ``eval`` (2,858 from its
eval split; MusicLM reports on all of them).

Notebook: notebooks 06–08 (captions for text conditioning); every notebook's data cell.
"""

from __future__ import annotations

import ast
import csv
import dataclasses
import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from tqdm.auto import tqdm

from course_lib.config import data_dir
from course_lib.data.datasets import DatasetFamily, DatasetNotFoundError, Recording, missing_dataset
from course_lib.data.download import DownloadError

CSV_NAME = "musiccaps-public.csv"
AUDIO_SUFFIXES = (".flac", ".wav", ".ogg", ".mp3")
SPLITS = (None, "train", "eval")
ABORT_AFTER = 20  # if this many clips in a row fail from the start, something other than a gone video is wrong


def read_captions(root: str | os.PathLike | None = None, split: str | None = None) -> list[dict]:
    """The CSV's rows (``aspect_list`` parsed into a list), for text-only work with the captions.

    Raises:
        DatasetNotFoundError: when the CSV has not been fetched.
    """
    folder = Path(root) if root is not None else data_dir(create=False) / "musiccaps"
    path = folder / CSV_NAME
    if not path.exists():
        raise missing_dataset("MusicCaps", "captions", path, "musiccaps", "about 3 MB")
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        try:
            row["aspect_list"] = list(ast.literal_eval(row["aspect_list"]))
        except (ValueError, SyntaxError):
            row["aspect_list"] = [row["aspect_list"]]
    if split is not None:
        rows = [row for row in rows if (row["is_audioset_eval"].lower() == "true") == (split == "eval")]
    return rows


def read_musiccaps(
    root: Path, split: str | None, subset: str | None
) -> tuple[list[Recording], dict[str, tuple[str, ...]]]:
    """The clips whose audio has been fetched, captioned with the musicians' captions."""
    rows = read_captions(root, split)
    audio_dir = root / "audio"
    files = {p.stem: p for p in audio_dir.glob("*") if p.suffix in AUDIO_SUFFIXES} if audio_dir.is_dir() else {}
    recordings = [
        Recording(files[row["ytid"]], row["caption"], float(row["end_s"]) - float(row["start_s"]), {}, row)
        for row in rows
        if row["ytid"] in files
    ]
    if not recordings:
        raise DatasetNotFoundError(
            f"MusicCaps has its captions in {root / CSV_NAME} but no audio in {audio_dir}: the audio is on "
            "YouTube. Fetch it (needs yt-dlp and ffmpeg; --limit 200 for a first taste) with\n"
            "    python data_scripts/fetch.py musiccaps --subset audio --accept-license\n"
            "or use course_lib.data.musiccaps.read_captions() for the text alone."
        )
    return recordings, {}


@dataclasses.dataclass
class ClipReport:
    """What :func:`download_clips` did: clips fetched now, already there, and ids that failed."""

    downloaded: int = 0
    present: int = 0
    unavailable: list[str] = dataclasses.field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"{self.downloaded} clips downloaded, {self.present} already present, "
            f"{len(self.unavailable)} unavailable (removed, private or blocked videos)"
        )


def yt_dlp_command() -> list[str]:
    """The command that runs yt-dlp here, checking that ffmpeg (which cuts and converts) is there too.

    Raises:
        DownloadError: when yt-dlp or ffmpeg is missing, with how to install them.
    """
    if shutil.which("yt-dlp"):
        command = [shutil.which("yt-dlp") or "yt-dlp"]
    elif importlib.util.find_spec("yt_dlp") is not None:
        command = [sys.executable, "-m", "yt_dlp"]
    else:
        raise DownloadError("MusicCaps audio needs yt-dlp, which is not installed: pip install yt-dlp")
    if shutil.which("ffmpeg") is None:
        raise DownloadError(
            "yt-dlp needs ffmpeg to cut the clips and convert them to FLAC, and it is not on PATH: "
            "apt install ffmpeg, brew install ffmpeg or conda install -c conda-forge ffmpeg."
        )
    return command


def download_clips(
    csv_path: Path,
    audio_dir: Path,
    limit: int | None = None,
    command: Sequence[str] | None = None,
    timeout: float = 600.0,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> ClipReport:
    """Fetch each CSV row's ten-second section from YouTube into ``audio_dir/<ytid>.flac``.

    Each clip is written under a hidden temporary name and renamed when complete, so an interrupted
    run leaves no half clip; a second run skips the clips already there. Ids that fail are listed in
    ``unavailable.txt`` next to ``audio_dir``.

    Args:
        csv_path: ``musiccaps-public.csv``.
        audio_dir: where the clips go.
        limit: only the first ``limit`` rows of the CSV (``None``: all 5,521).
        command: how to run yt-dlp (default :func:`yt_dlp_command`).
        timeout: seconds allowed per clip.
        progress: show a progress bar.
        log: where messages go.

    Raises:
        DownloadError: when the first clips all fail (offline, or yt-dlp too old: ``pip install -U yt-dlp``).
    """
    command = list(command) if command is not None else yt_dlp_command()
    with open(csv_path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))[:limit]
    audio_dir.mkdir(parents=True, exist_ok=True)
    present = {p.stem for p in audio_dir.glob("*") if p.suffix in AUDIO_SUFFIXES}
    report, last_error = ClipReport(), ""
    for row in tqdm(rows, desc="MusicCaps clips", unit="clip", disable=not progress):
        ytid = row["ytid"]
        if ytid in present:
            report.present += 1
            continue
        partial = audio_dir / f".{ytid}.partial"
        arguments = [
            "--quiet", "--no-warnings", "--no-playlist", "-x", "--audio-format", "flac",
            "--download-sections", f"*{float(row['start_s']):g}-{float(row['end_s']):g}", "--force-keyframes-at-cuts",
            "-o", f"{partial}.%(ext)s", f"https://www.youtube.com/watch?v={ytid}",
        ]  # fmt: skip
        try:
            result = subprocess.run([*command, *arguments], capture_output=True, text=True, timeout=timeout)
            failed, error = result.returncode != 0, (result.stderr.strip().splitlines() or [""])[-1]
        except subprocess.TimeoutExpired:
            failed, error = True, f"no answer within {timeout:.0f} s"
        produced = sorted(p for p in audio_dir.glob(f".{ytid}.partial.*") if p.suffix in AUDIO_SUFFIXES)
        if not failed and produced:
            os.replace(produced[0], audio_dir / f"{ytid}{produced[0].suffix}")
            report.downloaded += 1
        else:
            report.unavailable.append(ytid)
            last_error = error or "yt-dlp produced no audio file"
        for leftover in audio_dir.glob(f".{ytid}.partial*"):
            leftover.unlink()
        if report.downloaded == 0 and len(report.unavailable) >= ABORT_AFTER:
            raise DownloadError(
                f"The first {ABORT_AFTER} MusicCaps clips all failed (last error: {last_error}). Either YouTube "
                "cannot be reached from here, or yt-dlp is out of date (YouTube changes often): "
                "pip install -U yt-dlp, then run the same command again; clips already fetched are kept."
            )
    (audio_dir.parent / "unavailable.txt").write_text("".join(f"{ytid}\n" for ytid in report.unavailable))
    log(f"MusicCaps audio: {report}; their ids are in {audio_dir.parent / 'unavailable.txt'}.")
    return report


FAMILY = DatasetFamily(
    name="musiccaps",
    title="MusicCaps",
    splits=SPLITS,
    default_split=None,
    read=read_musiccaps,
    split_aliases={"test": "eval"},
)
