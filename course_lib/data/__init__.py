"""The course's embedded dataset, SynthMusic, and the music theory and instruments behind it.

Notebook: notebooks/00_audio_and_data.ipynb.
"""

from course_lib.data.captions import make_caption
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
]
