"""GTZAN (Tzanetakis & Cook 2002): 1,000 thirty-second excerpts, 100 in each of 10 genres, 22,050 Hz.

The most used genre dataset, and a flawed one (Sturm 2012, "An Analysis of the GTZAN Music Genre
Dataset"): 50 exact replicas, 22 excerpts of the same recording, 13 versions of one song, dozens of
mislabelings, distortions, and whole genres dominated by one artist. It has no license, no official
split, and its original host has come and gone; one file (``jazz.00054.wav``) is unreadable in some
copies and is skipped here with a warning. Use it to hear genres, not to rank models.

Layout (``genres.tar.gz`` unpacked into ``$COURSE_DATA/gtzan``; Kaggle's copy names the folder
``genres_original``, which is read as well)::

    genres/blues/blues.00000.wav ... genres/rock/rock.00099.wav

Notebook: every notebook's data cell (``load_dataset("gtzan")``).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import soundfile as sf

from course_lib.data.datasets import DatasetFamily, Recording, missing_dataset

GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")
GENRE_WORDS = {"hiphop": "hip-hop"}
AUDIO_SUFFIXES = (".wav", ".au")
EXCERPT_SECONDS = 30.0
FOLDERS = ("genres", "genres_original")


def read_gtzan(root: Path, split: str | None, subset: str | None) -> tuple[list[Recording], dict[str, tuple[str, ...]]]:
    """Every readable excerpt, captioned "a <genre> song", with the label ``genre``."""
    folder = next((root / name for name in FOLDERS if (root / name).is_dir()), None)
    if folder is None:
        raise missing_dataset("GTZAN", "", root / FOLDERS[0], "gtzan --accept-license", "1.2 GB")
    recordings, unreadable = [], []
    for number, genre in enumerate(GENRES):
        for path in sorted(p for p in (folder / genre).glob("*") if p.suffix.lower() in AUDIO_SUFFIXES):
            try:
                duration = sf.info(path).duration
            except (sf.LibsndfileError, RuntimeError):
                unreadable.append(path.name)
                continue
            word = GENRE_WORDS.get(genre, genre)
            metadata = {"genre": genre, "file": path.name}
            recordings.append(
                Recording(path, f"a {word} song", duration or EXCERPT_SECONDS, {"genre": number}, metadata)
            )
    if unreadable:
        warnings.warn(f"GTZAN: skipped {len(unreadable)} unreadable file(s): {', '.join(unreadable)}", stacklevel=3)
    if not recordings:
        raise missing_dataset("GTZAN", "audio", folder / "blues", "gtzan --accept-license", "1.2 GB")
    return recordings, {"genre": GENRES}


FAMILY = DatasetFamily(name="gtzan", title="GTZAN", splits=(None,), default_split=None, read=read_gtzan)
