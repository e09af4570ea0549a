"""Tests of the real-dataset loaders (course_lib.data.load_dataset) and the MIDI reader.

Each test writes a tiny copy of a dataset in its real layout (NSynth's examples.json and WAVs, FMA's
three-row tracks.csv and MP3s, MAESTRO's CSV with WAV and MIDI, MusicCaps' CSV, GTZAN's genre
folders) and loads it through the same interface as SynthMusic. Nothing is downloaded.
"""

from __future__ import annotations

import csv
import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from course_lib.control import num_frames
from course_lib.data import (
    ClipBatch,
    DatasetNotFoundError,
    MusicClip,
    MusicDataset,
    SynthMusic,
    load_dataset,
    melody_from_notes,
    read_midi,
)
from course_lib.data.midi import MidiFileError, notes_between
from course_lib.data.musiccaps import read_captions
from course_lib.errors import ConfigError


def tone(frequency: float, seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    wave = (0.4 * np.sin(2 * math.pi * frequency * t)).astype(np.float32)
    return wave if channels == 1 else np.stack([wave] * channels, axis=1)


# --- MIDI files written by the tests -----------------------------------------------------------------


def varlen(value: int) -> bytes:
    out = [value & 0x7F]
    while value > 0x7F:
        value >>= 7
        out.insert(0, (value & 0x7F) | 0x80)
    return bytes(out)


def midi_bytes(tracks: list[list[tuple[int, bytes]]], division: int = 480) -> bytes:
    """A format-1 Standard MIDI File from ``(delta ticks, event bytes)`` lists."""
    chunks = [b"MThd" + struct.pack(">IHHH", 6, 1, len(tracks), division)]
    for events in tracks:
        body = b"".join(varlen(delta) + event for delta, event in events) + b"\x00\xff\x2f\x00"
        chunks.append(b"MTrk" + struct.pack(">I", len(body)) + body)
    return b"".join(chunks)


def piano_midi() -> bytes:
    """C4 0–0.5 s, B4 0.25–0.5 s, E4 0.5–1 s, G4 1–1.5 s held by the pedal to 2 s, A4 2–2.25 s after a
    tempo doubling, a bass C3 under all of it, and a drum hit on channel 10."""
    tempo = [
        (0, b"\xff\x51\x03" + (500_000).to_bytes(3, "big")),
        (1920, b"\xff\x51\x03" + (250_000).to_bytes(3, "big")),
    ]
    piano = [
        (0, b"\xc0\x00"),  # program change: one data byte, skipped
        (0, b"\xf0\x03\x7e\x7f\xf7"),  # a system-exclusive message, skipped
        (0, b"\x90\x3c\x64"),  # C4 on
        (0, b"\x90\x30\x50"),  # C3 on (bass, below the melody range)
        (0, b"\x99\x24\x70"),  # kick drum on channel 10
        (240, b"\x90\x47\x40"),  # B4 on at 0.25 s
        (240, b"\x3c\x00"),  # running status: C4 "on" with velocity 0 = off, at 0.5 s
        (0, b"\x80\x47\x00"),  # B4 off
        (0, b"\x90\x40\x50"),  # E4 on
        (480, b"\x80\x40\x00"),  # E4 off at 1 s
        (0, b"\xb0\x40\x7f"),  # sustain pedal down
        (0, b"\x90\x43\x50"),  # G4 on
        (480, b"\x80\x43\x00"),  # G4 key up at 1.5 s (the pedal holds it)
        (480, b"\xb0\x40\x00"),  # pedal up at 2 s
        (0, b"\x90\x45\x50"),  # A4 on at 2 s
        (0, b"\x89\x24\x00"),  # kick off
        (480, b"\x80\x45\x00"),  # A4 off: 480 ticks at 240 BPM = 0.25 s later
        (0, b"\x80\x30\x00"),  # C3 off at 2.25 s
    ]
    return midi_bytes([tempo, piano])


def test_read_midi_notes_tempo_and_pedal(tmp_path):
    path = tmp_path / "piece.midi"
    path.write_bytes(piano_midi())
    notes = read_midi(path)
    pitched = [(round(n.onset, 6), round(n.duration, 6), n.pitch) for n in notes if n.voice == "piano"]
    assert pitched == [
        (0.0, 2.25, 48),
        (0.0, 0.5, 60),
        (0.25, 0.25, 71),
        (0.5, 0.5, 64),
        (1.0, 1.0, 67),
        (2.0, 0.25, 69),
    ]
    assert [n.pitch for n in notes if n.voice == "drums"] == [36]
    assert next(n for n in notes if n.pitch == 60).velocity == pytest.approx(100 / 127)
    dry = {n.pitch: n.duration for n in read_midi(path, sustain=False)}
    assert dry[67] == pytest.approx(0.5)  # without the pedal, G4 ends when its key is released


def test_melody_from_notes_is_the_skyline_above_middle_c(tmp_path):
    path = tmp_path / "piece.midi"
    path.write_bytes(piano_midi())
    melody = melody_from_notes(read_midi(path), num_frames=250, frame_rate=100.0)  # (12, 250)
    assert melody.shape == (12, 250)
    classes = [int(melody[:, f].argmax()) if melody[:, f].any() else None for f in (10, 30, 60, 150, 210, 240)]
    assert classes == [0, 11, 4, 7, 9, None]  # C4, B4 over C4, E4, G4 (pedal), A4, silence
    assert melody.sum(0).max() == 1


def test_notes_between_cuts_and_shifts(tmp_path):
    path = tmp_path / "piece.midi"
    path.write_bytes(piano_midi())
    window = notes_between(read_midi(path), 1.2, 2.1)
    assert {(n.pitch, round(n.onset, 6), round(n.duration, 6)) for n in window if n.voice == "piano"} == {
        (48, 0.0, 0.9), (67, 0.0, 0.8), (69, 0.8, 0.1),
    }  # fmt: skip


def test_read_midi_rejects_other_files(tmp_path):
    (tmp_path / "x.mid").write_bytes(b"RIFF....")
    with pytest.raises(MidiFileError, match="not a Standard MIDI File"):
        read_midi(tmp_path / "x.mid")
    (tmp_path / "cut.mid").write_bytes(piano_midi()[:40])
    with pytest.raises(MidiFileError, match="cut short"):
        read_midi(tmp_path / "cut.mid")


# --- NSynth ------------------------------------------------------------------------------------------


def write_nsynth(root: Path) -> Path:
    folder = root / "nsynth-test"
    (folder / "audio").mkdir(parents=True)
    examples = {}
    for family, family_id, source, source_id, pitch, velocity, qualities in [
        ("guitar", 3, "acoustic", 0, 60, 100, ["bright", "percussive"]),
        ("synth_lead", 9, "synthetic", 2, 69, 25, []),
        ("bass", 0, "electronic", 1, 40, 127, ["dark"]),
    ]:
        key = f"{family}_{source}_001-{pitch:03d}-{velocity:03d}"
        examples[key] = {
            "note_str": key, "pitch": pitch, "velocity": velocity, "sample_rate": 16000,
            "instrument_family": family_id, "instrument_family_str": family,
            "instrument_source": source_id, "instrument_source_str": source, "qualities_str": qualities,
        }  # fmt: skip
        sf.write(
            folder / "audio" / f"{key}.wav", tone(440 * 2 ** ((pitch - 69) / 12), 4.0, 16000), 16000, subtype="PCM_16"
        )
    (folder / "examples.json").write_text(json.dumps(examples))
    return root


def test_nsynth_clips_captions_and_batches(tmp_path):
    root = write_nsynth(tmp_path / "nsynth")
    ds = load_dataset("nsynth", split="test", sample_rate=16000, seconds=2.0, root=root)
    assert isinstance(ds, MusicDataset) and len(ds) == 3
    clip = ds[0]  # sorted by name: bass_electronic_001-040-127
    assert isinstance(clip, MusicClip) and clip.audio.shape == (32000,) and clip.sample_rate == 16000
    assert clip.caption == "a very loud electronic bass note, E2, dark"
    assert clip.labels == {"instrument_family": 0, "instrument_source": 1, "pitch": 40, "velocity": 127}
    captions = [ds[i].caption for i in range(3)]
    assert "a loud acoustic guitar note, C4, bright and percussive" in captions
    assert "a very soft synthetic synth lead note, A4" in captions
    assert clip.offset == 0.0  # NSynth clips start at the attack
    batch = ds.batch(3)
    assert isinstance(batch, ClipBatch) and batch.audio.shape == (3, 32000)
    assert batch.labels["instrument_family"].tolist() == [0, 3, 9]
    assert ds.classes["instrument_family"][3] == "guitar"
    low = load_dataset("nsynth", split="test", sample_rate=8000, seconds=1.0, root=root)
    assert low[0].audio.shape == (8000,) and low[0].sample_rate == 8000


def test_clips_give_controls_like_synthmusic(tmp_path):
    ds = load_dataset("nsynth", sample_rate=16000, seconds=1.0, root=write_nsynth(tmp_path / "nsynth"))
    controls = ds.batch(2).controls
    frames = num_frames(16000)
    assert controls["melody"].shape == (2, 12, frames) and controls["loudness_db"].shape == (2, frames)
    assert int(controls["melody"][1, :, 50].argmax()) == 0  # the guitar's C4
    assert ds[0].score_melody is None  # no MIDI in NSynth


def test_missing_dataset_names_the_fetch_command(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"python data_scripts/fetch.py nsynth --split valid"):
        load_dataset("nsynth", split="validation", root=tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="Unknown dataset"):
        load_dataset("imagenet")
    with pytest.raises(ConfigError, match="no split 'dev'"):
        load_dataset("nsynth", split="dev", root=tmp_path)
    with pytest.raises(ConfigError, match="no official split"):
        load_dataset("gtzan", split="test", root=tmp_path)


def test_synth_is_one_argument_away():
    train = load_dataset("synth", n_clips=4, seconds=1.0, sample_rate=16000)
    test = load_dataset("synth", split="test", n_clips=4, seconds=1.0, sample_rate=16000)
    assert isinstance(train, SynthMusic) and len(train) == 4 and test.seed == train.seed + 2
    with pytest.raises(ConfigError, match="SynthMusic's"):
        load_dataset("nsynth", instruments=["organ"])


# --- FMA ---------------------------------------------------------------------------------------------

FMA_TRACKS = [  # track_id, split, subset, genre_top, genres, tags, title, duration
    (2, "training", "small", "Hip-Hop", "[21]", "[]", "Food", 168),
    (5, "training", "small", "Electronic", "[15, 32]", "['dark', 'lo-fi']", "Night", 3),
    (10, "test", "small", "Pop", "[10]", "[]", "Song", 30),
    (140, "training", "medium", "Folk", "[17]", "[]", "Road", 30),
]


def write_fma(root: Path) -> Path:
    meta = root / "fma_metadata"
    meta.mkdir(parents=True)
    columns = [
        ("artist", "name"), ("set", "split"), ("set", "subset"), ("track", "duration"), ("track", "genre_top"),
        ("track", "genres"), ("track", "license"), ("track", "tags"), ("track", "title"),
    ]  # fmt: skip
    with open(meta / "tracks.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([""] + [group for group, _ in columns])
        writer.writerow([""] + [field for _, field in columns])
        writer.writerow(["track_id"] + [""] * len(columns))
        for track_id, split, subset, top, genres, tags, title, duration in FMA_TRACKS:
            writer.writerow([track_id, "AWOL", split, subset, duration, top, genres, "CC BY", tags, title])
    with open(meta / "genres.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["genre_id", "#tracks", "parent", "title", "top_level"])
        for genre_id, title in [(10, "Pop"), (15, "Electronic"), (17, "Folk"), (21, "Hip-Hop"), (32, "Ambient")]:
            writer.writerow([genre_id, 1, 0, title, genre_id])
    for track_id, *_ in FMA_TRACKS:
        name = f"{track_id:06d}"
        (root / "fma_small" / name[:3]).mkdir(parents=True, exist_ok=True)
        sf.write(root / "fma_small" / name[:3] / f"{name}.mp3", tone(330, 3.0, 22050, 2), 22050, format="MP3")
    return root


def test_fma_reads_tracks_csv_and_mp3(tmp_path):
    root = write_fma(tmp_path / "fma")
    ds = load_dataset("fma", split="train", subset="small", sample_rate=16000, seconds=2.0, crop="start", root=root)
    assert len(ds) == 2  # the medium-only track and the test track are left out
    assert ds.classes["genre"] == ("Electronic", "Hip-Hop")
    clips = [ds[0], ds[1]]
    assert clips[0].caption == "a hip-hop track"
    assert clips[1].caption == "an electronic track with elements of ambient, tagged dark, lo-fi"
    assert [c.labels["genre"] for c in clips] == [1, 0]
    assert clips[1].metadata["track.title"] == "Night" and clips[1].metadata["tags"] == ["dark", "lo-fi"]
    assert clips[0].audio.shape == (32000,) and clips[0].audio.abs().max() > 0.2  # decoded MP3, mixed to mono
    assert ds.recordings[1].duration == 3.0  # min(30 s clip, track duration)
    test = load_dataset("fma", split="test", root=root, seconds=1.0)
    assert len(test) == 1 and test[0].caption == "a pop track"
    with pytest.raises(DatasetNotFoundError, match="fma --subset medium --accept-license"):
        load_dataset("fma", subset="medium", root=root)


# --- MAESTRO -----------------------------------------------------------------------------------------


def write_maestro(root: Path, with_audio: bool = True) -> Path:
    base = root / "maestro-v3.0.0"
    (base / "2018").mkdir(parents=True)
    rows = [
        ("Frédéric Chopin", "Nocturne in E-flat Major, Op. 9 No. 2", "test", 2018, "2018/a.midi", "2018/a.wav", 3.0),
        ("Joseph Haydn", "Sonata in C Major", "train", 2018, "2018/b.midi", "2018/b.wav", 2.0),
    ]
    with open(base / "maestro-v3.0.0.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["canonical_composer", "canonical_title", "split", "year", "midi_filename", "audio_filename", "duration"]
        )
        writer.writerows(rows)
    for row in rows:
        (base / row[4]).write_bytes(piano_midi())
        if with_audio:
            sf.write(base / row[5], tone(261.63, row[6], 44100, 2), 44100, subtype="PCM_16")
    return root


def test_maestro_clips_carry_their_score(tmp_path):
    root = write_maestro(tmp_path / "maestro")
    ds = load_dataset("maestro", split="test", sample_rate=16000, seconds=1.0, crop="windows", root=root)
    assert len(ds) == 3  # three one-second windows of the 3-s test performance
    clip = ds[1]
    assert clip.offset == 1.0 and clip.audio.shape == (16000,)
    assert (
        clip.caption
        == "solo piano: Nocturne in E-flat Major, Op. 9 No. 2 by Frédéric Chopin, a live performance from 2018"
    )
    onsets = sorted((n.pitch, round(n.onset, 6)) for n in clip.notes if n.voice == "piano")
    assert onsets == [(48, 0.0), (67, 0.0)]  # the bass and the pedalled G4, both from the clip's start
    melody = clip.score_melody  # (12, F)
    assert melody.shape == (12, num_frames(16000)) and int(melody[:, 20].argmax()) == 7
    assert ds.classes["composer"] == ("Frédéric Chopin", "Joseph Haydn") and clip.labels == {"composer": 0}


def test_maestro_without_audio_says_how_to_fetch_it(tmp_path):
    root = write_maestro(tmp_path / "maestro", with_audio=False)
    with pytest.raises(DatasetNotFoundError, match=r"(?s)1 of 1 audio files.*fetch.py maestro --split test"):
        load_dataset("maestro", split="test", root=root)


def test_random_crops_are_reproducible(tmp_path):
    root = write_maestro(tmp_path / "maestro")
    first = load_dataset("maestro", split="test", seconds=0.5, crop="random", seed=3, root=root)
    again = load_dataset("maestro", split="test", seconds=0.5, crop="random", seed=3, root=root)
    other = load_dataset("maestro", split="test", seconds=0.5, crop="random", seed=4, root=root)
    assert first[0].offset == again[0].offset != other[0].offset
    assert 0.0 <= first[0].offset <= 2.5
    with pytest.raises(ConfigError, match="Unknown crop"):
        load_dataset("maestro", split="test", crop="middle", root=root)


# --- MusicCaps ---------------------------------------------------------------------------------------

MUSICCAPS_ROWS = [  # ytid, start, end, aspect_list, caption, is_audioset_eval
    (
        "-0Gj8-vB1q4",
        30,
        40,
        "['low quality', 'sustained strings melody']",
        "A string ensemble plays a slow melody.",
        "True",
    ),
    (
        "-0SdAVK79lg",
        30,
        40,
        "['guitar song', 'piano backing']",
        "An acoustic guitar strums over piano chords.",
        "False",
    ),
    ("-0vPFx-wRRI", 30, 40, "['male vocal', 'reggae']", "A male voice sings over a reggae groove.", "False"),
]


def write_musiccaps_csv(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "musiccaps-public.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ytid", "start_s", "end_s", "audioset_positive_labels", "aspect_list", "caption",
                         "author_id", "is_balanced_subset", "is_audioset_eval"])  # fmt: skip
        for ytid, start, end, aspects, caption, is_eval in MUSICCAPS_ROWS:
            writer.writerow([ytid, start, end, "/m/04rlf", aspects, caption, 4, "False", is_eval])
    return root


def test_musiccaps_captions_and_fetched_audio(tmp_path):
    root = write_musiccaps_csv(tmp_path / "musiccaps")
    rows = read_captions(root)
    assert len(rows) == 3 and rows[1]["aspect_list"] == ["guitar song", "piano backing"]
    assert [r["ytid"] for r in read_captions(root, split="eval")] == ["-0Gj8-vB1q4"]
    with pytest.raises(DatasetNotFoundError, match="--subset audio --accept-license"):
        load_dataset("musiccaps", root=root)
    (root / "audio").mkdir()
    for ytid in ("-0Gj8-vB1q4", "-0vPFx-wRRI"):  # the second video is gone
        sf.write(root / "audio" / f"{ytid}.flac", tone(440, 10.0, 48000, 2), 48000)
    ds = load_dataset("musiccaps", root=root, seconds=4.0)
    assert len(ds) == 2 and ds[1].caption == "A male voice sings over a reggae groove."
    assert ds[0].offset == 3.0 and ds[0].audio.shape == (64000,)  # the middle 4 s of the 10-s clip
    assert len(load_dataset("musiccaps", split="train", root=root)) == 1


# --- GTZAN -------------------------------------------------------------------------------------------


def test_gtzan_genres_and_unreadable_files(tmp_path):
    root = tmp_path / "gtzan"
    for genre in ("blues", "hiphop", "jazz"):
        (root / "genres" / genre).mkdir(parents=True)
        sf.write(root / "genres" / genre / f"{genre}.00000.wav", tone(220, 2.0, 22050), 22050, subtype="PCM_16")
    (root / "genres" / "jazz" / "jazz.00054.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.warns(UserWarning, match="jazz.00054.wav"):
        ds = load_dataset("gtzan", root=root, seconds=1.0)
    assert [ds[i].caption for i in range(len(ds))] == ["a blues song", "a hip-hop song", "a jazz song"]
    assert ds.batch(3).labels["genre"].tolist() == [0, 4, 5]
    assert ds[0].offset == pytest.approx(0.5)  # centred in the 2-s excerpt


def test_collate_refuses_mixed_lengths(tmp_path):
    ds = load_dataset("nsynth", seconds=None, crop="start", sample_rate=None, root=write_nsynth(tmp_path / "nsynth"))
    assert ds[0].audio.shape == (64000,) and ds[0].sample_rate == 16000  # the whole 4-s note at its own rate
    short = load_dataset("nsynth", seconds=1.0, root=tmp_path / "nsynth")[0]
    with pytest.raises(ConfigError, match="one length"):
        MusicDataset.collate([ds[0], short])
    assert torch.equal(MusicDataset.collate([short]).audio[0], short.audio)
