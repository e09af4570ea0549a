"""MAESTRO v3 (Hawthorne et al. 2019): about 200 hours of virtuoso piano with MIDI aligned to ~3 ms.

Performances from ten years of the International Piano-e-Competition, played on Yamaha Disklaviers
that record every key and pedal as MIDI while the audio is recorded. So each clip comes with its
exact score (``clip.notes``, read by :mod:`course_lib.data.midi`) and an exact melody control
(``clip.score_melody``), next to the one estimated from audio (``clip.controls["melody"]``). The
caption names the piece, e.g. "solo piano: Sonata in C Major by Joseph Haydn, a live performance
from 2004".

Layout (``maestro-v3.0.0.zip``, or the members of one split, unpacked into ``$COURSE_DATA/maestro``)::

    maestro-v3.0.0/maestro-v3.0.0.csv   canonical_composer, canonical_title, split, year,
                                        midi_filename, audio_filename, duration
    maestro-v3.0.0/2004/MIDI-Unprocessed_..._wav--1.wav   (44.1–48 kHz stereo)
    maestro-v3.0.0/2004/MIDI-Unprocessed_..._wav--1.midi

Splits: ``train`` (962 performances, 159 h), ``validation`` (137, 19 h), ``test`` (177, 20 h); no
composition appears in two splits.

Notebook: notebooks/09_controlnet.ipynb (melody from the score); every notebook's data cell.
"""

from __future__ import annotations

import csv
from pathlib import Path

from course_lib.data.datasets import DatasetFamily, DatasetNotFoundError, Recording, missing_dataset

VERSION = "maestro-v3.0.0"
SPLITS = ("train", "validation", "test")
SPLIT_SIZES = {"train": "96.3 GB", "validation": "11.8 GB", "test": "12.1 GB"}


def maestro_caption(composer: str, title: str, year: str) -> str:
    """Caption such as "solo piano: Sonata in C Major by Joseph Haydn, a live performance from 2004"."""
    return f"solo piano: {title} by {composer}, a live performance from {year}"


def read_maestro(
    root: Path, split: str | None, subset: str | None
) -> tuple[list[Recording], dict[str, tuple[str, ...]]]:
    """The performances of one split with their MIDI files and the label ``composer``."""
    base = root / VERSION
    index = base / f"{VERSION}.csv"
    fetch = f"maestro --split {split} --accept-license"
    if not index.exists():
        raise missing_dataset("MAESTRO v3", f"split {split!r}", index, fetch, SPLIT_SIZES[split])
    with open(index, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    composers = tuple(sorted({row["canonical_composer"] for row in rows}))
    recordings = []
    for row in rows:
        if row["split"] != split:
            continue
        caption = maestro_caption(row["canonical_composer"], row["canonical_title"], row["year"])
        labels = {"composer": composers.index(row["canonical_composer"])}
        midi_path = base / row["midi_filename"]
        recordings.append(
            Recording(base / row["audio_filename"], caption, float(row["duration"]), labels, row, midi_path)
        )
    missing = [r.path for r in recordings if not r.path.exists()]
    if missing:
        raise DatasetNotFoundError(
            f"MAESTRO v3 split {split!r}: {len(missing)} of {len(recordings)} audio files are not on disk "
            f"(e.g. {missing[0]}); the MIDI-only subset has no audio, or a fetch was interrupted. Fetch the "
            f"audio with\n    python data_scripts/fetch.py {fetch}\n({SPLIT_SIZES[split]}; it resumes where it stopped)."
        )
    return recordings, {"composer": composers}


FAMILY = DatasetFamily(
    name="maestro",
    title="MAESTRO v3",
    splits=SPLITS,
    default_split="test",
    read=read_maestro,
    split_aliases={"valid": "validation"},
)
