"""NSynth (Engel et al. 2017): 305,979 four-second notes of 1,006 instruments, at 16 kHz.

Each note holds for 3 s and decays for 1 s. Its JSON metadata names the instrument family (bass,
brass, ..., vocal), the source (acoustic, electronic, synthetic), the MIDI pitch, the velocity and
sonic qualities (bright, dark, percussive, ...); the caption is written from those fields, e.g.
"a loud acoustic guitar note, C4, bright and percussive".

Layout (``nsynth-<split>.jsonwav.tar.gz`` unpacked into ``$COURSE_DATA/nsynth``)::

    nsynth-test/examples.json          {"guitar_acoustic_010-060-100": {"pitch": 60, ...}, ...}
    nsynth-test/audio/guitar_acoustic_010-060-100.wav

Splits: ``test`` (4,096 notes, 4.6 h), ``valid`` (12,678), ``train`` (289,205).

Notebook: every notebook's data cell (``load_dataset("nsynth", split="test")``).
"""

from __future__ import annotations

import json
from pathlib import Path

from course_lib.data.datasets import DatasetFamily, Recording, missing_dataset
from course_lib.data.music_theory import NOTE_NAMES

FAMILIES = ("bass", "brass", "flute", "guitar", "keyboard", "mallet", "organ", "reed", "string", "synth_lead", "vocal")
SOURCES = ("acoustic", "electronic", "synthetic")
SPLITS = ("test", "valid", "train")
NOTE_SECONDS = 4.0
SPLIT_SIZES = {"test": "about 0.35 GB", "valid": "about 1 GB", "train": "about 24 GB"}
VELOCITY_WORDS = ((25, "very soft"), (50, "soft"), (75, "medium-loud"), (100, "loud"), (127, "very loud"))


def note_name(pitch: int) -> str:
    """Scientific pitch notation: MIDI 60 → ``"C4"``, 69 → ``"A4"``."""
    return f"{NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


def nsynth_caption(family: str, source: str, pitch: int, velocity: int, qualities: list[str]) -> str:
    """Caption such as "a loud acoustic guitar note, C4, bright and percussive"."""
    loudness = next(word for limit, word in VELOCITY_WORDS if velocity <= limit)
    words = [q.replace("_", " ").replace("-", " ") for q in qualities]
    described = f", {', '.join(words[:-1])} and {words[-1]}" if len(words) > 1 else (f", {words[0]}" if words else "")
    return f"a {loudness} {source} {family.replace('_', ' ')} note, {note_name(pitch)}{described}"


def read_nsynth(
    root: Path, split: str | None, subset: str | None
) -> tuple[list[Recording], dict[str, tuple[str, ...]]]:
    """The notes of one split, with captions and labels ``instrument_family``, ``instrument_source``,
    ``pitch`` and ``velocity``."""
    folder = root / f"nsynth-{split}"
    index = folder / "examples.json"
    if not index.exists():
        raise missing_dataset("NSynth", f"split {split!r}", index, f"nsynth --split {split}", SPLIT_SIZES[split])
    examples = json.loads(index.read_text())
    recordings = []
    for key in sorted(examples):
        fields = examples[key]
        family, source = fields["instrument_family_str"], fields["instrument_source_str"]
        caption = nsynth_caption(family, source, fields["pitch"], fields["velocity"], fields.get("qualities_str", []))
        labels = {
            "instrument_family": FAMILIES.index(family),
            "instrument_source": SOURCES.index(source),
            "pitch": int(fields["pitch"]),
            "velocity": int(fields["velocity"]),
        }
        recordings.append(Recording(folder / "audio" / f"{key}.wav", caption, NOTE_SECONDS, labels, fields))
    return recordings, {"instrument_family": FAMILIES, "instrument_source": SOURCES}


FAMILY = DatasetFamily(
    name="nsynth",
    title="NSynth",
    splits=SPLITS,
    default_split="test",
    read=read_nsynth,
    split_aliases={"validation": "valid"},
    default_crop="start",  # the attack is at t = 0
)
