"""A small Standard MIDI File reader: notes (with the sustain pedal) in seconds, and nothing else.

MAESTRO pairs every piano recording with the MIDI that the Disklavier captured while it was played,
aligned to about 3 ms. Those notes give the *exact* melody control that Music ControlNet otherwise
estimates from audio (:func:`course_lib.control.melody_chroma`): :func:`melody_from_notes` keeps the
highest note sounding above middle C in each frame, the "skyline" of the score.

A MIDI file is a header chunk (``MThd``: format, number of tracks, ticks per quarter note) and track
chunks (``MTrk``) of events, each after a variable-length delta time in ticks. Only note on/off,
the sustain pedal (controller 64) and tempo changes (meta event 0x51) matter here; every other event
is skipped by its length. Running status (a channel event without its status byte repeats the
previous one) and note-on with velocity 0 (a note-off) are both common and both handled.

Notebook: notebooks/09_controlnet.ipynb (melody controls from a score); data_scripts/README.md.
"""

from __future__ import annotations

import functools
import math
import os
import struct
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import torch

from course_lib.data.music_theory import Note
from course_lib.errors import CourseError

DEFAULT_TEMPO = 500_000  # microseconds per quarter note (120 BPM) until a tempo event says otherwise
SUSTAIN_CONTROLLER = 64  # the damper pedal: a value of 64 or more holds every released note
DRUM_CHANNEL = 9  # General MIDI channel 10 (counting from 1) is percussion
MIDDLE_C = 60


class MidiFileError(CourseError, ValueError):
    """A file that is not a Standard MIDI File, or one that was cut short."""


def read_midi(path: str | os.PathLike, sustain: bool = True, voice: str = "piano") -> list[Note]:
    """Every note of a Standard MIDI File, in seconds, sorted by onset then pitch.

    Args:
        path: a ``.mid`` / ``.midi`` file (format 0 or 1).
        sustain: extend each note released while the sustain pedal is down until the pedal lifts
            (or the same key is struck again), as the piano itself does; ``False`` keeps key releases.
        voice: the :class:`Note` voice of pitched notes; notes on channel 10 get ``"drums"``.

    Returns:
        :class:`Note` objects with ``velocity`` scaled to (0, 1].

    Raises:
        MidiFileError: for a missing, truncated or non-MIDI file.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise MidiFileError(f"Cannot read MIDI file {path} ({error}): check the path.") from None
    if not data.startswith(b"MThd"):
        raise MidiFileError(f"{path} is not a Standard MIDI File (it does not start with 'MThd').")
    try:
        division, tracks = _parse_header(data)
        events = sorted(event for number, track in enumerate(tracks) for event in _track_events(track, number))
    except (IndexError, struct.error, MidiFileError) as error:
        raise MidiFileError(
            f"{path} is cut short or is not a Standard MIDI File ({error}): re-download or re-export it."
        ) from None
    return _notes_from_events(events, division, sustain, voice)


def _parse_header(data: bytes) -> tuple[int, list[bytes]]:
    """The time division (ticks per quarter note, or an SMPTE code with the top bit set) and the tracks."""
    header_length = struct.unpack(">I", data[4:8])[0]
    _, n_tracks, division = struct.unpack(">HHH", data[8:14])
    pos, tracks = 8 + header_length, []
    while pos + 8 <= len(data) and len(tracks) < n_tracks:
        kind, length = data[pos : pos + 4], struct.unpack(">I", data[pos + 4 : pos + 8])[0]
        if kind == b"MTrk":
            if pos + 8 + length > len(data):
                raise MidiFileError(f"track {len(tracks)} should hold {length:,} bytes but the file ends first")
            tracks.append(data[pos + 8 : pos + 8 + length])
        pos += 8 + length
    return division, tracks


def _seconds_per_tick(division: int, tempo: int) -> float:
    """Ticks per quarter note go through the tempo (µs per quarter); SMPTE ticks have a fixed length."""
    if division & 0x8000:  # SMPTE: frames per second (a negative byte) × ticks per frame
        return 1.0 / ((256 - (division >> 8)) * (division & 0xFF))
    return tempo / 1e6 / division


def _read_varlen(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    while True:
        byte = data[pos]
        pos += 1
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            return value, pos


def _track_events(track: bytes, number: int) -> list[tuple[int, int, int, str, int, int, int]]:
    """``(tick, track, order, kind, channel, a, b)`` for notes, pedal and tempo events of one track."""
    events, pos, tick, running = [], 0, 0, None
    while pos < len(track):
        delta, pos = _read_varlen(track, pos)
        tick += delta
        status = track[pos]
        if status == 0xFF:  # meta event: type, length, data
            meta_type = track[pos + 1]
            length, pos = _read_varlen(track, pos + 2)
            if meta_type == 0x51 and length == 3:
                tempo = int.from_bytes(track[pos : pos + 3], "big")
                events.append((tick, number, len(events), "tempo", 0, tempo, 0))
            elif meta_type == 0x2F:  # end of track
                break
            pos += length
            running = None
            continue
        if status in (0xF0, 0xF7):  # system exclusive: length, data
            length, pos = _read_varlen(track, pos + 1)
            pos += length
            running = None
            continue
        if status & 0x80:
            running, pos = status, pos + 1
        elif running is None:
            raise MidiFileError(f"track {number} has a data byte at offset {pos} with no status before it")
        kind, channel = running & 0xF0, running & 0x0F
        size = 1 if kind in (0xC0, 0xD0) else 2
        a, b = track[pos], track[pos + size - 1]
        pos += size
        if kind == 0x90 and b > 0:
            events.append((tick, number, len(events), "on", channel, a, b))
        elif kind == 0x80 or kind == 0x90:
            events.append((tick, number, len(events), "off", channel, a, 0))
        elif kind == 0xB0 and a == SUSTAIN_CONTROLLER:
            events.append((tick, number, len(events), "pedal", channel, b, 0))
    return events


def _notes_from_events(events: list, division: int, sustain: bool, voice: str) -> list[Note]:
    tempo, time, last_tick = DEFAULT_TEMPO, 0.0, 0
    sounding: dict[tuple[int, int], list[tuple[float, int]]] = defaultdict(list)  # key down: (onset, velocity)
    held: dict[int, list[tuple[int, float, int]]] = defaultdict(list)  # key up, pedal down: (pitch, onset, velocity)
    pedal_down: dict[int, bool] = defaultdict(bool)
    notes: list[Note] = []

    def finish(channel: int, pitch: int, onset: float, velocity: int, end: float) -> None:
        name = "drums" if channel == DRUM_CHANNEL else voice
        notes.append(Note(onset, max(end - onset, 0.0), pitch, velocity / 127, name))

    for tick, _, _, kind, channel, a, b in events:
        time, last_tick = time + (tick - last_tick) * _seconds_per_tick(division, tempo), tick
        if kind == "tempo":
            tempo = a
        elif kind == "on":
            for pitch, onset, velocity in [h for h in held[channel] if h[0] == a]:  # the key is struck again
                held[channel].remove((pitch, onset, velocity))
                finish(channel, pitch, onset, velocity, time)
            sounding[channel, a].append((time, b))
        elif kind == "off" and sounding[channel, a]:
            onset, velocity = sounding[channel, a].pop(0)
            if sustain and pedal_down[channel]:
                held[channel].append((a, onset, velocity))
            else:
                finish(channel, a, onset, velocity, time)
        elif kind == "pedal":
            pedal_down[channel] = a >= 64
            if not pedal_down[channel]:
                for pitch, onset, velocity in held.pop(channel, []):
                    finish(channel, pitch, onset, velocity, time)
    for (channel, pitch), opened in sounding.items():  # keys never released: end at the last event
        for onset, velocity in opened:
            finish(channel, pitch, onset, velocity, time)
    for channel, waiting in held.items():
        for pitch, onset, velocity in waiting:
            finish(channel, pitch, onset, velocity, time)
    return sorted(notes, key=lambda note: (note.onset, note.pitch))


@functools.lru_cache(maxsize=32)
def read_midi_cached(path: str, sustain: bool = True) -> tuple[Note, ...]:
    """:func:`read_midi` remembered per file (a dataset reads the same performance for many clips)."""
    return tuple(read_midi(path, sustain))


def notes_between(notes: Sequence[Note], start: float, stop: float) -> list[Note]:
    """The notes sounding in ``[start, stop)`` seconds, cut to it, with onsets relative to ``start``."""
    cut = []
    for note in notes:
        onset, end = max(note.onset, start), min(note.onset + note.duration, stop)
        if end > onset or (note.duration == 0 and start <= note.onset < stop):
            cut.append(Note(onset - start, end - onset, note.pitch, note.velocity, note.voice))
    return cut


def melody_from_notes(
    notes: Sequence[Note], num_frames: int, frame_rate: float, min_pitch: int = MIDDLE_C
) -> torch.Tensor:
    """The melody control read from a score: one-hot of the highest pitch class sounding per frame.

    Music ControlNet's melody is the strongest pitch class above middle C; with the notes known,
    the top note at or above ``min_pitch`` (the "skyline") stands in for the strongest one. Frame
    ``f`` is the instant ``f / frame_rate``, the grid of :mod:`course_lib.control`.

    Args:
        notes: onsets and durations in seconds (drums are ignored).
        num_frames: ``F``, e.g. ``course_lib.control.num_frames(T, hop_length)``.
        frame_rate: frames per second, ``sample_rate / hop_length``.
        min_pitch: the lowest MIDI pitch that can carry the melody (60 = middle C).

    Returns:
        ``(12, F)`` float one-hot; frames where no such note sounds are all zero, as for silence
        in :func:`course_lib.control.melody_chroma`.
    """
    top = torch.full((num_frames,), -1, dtype=torch.long)  # (F,) highest sounding pitch, -1 for none
    for note in notes:
        if note.voice == "drums" or note.pitch < min_pitch:
            continue
        first = max(math.ceil(note.onset * frame_rate - 1e-9), 0)
        stop = min(math.ceil((note.onset + note.duration) * frame_rate - 1e-9), num_frames)
        if stop > first:
            top[first:stop] = top[first:stop].clamp_min(note.pitch)
    melody = torch.zeros(12, num_frames)  # (12, F)
    frames = torch.nonzero(top >= 0).squeeze(1)  # (F',)
    melody[top[frames] % 12, frames] = 1.0
    return melody
