"""Keys, scales, chords and MIDI pitch, and the small composer that writes each SynthMusic score.

A score is a list of :class:`Note` (MIDI-like: onset and duration in seconds, MIDI pitch, velocity,
voice). Pitched voices are a monophonic ``"melody"`` on top (E4–B5, above the 261 Hz high-pass of
the melody control), soft ``"chord"`` triads below middle C and a ``"bass"`` line an octave under
them; drum hits are notes of voice ``"drums"`` with General MIDI percussion numbers
(36 kick, 38 snare, 42 closed hi-hat), as on MIDI channel 10.

Notebook: notebooks/00_audio_and_data.ipynb (the dataset), notebooks/09_controlnet.ipynb (its controls).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
MODES = ("major", "minor")
SCALE_STEPS = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}  # natural minor
# Chord progressions as scale degrees (0 = tonic): I–V–vi–IV, I–IV–V–I, ...; i–VI–III–VII, i–iv–v–i, ...
PROGRESSIONS = {
    "major": ((0, 4, 5, 3), (0, 3, 4, 0), (0, 5, 3, 4), (5, 3, 0, 4)),
    "minor": ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6), (0, 3, 6, 2)),
}
TEMPO_CLASSES = ("slow", "medium", "fast")
TEMPO_RANGES = {"slow": (60.0, 85.0), "medium": (95.0, 115.0), "fast": (125.0, 160.0)}  # BPM, with gaps
KICK, SNARE, HIHAT = 36, 38, 42  # General MIDI percussion numbers

MELODY_RANGE = (64, 83)  # E4 (330 Hz) .. B5 (988 Hz): the top voice, above the melody high-pass
CHORD_RANGE = (45, 57)  # A2 .. A3 (220 Hz): every chord tone stays below middle C
BASS_RANGE = (33, 44)  # A1 .. G#2
CHORD_BEATS = 2  # a new chord (and bass note) every two beats; the chord is struck on every beat
# Melody note lengths in beats and how often each is drawn.
MELODY_DURATIONS = (0.5, 1.0, 1.5, 2.0)
MELODY_DURATION_WEIGHTS = (0.35, 0.4, 0.1, 0.15)
# Melody steps in scale degrees: mostly stepwise, some leaps, rare repeats.
MELODY_STEPS = (-3, -2, -1, 0, 1, 2, 3)
MELODY_STEP_WEIGHTS = (0.06, 0.17, 0.25, 0.04, 0.25, 0.17, 0.06)
REST_PROBABILITY = 0.1


@dataclasses.dataclass(frozen=True)
class Note:
    """One note of a score.

    Attributes:
        onset: start time in seconds.
        duration: how long it sounds, in seconds (cut at the clip's end).
        pitch: MIDI note number (60 = middle C); for ``voice == "drums"`` a General MIDI
            percussion number (36 kick, 38 snare, 42 closed hi-hat).
        velocity: loudness in (0, 1].
        voice: ``"melody"``, ``"chord"``, ``"bass"`` or ``"drums"``.
    """

    onset: float
    duration: float
    pitch: int
    velocity: float
    voice: str

    @property
    def pitch_class(self) -> int:
        """0 = C … 11 = B, the row of this note in a chromagram."""
        return self.pitch % 12


def midi_to_hz(pitch: float | np.ndarray) -> float | np.ndarray:
    """Equal temperament with A4 (MIDI 69) = 440 Hz: ``440 · 2^((pitch − 69) / 12)``."""
    return 440.0 * 2.0 ** ((np.asarray(pitch, dtype=np.float64) - 69.0) / 12.0)


def hz_to_midi(frequency: float | np.ndarray) -> float | np.ndarray:
    """Inverse of :func:`midi_to_hz` (fractional MIDI numbers)."""
    return 69.0 + 12.0 * np.log2(np.asarray(frequency, dtype=np.float64) / 440.0)


def key_name(tonic: int, mode: str) -> str:
    """``key_name(9, "minor") == "A minor"``."""
    return f"{NOTE_NAMES[tonic % 12]} {mode}"


def tempo_class(bpm: float) -> str:
    """``"slow"`` below 90 BPM, ``"fast"`` above 120, ``"medium"`` between."""
    return "slow" if bpm < 90 else "fast" if bpm > 120 else "medium"


def scale_pitches(tonic: int, mode: str, low: int, high: int) -> list[int]:
    """All MIDI pitches of the scale of ``tonic`` (0 = C) and ``mode`` within ``[low, high]``."""
    classes = {(tonic + step) % 12 for step in SCALE_STEPS[mode]}
    return [p for p in range(low, high + 1) if p % 12 in classes]


def triad(tonic: int, mode: str, degree: int) -> tuple[int, int, int]:
    """Pitch classes of the diatonic triad on scale ``degree`` (stacked thirds: degrees d, d+2, d+4)."""
    steps = SCALE_STEPS[mode]
    return tuple((tonic + steps[(degree + k) % 7]) % 12 for k in (0, 2, 4))  # type: ignore[return-value]


def place_in_range(pitch_class: int, low: int, high: int) -> int:
    """The lowest MIDI pitch of ``pitch_class`` that is ≥ ``low`` (ranges span ≥ 12 semitones)."""
    pitch = low + (pitch_class - low) % 12
    assert pitch <= high, "a range must span at least an octave"
    return pitch


def compose(
    rng: np.random.Generator,
    seconds: float,
    tempo: float,
    tonic: int,
    mode: str,
    drums: bool,
    velocity_curve: tuple[float, float] = (1.0, 1.0),
) -> list[Note]:
    """Write a short score: melody over a chord progression with a bass line, and optional drums.

    Onsets sit on an eighth-note grid starting at beat 0 (t = 0). Chords change every
    ``CHORD_BEATS`` beats and are struck on every beat, so the beat can be heard even when the
    melody is syncopated; drums play kick on beats 1 and 3, snare on 2 and 4, hi-hat on eighths.

    Args:
        rng: the clip's random generator (the score is a function of its state).
        seconds: clip length; notes are cut there.
        tempo: beats per minute.
        tonic: key as a pitch class, 0 = C.
        mode: ``"major"`` or ``"minor"``.
        drums: whether to add the drum pattern.
        velocity_curve: velocity factor at the clip's start and end (a crescendo is ``(0.5, 1.0)``).

    Returns:
        Notes sorted by onset, then voice.
    """
    beat = 60.0 / tempo
    n_beats = math.ceil(seconds / beat)
    start_gain, end_gain = velocity_curve

    def note(onset_beats: float, beats: float, pitch: int, velocity: float, voice: str) -> Note | None:
        onset = float(onset_beats * beat)
        if onset >= seconds:
            return None
        gain = start_gain + (end_gain - start_gain) * onset / seconds
        duration = float(min(beats * beat, seconds - onset))
        return Note(round(onset, 6), round(duration, 6), int(pitch), round(float(velocity * gain), 4), voice)

    notes: list[Note | None] = []
    progression = PROGRESSIONS[mode][rng.integers(len(PROGRESSIONS[mode]))]
    for beat_index in range(n_beats):
        chord = triad(tonic, mode, progression[beat_index // CHORD_BEATS % len(progression)])
        for pitch_class in chord:
            notes.append(note(beat_index, 0.9, place_in_range(pitch_class, *CHORD_RANGE), 0.15, "chord"))
        if beat_index % CHORD_BEATS == 0:
            notes.append(note(beat_index, CHORD_BEATS * 0.9, place_in_range(chord[0], *BASS_RANGE), 0.35, "bass"))

    melody_pitches = scale_pitches(tonic, mode, *MELODY_RANGE)
    first_chord = triad(tonic, mode, progression[0])
    position = int(rng.choice([i for i, p in enumerate(melody_pitches) if p % 12 in first_chord]))
    t = 0.0
    while t < n_beats:
        length = float(rng.choice(MELODY_DURATIONS, p=MELODY_DURATION_WEIGHTS))
        if t > 0 and rng.random() < REST_PROBABILITY:
            t += length
            continue
        articulation = rng.uniform(0.8, 0.95)  # the gap lets each onset stand out
        accent = 1.0 if t % 2 == 0 else 0.9
        notes.append(note(t, length * articulation, melody_pitches[position], 0.9 * accent, "melody"))
        step = int(rng.choice(MELODY_STEPS, p=MELODY_STEP_WEIGHTS))
        position = int(np.clip(position + step, 0, len(melody_pitches) - 1))
        t += length

    if drums:
        for eighth in range(2 * n_beats):
            t = eighth / 2
            if eighth % 4 == 0:
                notes.append(note(t, 0.25 / beat, KICK, 0.9, "drums"))
            elif eighth % 4 == 2:
                notes.append(note(t, 0.2 / beat, SNARE, 0.75, "drums"))
            notes.append(note(t, 0.05 / beat, HIHAT, 0.5 if eighth % 2 == 0 else 0.35, "drums"))

    voice_order = {"melody": 0, "chord": 1, "bass": 2, "drums": 3}
    return sorted((n for n in notes if n is not None), key=lambda n: (n.onset, voice_order[n.voice], n.pitch))
