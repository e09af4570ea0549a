"""The course's embedded dataset, SynthMusic, and the music theory and instruments behind it.

Notebook: notebooks/00_audio_and_data.ipynb.

Real datasets (NSynth, MAESTRO, FMA, MusicCaps, GTZAN) load behind the same clip interface with
``load_dataset``; ``python data_scripts/fetch.py NAME`` downloads them (data_scripts/README.md).
"""

from course_lib.data.captions import make_caption
from course_lib.data.datasets import DatasetNotFoundError, MusicClip, MusicDataset, Recording, load_dataset
from course_lib.data.midi import melody_from_notes, read_midi
from course_lib.data.music_theory import NOTE_NAMES, Note, compose, hz_to_midi, key_name, midi_to_hz, tempo_class
from course_lib.data.synth_music import Clip, ClipBatch, SynthMusic, render_score
from course_lib.data.timbres import INSTRUMENTS, render_drum, render_note

__all__ = [
    "INSTRUMENTS",
    "NOTE_NAMES",
    "Clip",
    "ClipBatch",
    "Note",
    "SynthMusic",
    "compose",
    "hz_to_midi",
    "key_name",
    "make_caption",
    "midi_to_hz",
    "render_drum",
    "render_note",
    "render_score",
    "tempo_class",
    "DatasetNotFoundError",
    "MusicClip",
    "MusicDataset",
    "Recording",
    "load_dataset",
    "melody_from_notes",
    "read_midi",
]
