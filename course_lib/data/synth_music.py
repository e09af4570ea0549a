"""SynthMusic: the course's embedded dataset, synthesized on the fly from a seed (no download).

Clip ``i`` of ``SynthMusic(seed=s)`` is a pure function of ``(s, i)`` and the dataset's settings
(NumPy's PCG64 seeded with both), so every notebook sees the same music on every machine and a clip
never depends on which other clips were drawn. Each clip is a short piece in a key (melody over chords and bass, optional
drums) played by one instrument, with its score, a caption written from the metadata, and the
Music ControlNet controls (melody, dynamics, rhythm) computed from its audio.

Notebook: notebooks/00_audio_and_data.ipynb; every later notebook trains on it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset

from course_lib.control import HOP_LENGTH, all_controls
from course_lib.data.captions import make_caption
from course_lib.data.music_theory import (
    MODES,
    NOTE_NAMES,
    TEMPO_CLASSES,
    TEMPO_RANGES,
    Note,
    compose,
    midi_to_hz,
    tempo_class,
)
from course_lib.data.timbres import INSTRUMENTS, render_drum, render_note
from course_lib.errors import ConfigError

DYNAMICS = ("soft", "medium", "loud")
DYNAMICS_PEAK = {"soft": 0.225, "medium": 0.45, "loud": 0.9}  # peak level: 0.9 lowered by 12, 6, 0 dB
SHAPES = ("steady", "crescendo", "decrescendo")
SHAPE_VELOCITY = {"steady": (1.0, 1.0), "crescendo": (0.4, 1.0), "decrescendo": (1.0, 0.4)}  # start, end
DRUM_GAIN = 0.5  # drums sit under the melody, so the melody stays the strongest pitch class
MIN_SAMPLE_RATE = 8000  # the melody reaches 988 Hz with harmonics, the hi-hat needs room above it


@dataclasses.dataclass(eq=False, repr=False)
class Clip:
    """One SynthMusic clip: audio, score, metadata, caption; ``controls`` and ``labels`` on demand.

    Attributes:
        audio: ``(T,)`` float32, peak at ``DYNAMICS_PEAK[dynamics]`` (0.9 for "loud").
        sample_rate: Hz.
        notes: the score (see :class:`Note`; drums are notes of voice ``"drums"``).
        instrument: a name in ``SynthMusic.INSTRUMENTS``.
        tempo: beats per minute; beat 0 is at t = 0.
        key: tonic name, e.g. ``"A"``; ``mode`` is ``"major"`` or ``"minor"``.
        drums: whether drums play.
        dynamics: ``"soft"``, ``"medium"`` or ``"loud"`` (overall level);
        dynamics_shape: ``"steady"``, ``"crescendo"`` or ``"decrescendo"`` (velocity over time).
        caption: text written from the metadata.
        index, seed: where the clip comes from: ``SynthMusic(seed=seed)[index]``.
        hop_length: frame hop of ``controls``.
    """

    audio: torch.Tensor
    sample_rate: int
    notes: list[Note]
    instrument: str
    tempo: float
    key: str
    mode: str
    drums: bool
    dynamics: str
    dynamics_shape: str
    caption: str
    index: int
    seed: int
    hop_length: int = HOP_LENGTH

    @property
    def seconds(self) -> float:
        return self.audio.shape[-1] / self.sample_rate

    @property
    def tempo_class(self) -> str:
        return tempo_class(self.tempo)

    @functools.cached_property
    def controls(self) -> dict[str, torch.Tensor]:
        """``melody`` (12, F), ``loudness_db`` (F,), ``onset_strength`` (F,), ``onsets`` (F,) 0/1,
        ``beats`` (F,) 0/1 and ``beat_times`` (seconds), F = T // hop_length + 1; see
        :func:`course_lib.control.all_controls` (the beat grid uses the known tempo)."""
        return all_controls(self.audio, self.sample_rate, self.hop_length, tempo=self.tempo)  # type: ignore[return-value]

    @property
    def labels(self) -> dict[str, int]:
        """Small ints for classifiers: instrument, tempo_class, drums, mode, key (0 = C), dynamics."""
        return {
            "instrument": INSTRUMENTS.index(self.instrument),
            "tempo_class": TEMPO_CLASSES.index(self.tempo_class),
            "drums": int(self.drums),
            "mode": MODES.index(self.mode),
            "key": NOTE_NAMES.index(self.key),
            "dynamics": DYNAMICS.index(self.dynamics),
        }

    def onset_times(self, voices: Sequence[str] | None = None, merge_seconds: float = 0.03) -> list[float]:
        """Sorted onsets of the given voices (all by default), onsets closer than ``merge_seconds`` merged."""
        times = sorted(n.onset for n in self.notes if voices is None or n.voice in voices)
        merged: list[float] = []
        for t in times:
            if not merged or t - merged[-1] >= merge_seconds:
                merged.append(t)
        return merged

    def __repr__(self) -> str:
        return (
            f"Clip(index={self.index}, seed={self.seed}, {self.caption!r}, {self.seconds:.2f} s at "
            f"{self.sample_rate} Hz, {len(self.notes)} notes)"
        )


@dataclasses.dataclass(eq=False, repr=False)
class ClipBatch:
    """Clips collated for training: ``audio`` (B, T), ``captions``, ``labels`` (B,) ints, ``controls``."""

    audio: torch.Tensor
    sample_rate: int
    captions: list[str]
    clips: list[Clip]
    labels: dict[str, torch.Tensor]
    hop_length: int = HOP_LENGTH

    def __len__(self) -> int:
        return self.audio.shape[0]

    @functools.cached_property
    def controls(self) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """The clips' controls stacked, on the batch's device: ``melody`` (B, 12, F), ``loudness_db`` /
        ``onset_strength`` / ``onsets`` / ``beats`` (B, F), ``beat_times`` a list of B tensors.

        Computed clip by clip (and cached on each clip): on a CPU that is faster than one batched
        STFT, whose (B, K, F) spectrogram no longer fits in the cache."""
        device = self.audio.device
        per_clip = [clip.controls for clip in self.clips]
        stacked: dict[str, torch.Tensor | list[torch.Tensor]] = {
            name: torch.stack([c[name] for c in per_clip]).to(device) for name in per_clip[0] if name != "beat_times"
        }
        stacked["beat_times"] = [c["beat_times"].to(device) for c in per_clip]
        return stacked

    def to(self, device: torch.device | str) -> ClipBatch:
        """The batch with its audio, labels (and controls, when asked for) on ``device``."""
        labels = {name: value.to(device) for name, value in self.labels.items()}
        return ClipBatch(self.audio.to(device), self.sample_rate, self.captions, self.clips, labels, self.hop_length)

    def __repr__(self) -> str:
        return f"ClipBatch({len(self)} clips, audio {tuple(self.audio.shape)} at {self.sample_rate} Hz)"


class SynthMusic(Dataset[Clip]):
    """Procedural music clips: ``SynthMusic(n_clips, seconds, sample_rate, seed, instruments)``.

    Args:
        n_clips: number of clips (``len(ds)``).
        seconds: length of each clip.
        sample_rate: Hz, at least 8,000.
        seed: the dataset's seed; clip ``i`` depends only on ``(seed, i)`` (and the settings here).
        instruments: names from ``SynthMusic.INSTRUMENTS`` to draw from (None = all).
        drums_probability: chance that a clip has drums.
        hop_length: frame hop of the clips' controls.

    Example::

        ds = SynthMusic(n_clips=100, seconds=2.0)
        clip = ds[0]; clip.audio, clip.caption, clip.controls["melody"]
        loader = DataLoader(ds, batch_size=8, collate_fn=SynthMusic.collate)

    Notebooks: notebooks/00_audio_and_data.ipynb, 01_kmeans_vq.ipynb
    """

    INSTRUMENTS: ClassVar[tuple[str, ...]] = INSTRUMENTS
    TEMPO_CLASSES: ClassVar[tuple[str, ...]] = TEMPO_CLASSES
    DYNAMICS: ClassVar[tuple[str, ...]] = DYNAMICS
    MODES: ClassVar[tuple[str, ...]] = MODES

    def __init__(
        self,
        n_clips: int = 1000,
        seconds: float = 2.0,
        sample_rate: int = 16000,
        seed: int = 0,
        instruments: Sequence[str] | str | None = None,
        drums_probability: float = 0.5,
        hop_length: int = HOP_LENGTH,
    ) -> None:
        if not _is_int(n_clips) or n_clips < 1:
            raise ConfigError(f"n_clips must be a positive int, got {n_clips!r}: pass e.g. n_clips=1000.")
        if not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds < 0.25:
            raise ConfigError(
                f"seconds (the clip length) must be at least 0.25, got {seconds!r}: pass e.g. seconds=2.0."
            )
        if (
            not isinstance(sample_rate, (int, float))
            or sample_rate != int(sample_rate)
            or sample_rate < MIN_SAMPLE_RATE
        ):
            raise ConfigError(
                f"sample_rate must be a whole number of Hz ≥ {MIN_SAMPLE_RATE}, got {sample_rate!r}: "
                "pass sample_rate=16000 (the course's rate)."
            )
        if not _is_int(seed) or seed < 0:
            raise ConfigError(f"seed must be an int ≥ 0, got {seed!r}: pass e.g. seed=0.")
        if not 0.0 <= drums_probability <= 1.0:
            raise ConfigError(f"drums_probability must be in [0, 1], got {drums_probability!r}.")
        if not _is_int(hop_length) or hop_length <= 0:
            raise ConfigError(f"hop_length must be a positive int, got {hop_length!r}: the course uses {HOP_LENGTH}.")
        self.n_clips = int(n_clips)
        self.seconds = float(seconds)
        self.sample_rate = int(sample_rate)
        self.seed = int(seed)
        self.instruments = _check_instruments(instruments)
        self.drums_probability = float(drums_probability)
        self.hop_length = int(hop_length)
        self.num_samples = round(self.seconds * self.sample_rate)

    def __len__(self) -> int:
        return self.n_clips

    def __getitem__(self, index: int) -> Clip:
        if not _is_int(index):
            raise TypeError(
                f"SynthMusic indices are ints, got {type(index).__name__}: use ds.batch(n, start) for a range."
            )
        if not -self.n_clips <= index < self.n_clips:
            raise IndexError(f"clip {index} is out of range for {self.n_clips} clips.")
        return self._make_clip(int(index) % self.n_clips)

    def batch(self, n: int, start: int = 0) -> ClipBatch:
        """Clips ``start … start + n − 1`` collated into a :class:`ClipBatch`."""
        if not _is_int(n) or n < 1 or not _is_int(start) or start < 0 or start + n > self.n_clips:
            raise ConfigError(
                f"batch(n={n!r}, start={start!r}) does not fit {self.n_clips} clips: "
                f"use 1 ≤ n and 0 ≤ start with start + n ≤ {self.n_clips}."
            )
        return self.collate([self[i] for i in range(start, start + n)])

    @staticmethod
    def collate(clips: Sequence[Clip]) -> ClipBatch:
        """Stack clips of one length and sample rate (``collate_fn`` for a DataLoader)."""
        if not clips:
            raise ConfigError("collate needs at least one clip.")
        if len({(c.audio.shape[-1], c.sample_rate, c.hop_length) for c in clips}) > 1:
            raise ConfigError("collate needs clips of one length, sample rate and hop: draw them from one SynthMusic.")
        labels = {name: torch.tensor([c.labels[name] for c in clips]) for name in clips[0].labels}  # (B,) each
        audio = torch.stack([c.audio for c in clips])  # (B, T)
        return ClipBatch(
            audio, clips[0].sample_rate, [c.caption for c in clips], list(clips), labels, clips[0].hop_length
        )

    def _make_clip(self, index: int) -> Clip:
        rng = np.random.Generator(np.random.PCG64([self.seed, index]))
        instrument = self.instruments[rng.integers(len(self.instruments))]
        tempo_word = TEMPO_CLASSES[rng.integers(len(TEMPO_CLASSES))]
        tempo = round(float(rng.uniform(*TEMPO_RANGES[tempo_word])), 1)
        tonic, mode = int(rng.integers(12)), MODES[rng.integers(len(MODES))]
        drums = bool(rng.random() < self.drums_probability)
        dynamics, shape = DYNAMICS[rng.integers(len(DYNAMICS))], SHAPES[rng.integers(len(SHAPES))]
        notes = compose(rng, self.seconds, tempo, tonic, mode, drums, SHAPE_VELOCITY[shape])
        key = NOTE_NAMES[tonic]
        caption = make_caption(rng, instrument, tempo_word, tempo, f"{key} {mode}", dynamics, shape, drums)
        audio = render_score(notes, instrument, self.sample_rate, self.num_samples, rng)  # (T,)
        audio *= DYNAMICS_PEAK[dynamics] / max(float(np.abs(audio).max()), 1e-9)
        return Clip(
            torch.from_numpy(audio.astype(np.float32)), self.sample_rate, notes, instrument, tempo, key, mode,
            drums, dynamics, shape, caption, index, self.seed, self.hop_length,
        )  # fmt: skip

    def __repr__(self) -> str:
        return (
            f"SynthMusic(n_clips={self.n_clips}, seconds={self.seconds}, sample_rate={self.sample_rate}, "
            f"seed={self.seed}, instruments={list(self.instruments)})"
        )


def render_score(
    notes: Sequence[Note], instrument: str, sample_rate: int, num_samples: int, rng: np.random.Generator
) -> np.ndarray:
    """Mix every note of a score into ``(num_samples,)`` float64 audio (pitched voices by ``instrument``)."""
    mix = np.zeros(num_samples)
    for note in notes:
        start = round(note.onset * sample_rate)
        if note.voice == "drums":
            sound = DRUM_GAIN * render_drum(note.pitch, note.velocity, sample_rate, rng)
        else:
            sound = render_note(
                instrument, float(midi_to_hz(note.pitch)), note.duration, note.velocity, sample_rate, rng
            )
        stop = min(start + len(sound), num_samples)
        mix[start:stop] += sound[: stop - start]
    return mix


def _check_instruments(instruments: Sequence[str] | str | None) -> tuple[str, ...]:
    if instruments is None:
        return INSTRUMENTS
    names = [instruments] if isinstance(instruments, str) else list(instruments)
    unknown = [name for name in names if name not in INSTRUMENTS]
    if unknown or not names:
        problem = f"unknown instrument name(s) {unknown}" if unknown else "no instrument given"
        raise ConfigError(
            f"{problem}: choose from {', '.join(INSTRUMENTS)} (or pass instruments=None for all of them)."
        )
    return tuple(dict.fromkeys(names))


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
