"""Real music datasets behind the same clip interface as SynthMusic: ``load_dataset(name, split, ...)``.

Every notebook trains on SynthMusic by default; switching to real music is one argument::

    ds = load_dataset("nsynth", split="test", sample_rate=16000, seconds=2.0)   # or "synth"
    clip = ds[0]; clip.audio, clip.sample_rate, clip.caption, clip.metadata
    batch = ds.batch(8)              # a ClipBatch, as SynthMusic.batch(8)

Each dataset is a list of :class:`Recording` (a file, its caption, its metadata) read by one module
per dataset family (:mod:`~course_lib.data.nsynth`, :mod:`~course_lib.data.maestro`,
:mod:`~course_lib.data.fma`, :mod:`~course_lib.data.musiccaps`, :mod:`~course_lib.data.gtzan`).
:class:`MusicDataset` cuts recordings into clips of ``seconds`` at ``sample_rate`` (mono), reading only
the excerpt it needs. The files come from ``python data_scripts/fetch.py NAME`` into
``$COURSE_DATA/NAME`` (see :func:`course_lib.config.data_dir`); loading never downloads.

Notebook: every notebook's data cell (data_scripts/README.md has the snippet).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset

from course_lib.audio.io import resample
from course_lib.config import data_dir
from course_lib.control import HOP_LENGTH, all_controls, num_frames
from course_lib.data.midi import melody_from_notes, notes_between, read_midi_cached
from course_lib.data.music_theory import Note
from course_lib.data.synth_music import ClipBatch, SynthMusic
from course_lib.errors import AudioInputError, ConfigError, CourseError

CROPS = ("start", "center", "random", "windows")
FETCH_SCRIPT = "python data_scripts/fetch.py"


class DatasetNotFoundError(CourseError, FileNotFoundError):
    """A dataset (or the split asked for) that is not on disk yet: the message gives the fetch command."""


@dataclasses.dataclass(frozen=True)
class Recording:
    """One audio file of a dataset and what its metadata says about it.

    Attributes:
        path: the audio file.
        caption: text written from the metadata (or the dataset's own caption).
        duration: seconds, as the metadata says (the file may be a little shorter; clips are padded).
        labels: small ints for classifiers (names in the dataset's ``classes``).
        metadata: the dataset's own fields for this file.
        midi_path: the aligned MIDI file, where the dataset has one (MAESTRO).
    """

    path: Path
    caption: str
    duration: float
    labels: dict[str, int] = dataclasses.field(default_factory=dict)
    metadata: dict = dataclasses.field(default_factory=dict)
    midi_path: Path | None = None


@dataclasses.dataclass(frozen=True)
class DatasetFamily:
    """How to read one dataset: its splits, subsets, default crop and index reader.

    ``read(root, split, subset)`` returns the recordings and the label names (``classes``), or raises
    :class:`DatasetNotFoundError` with the fetch command.
    """

    name: str
    title: str
    splits: tuple[str | None, ...]
    default_split: str | None
    read: Callable[[Path, str | None, str | None], tuple[list[Recording], dict[str, tuple[str, ...]]]]
    split_aliases: dict[str, str] = dataclasses.field(default_factory=dict)
    subsets: tuple[str | None, ...] = (None,)
    default_crop: str = "center"


@dataclasses.dataclass(eq=False, repr=False)
class MusicClip:
    """A clip of a real recording, with the fields of a SynthMusic :class:`~course_lib.data.Clip` that apply.

    Attributes:
        audio: ``(T,)`` float32 mono.
        sample_rate: Hz.
        caption: text for text conditioning.
        labels: small ints (names in ``dataset.classes``).
        metadata: the dataset's fields for the recording.
        dataset: the dataset's name; ``index`` the clip's index in it.
        path: the recording; ``offset`` where the clip starts in it (seconds).
        midi_path: the recording's aligned MIDI file, where the dataset has one (MAESTRO).
        hop_length: frame hop of ``controls``.
    """

    audio: torch.Tensor
    sample_rate: int
    caption: str
    labels: dict[str, int]
    metadata: dict
    dataset: str
    index: int
    path: Path
    offset: float
    midi_path: Path | None = None
    hop_length: int = HOP_LENGTH

    @property
    def seconds(self) -> float:
        return self.audio.shape[-1] / self.sample_rate

    @functools.cached_property
    def notes(self) -> list[Note] | None:
        """The score inside the clip, onsets relative to its start (``None`` without MIDI); read on first use."""
        if self.midi_path is None:
            return None
        return notes_between(read_midi_cached(str(self.midi_path)), self.offset, self.offset + self.seconds)

    @functools.cached_property
    def controls(self) -> dict[str, torch.Tensor]:
        """``melody`` (12, F), ``loudness_db``, ``onset_strength``, ``onsets``, ``beats`` (F,) and
        ``beat_times``, computed from the audio as for SynthMusic (the tempo is estimated)."""
        return all_controls(self.audio, self.sample_rate, self.hop_length)  # type: ignore[return-value]

    @property
    def score_melody(self) -> torch.Tensor | None:
        """``(12, F)`` melody control read from the MIDI notes (exact), or ``None`` without a score."""
        if self.notes is None:
            return None
        frames = num_frames(self.audio.shape[-1], self.hop_length)
        return melody_from_notes(self.notes, frames, self.sample_rate / self.hop_length)

    def __repr__(self) -> str:
        return (
            f"MusicClip({self.dataset}[{self.index}], {self.caption!r}, {self.seconds:.2f} s at "
            f"{self.sample_rate} Hz, from {self.path.name} at {self.offset:.2f} s)"
        )


class MusicDataset(Dataset[MusicClip]):
    """Clips cut from a dataset's recordings; use :func:`load_dataset` to make one.

    Args:
        name: the dataset's name (for messages and ``clip.dataset``).
        recordings: what :class:`DatasetFamily.read` returned.
        sample_rate: Hz of every clip (``None`` keeps each file's rate; batches then need equal rates).
        seconds: clip length; ``None`` takes whole recordings (``crop`` must be ``"start"``).
        crop: ``"start"`` (each recording's beginning), ``"center"``, ``"random"`` (an offset drawn
            from ``(seed, index)``: the same clip every time, another ``seed`` gives other crops) or
            ``"windows"`` (every non-overlapping window of ``seconds``: many clips per recording).
        n_clips: keep this many clips, picked by ``seed`` (``None`` keeps all).
        seed: for ``n_clips`` and ``crop="random"``.
        classes: label names, e.g. ``{"genre": ("blues", ...)}``.
        hop_length: frame hop of the clips' controls.
    """

    def __init__(
        self,
        name: str,
        recordings: Sequence[Recording],
        sample_rate: int | None = 16000,
        seconds: float | None = 2.0,
        crop: str = "center",
        n_clips: int | None = None,
        seed: int = 0,
        classes: dict[str, tuple[str, ...]] | None = None,
        hop_length: int = HOP_LENGTH,
    ) -> None:
        if crop not in CROPS:
            raise ConfigError(f"Unknown crop {crop!r}: use one of {', '.join(CROPS)}.")
        if seconds is not None and not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds > 0):
            raise ConfigError(f"seconds must be a positive number or None (whole recordings), got {seconds!r}.")
        if seconds is None and crop != "start":
            raise ConfigError("seconds=None takes whole recordings: use crop='start' (or give seconds=2.0).")
        if sample_rate is not None and (sample_rate != int(sample_rate) or sample_rate <= 0):
            raise ConfigError(f"sample_rate must be a positive whole number of Hz, got {sample_rate!r}.")
        if not recordings:
            raise DatasetNotFoundError(f"{name}: no recordings to make clips from.")
        self.name = name
        self.recordings = list(recordings)
        self.sample_rate = None if sample_rate is None else int(sample_rate)
        self.seconds = None if seconds is None else float(seconds)
        self.crop = crop
        self.seed = int(seed)
        self.classes = dict(classes or {})
        self.hop_length = int(hop_length)
        self.items = self._make_items()  # (recording index, offset in seconds; NaN = drawn at random)
        if n_clips is not None:
            if not isinstance(n_clips, (int, np.integer)) or n_clips < 1:
                raise ConfigError(f"n_clips must be a positive int or None (all clips), got {n_clips!r}.")
            if n_clips < len(self.items):
                keep = np.sort(np.random.default_rng(self.seed).permutation(len(self.items))[:n_clips])
                self.items = [self.items[i] for i in keep]

    def _make_items(self) -> list[tuple[int, float]]:
        items: list[tuple[int, float]] = []
        for number, recording in enumerate(self.recordings):
            if self.crop == "start" or self.seconds is None:
                items.append((number, 0.0))
            elif self.crop == "center":
                items.append((number, max(recording.duration - self.seconds, 0.0) / 2))
            elif self.crop == "random":
                items.append((number, math.nan))
            else:
                count = max(int(recording.duration / self.seconds + 1e-6), 1)
                items.extend((number, k * self.seconds) for k in range(count))
        return items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> MusicClip:
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
            raise TypeError(
                f"Dataset indices are ints, got {type(index).__name__}: use ds.batch(n, start) for a range."
            )
        if not -len(self) <= index < len(self):
            raise IndexError(f"clip {index} is out of range for {len(self)} clips.")
        index = int(index) % len(self)
        number, offset = self.items[index]
        recording = self.recordings[number]
        if math.isnan(offset):
            rng = np.random.Generator(np.random.PCG64([self.seed, index]))
            offset = float(rng.uniform(0.0, max(recording.duration - (self.seconds or 0.0), 0.0)))
        audio, rate = read_excerpt(recording.path, offset, self.seconds, self.sample_rate)
        return MusicClip(
            audio, rate, recording.caption, dict(recording.labels), recording.metadata,
            self.name, index, recording.path, offset, recording.midi_path, self.hop_length,
        )  # fmt: skip

    def batch(self, n: int, start: int = 0) -> ClipBatch:
        """Clips ``start … start + n − 1`` collated into a :class:`ClipBatch`, as ``SynthMusic.batch``."""
        if not isinstance(n, (int, np.integer)) or n < 1 or start < 0 or start + n > len(self):
            raise ConfigError(
                f"batch(n={n!r}, start={start!r}) does not fit {len(self)} clips: "
                f"use 1 ≤ n and 0 ≤ start with start + n ≤ {len(self)}."
            )
        return self.collate([self[i] for i in range(start, start + n)])

    @staticmethod
    def collate(clips: Sequence[MusicClip]) -> ClipBatch:
        """Stack clips of one length and sample rate (``collate_fn`` for a DataLoader)."""
        if not clips:
            raise ConfigError("collate needs at least one clip.")
        if len({(c.audio.shape[-1], c.sample_rate, c.hop_length) for c in clips}) > 1:
            raise ConfigError(
                "collate needs clips of one length and sample rate: load the dataset with seconds=... and "
                "sample_rate=... set (not None)."
            )
        labels = {name: torch.tensor([c.labels[name] for c in clips]) for name in clips[0].labels}  # (B,) each
        audio = torch.stack([c.audio for c in clips])  # (B, T)
        return ClipBatch(
            audio, clips[0].sample_rate, [c.caption for c in clips], list(clips), labels, clips[0].hop_length
        )

    @property
    def hours(self) -> float:
        """Hours of audio in the recordings (from their metadata)."""
        return sum(r.duration for r in self.recordings) / 3600

    def __repr__(self) -> str:
        return (
            f"MusicDataset({self.name!r}, {len(self)} clips of {self.seconds} s at {self.sample_rate} Hz "
            f"from {len(self.recordings)} recordings ({self.hours:.1f} h), crop={self.crop!r})"
        )


def read_excerpt(
    path: str | os.PathLike, offset: float, seconds: float | None, sample_rate: int | None
) -> tuple[torch.Tensor, int]:
    """``seconds`` of mono audio from ``offset`` in a file, resampled, zero-padded past its end.

    Only the excerpt is decoded (a seek, then a read), so a clip of a 20-minute MAESTRO recording
    costs as much as a clip of a 4-second NSynth note.

    Returns:
        ``(audio (T,), rate)`` with ``T = round(seconds * rate)`` when ``seconds`` is given.

    Raises:
        AudioInputError: for a missing or unreadable file.
    """
    path = Path(path)
    if not path.exists():
        raise AudioInputError(f"No audio file at {path}: the dataset folder is incomplete; fetch it again.")
    try:
        with sf.SoundFile(path) as handle:
            native = handle.samplerate
            start = min(max(round(offset * native), 0), handle.frames)
            handle.seek(start)
            frames = -1 if seconds is None else math.ceil(seconds * native)
            data = handle.read(frames, dtype="float32", always_2d=True)  # (T, C)
    except (sf.LibsndfileError, RuntimeError, TypeError) as error:
        raise AudioInputError(
            f"Cannot read {path} as audio ({error}): the file is corrupt; delete it and fetch the dataset again."
        ) from None
    audio = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))  # (T,)
    rate = native if sample_rate is None else int(sample_rate)
    if audio.numel():  # nothing to resample when the offset is past the file's end
        audio = resample(audio, native, rate)
    if seconds is not None:
        length = round(seconds * rate)
        audio = torch.nn.functional.pad(audio[:length], (0, max(length - audio.shape[-1], 0)))
    return audio, rate


def missing_dataset(title: str, what: str, expected: Path, fetch_args: str, size: str) -> DatasetNotFoundError:
    """The error for a dataset that is not on disk: what is missing, where, and the command that fetches it."""
    return DatasetNotFoundError(
        f"{' '.join(filter(None, (title, what)))} is not on disk: {expected} does not exist. Fetch it with\n"
        f"    {FETCH_SCRIPT} {fetch_args}\n"
        f"({size}; it goes to $COURSE_DATA, now {data_dir(create=False)}), "
        "or pass root= to the folder where you keep it."
    )


def dataset_families() -> dict[str, DatasetFamily]:
    """The real datasets :func:`load_dataset` knows, by name."""
    # Imported here: each family module imports Recording from this one.
    from course_lib.data import fma, gtzan, maestro, musiccaps, nsynth

    families = (nsynth.FAMILY, maestro.FAMILY, fma.FAMILY, musiccaps.FAMILY, gtzan.FAMILY)
    return {family.name: family for family in families}


SYNTH_SPLIT_SEEDS = {None: 0, "train": 0, "valid": 1, "validation": 1, "test": 2}  # added to the seed


def load_dataset(
    name: str,
    split: str | None = None,
    *,
    subset: str | None = None,
    sample_rate: int | None = 16000,
    seconds: float | None = 2.0,
    crop: str | None = None,
    n_clips: int | None = None,
    seed: int = 0,
    root: str | os.PathLike | None = None,
    hop_length: int = HOP_LENGTH,
    **synth_options,
) -> MusicDataset | SynthMusic:
    """Load a dataset by name: ``"synth"`` (SynthMusic) or a real one fetched by ``data_scripts/fetch.py``.

    Args:
        name: ``"synth"``, ``"nsynth"``, ``"maestro"``, ``"fma"``, ``"musiccaps"`` or ``"gtzan"``.
        split: the dataset's split (``"train"``, ``"valid"``/``"validation"``, ``"test"``; see each
            family's ``splits``); ``None`` for the default one. For ``"synth"`` the split shifts the seed
            (train +0, validation +1, test +2) so that test clips differ from training clips.
        subset: FMA's ``"small"``/``"medium"``/``"large"``; unused elsewhere.
        sample_rate: Hz of every clip (16 kHz is the course's rate).
        seconds: clip length in seconds.
        crop: where clips are cut from recordings (:class:`MusicDataset`); the family's default if ``None``.
        n_clips: how many clips (``None``: all; SynthMusic's default is 1000).
        seed: picks ``n_clips`` and random crops; SynthMusic's seed.
        root: the dataset's folder; default ``$COURSE_DATA/<name>``.
        hop_length: frame hop of the clips' controls.
        synth_options: further SynthMusic arguments (``instruments``, ``drums_probability``).

    Returns:
        A :class:`MusicDataset` (or a :class:`SynthMusic`): ``ds[i]`` is a clip with ``.audio``,
        ``.sample_rate``, ``.caption``; ``ds.batch(n)`` and ``ds.collate`` give a :class:`ClipBatch`.

    Raises:
        ConfigError: for an unknown name, split, subset or option.
        DatasetNotFoundError: when the dataset is not on disk (the message gives the fetch command).

    Notebook: notebooks/00_audio_and_data.ipynb
    """
    key = name.strip().lower()
    if key == "synth":
        if split not in SYNTH_SPLIT_SEEDS:
            raise ConfigError(f"Unknown split {split!r} for synth: use train, validation or test.")
        return SynthMusic(
            n_clips=1000 if n_clips is None else n_clips, seconds=seconds, sample_rate=sample_rate,
            seed=seed + SYNTH_SPLIT_SEEDS[split], hop_length=hop_length, **synth_options,
        )  # fmt: skip
    if synth_options:
        raise ConfigError(f"Options {sorted(synth_options)} are SynthMusic's; {name!r} does not take them.")
    families = dataset_families()
    if key not in families:
        raise ConfigError(f"Unknown dataset {name!r}: use one of synth, {', '.join(families)}.")
    family = families[key]
    split = family.default_split if split is None else family.split_aliases.get(split, split)
    if split not in family.splits:
        if family.splits == (None,):
            raise ConfigError(f"{family.title} has no official split: use split=None (all of it).")
        raise ConfigError(f"{family.title} has no split {split!r}: use one of {', '.join(map(str, family.splits))}.")
    subset = family.subsets[0] if subset is None else subset
    if subset not in family.subsets:
        raise ConfigError(f"{family.title} has no subset {subset!r}: use one of {', '.join(map(str, family.subsets))}.")
    folder = Path(root) if root is not None else data_dir(create=False) / family.name
    recordings, classes = family.read(folder, split, subset)
    return MusicDataset(
        family.name, recordings, sample_rate, seconds, crop or family.default_crop, n_clips, seed, classes, hop_length
    )
