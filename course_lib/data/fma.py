"""FMA, the Free Music Archive dataset (Defferrard et al. 2017): Creative Commons tracks with genres and tags.

``fma_small`` holds 8,000 thirty-second MP3 clips, 1,000 in each of 8 top-level genres; ``fma_medium``
25,000 clips in 16 unbalanced genres (it includes the small set); ``fma_large`` all 106,574. The
metadata (``fma_metadata.zip``) gives each track a top genre, finer genres and free tags; the caption
is written from them, e.g. "an electronic track with elements of techno and ambient, tagged dark".
Each track keeps the license its artist chose (``metadata["license"]``).

Layout (``fma_metadata.zip`` and ``fma_small.zip`` unpacked into ``$COURSE_DATA/fma``)::

    fma_metadata/tracks.csv    three header rows: (album|artist|set|track, field, "track_id")
    fma_metadata/genres.csv    genre_id, #tracks, parent, title, top_level
    fma_small/000/000002.mp3   the track id, zero-padded to 6 digits, under its first 3 digits

Splits (``set.split``): ``training``, ``validation``, ``test``. Known errata (a few short or empty
clips): https://github.com/mdeff/fma/issues/41.

Notebook: every notebook's data cell (``load_dataset("fma", split="test")``).
"""

from __future__ import annotations

import ast
import csv
from collections.abc import Iterator
from pathlib import Path

from course_lib.data.datasets import DatasetFamily, DatasetNotFoundError, Recording, missing_dataset

SUBSETS = ("small", "medium", "large")  # each one includes the ones before it
RANK = {name: rank for rank, name in enumerate(SUBSETS)}
SPLITS = ("training", "validation", "test")
CLIP_SECONDS = 30.0
SUBSET_SIZES = {"small": "7.2 GiB + 342 MiB of metadata", "medium": "22 GiB + 342 MiB", "large": "93 GiB + 342 MiB"}
METADATA_FIELDS = ("track_id", "track.title", "artist.name", "album.title", "track.genre_top", "track.license")


def read_table(path: Path) -> Iterator[dict[str, str]]:
    """Rows of ``tracks.csv`` keyed ``"<group>.<field>"`` (``"track.genre_top"``), plus ``"track_id"``."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        groups, fields = next(reader), next(reader)
        next(reader)  # the third header row only names the index column
        columns = [f"{group}.{field}" if group else "track_id" for group, field in zip(groups, fields, strict=True)]
        for row in reader:
            yield dict(zip(columns, row, strict=False))  # a short row leaves fields out


def parse_list(text: str) -> list:
    """FMA stores lists as Python literals (``"[21, 45]"``, ``"['dark', 'lo-fi']"``)."""
    try:
        value = ast.literal_eval(text) if text else []
    except (ValueError, SyntaxError):
        return []
    return list(value) if isinstance(value, (list, tuple)) else []


def fma_caption(genre_top: str, genres: list[str], tags: list[str]) -> str:
    """Caption such as "an electronic track with elements of techno and ambient, tagged dark, lo-fi"."""
    main = genre_top.lower()
    text = (f"{'an' if main[:1] in 'aeiou' else 'a'} {main} track") if main else "a track"
    others = [g.lower() for g in genres if g.lower() != main][:3]
    if others:
        text += " with elements of " + (", ".join(others[:-1]) + " and " if len(others) > 1 else "") + others[-1]
    if tags:
        text += ", tagged " + ", ".join(str(t) for t in tags[:5])
    return text


def read_fma(root: Path, split: str | None, subset: str | None) -> tuple[list[Recording], dict[str, tuple[str, ...]]]:
    """The tracks of one subset and split, with the label ``genre`` (the top genre)."""
    tracks_csv, genres_csv = root / "fma_metadata" / "tracks.csv", root / "fma_metadata" / "genres.csv"
    audio_dir = root / f"fma_{subset}"
    fetch = f"fma --subset {subset} --accept-license"
    if not tracks_csv.exists():
        raise missing_dataset("FMA", "metadata", tracks_csv, fetch, SUBSET_SIZES[subset])
    if not audio_dir.is_dir():
        raise missing_dataset("FMA", f"subset {subset!r}", audio_dir, fetch, SUBSET_SIZES[subset])
    genre_names = {}
    if genres_csv.exists():
        with open(genres_csv, newline="", encoding="utf-8") as handle:
            genre_names = {row["genre_id"]: row["title"] for row in csv.DictReader(handle)}
    rows = [
        row
        for row in read_table(tracks_csv)
        if row.get("set.split") == split and RANK.get(row.get("set.subset", ""), len(SUBSETS)) <= RANK[subset]
    ]
    top_genres = tuple(sorted({row["track.genre_top"] for row in rows if row["track.genre_top"]}))
    recordings = []
    for row in rows:
        track_id = f"{int(row['track_id']):06d}"
        genres = [genre_names.get(str(g), "") for g in parse_list(row.get("track.genres", ""))]
        tags = parse_list(row.get("track.tags", ""))
        genre_top = row["track.genre_top"]
        caption = fma_caption(genre_top, [g for g in genres if g], tags)
        duration = min(float(row.get("track.duration") or CLIP_SECONDS), CLIP_SECONDS)
        label = top_genres.index(genre_top) if genre_top else -1
        metadata = {field: row.get(field, "") for field in METADATA_FIELDS} | {"genres": genres, "tags": tags}
        path = audio_dir / track_id[:3] / f"{track_id}.mp3"
        recordings.append(Recording(path, caption, duration, {"genre": label}, metadata))
    if not recordings:
        raise DatasetNotFoundError(f"FMA: {tracks_csv} lists no track of split {split!r} in subset {subset!r}.")
    return recordings, {"genre": top_genres}


FAMILY = DatasetFamily(
    name="fma",
    title="FMA",
    splits=SPLITS,
    default_split="training",
    read=read_fma,
    split_aliases={"train": "training", "valid": "validation"},
    subsets=SUBSETS,
)
