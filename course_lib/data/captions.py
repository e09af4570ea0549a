"""Text captions for SynthMusic clips, written from their metadata.

A few templates and synonyms vary the wording, so a text encoder (notebooks 06–08) sees the same
facts phrased differently, as in real caption datasets such as MusicCaps; every word still comes
from the metadata, so a caption never says something the audio does not contain.

Notebook: notebooks/00_audio_and_data.ipynb; used for text conditioning in notebooks 06–09.
"""

from __future__ import annotations

import re

import numpy as np

from course_lib.data.music_theory import MODES, NOTE_NAMES, TEMPO_CLASSES, tempo_class
from course_lib.data.timbres import INSTRUMENTS
from course_lib.errors import ConfigError

INSTRUMENT_WORDS = {"additive": "additive-synth", "fm_bell": "FM-bell", "plucked_string": "plucked-string"}
DYNAMICS_WORDS = {
    "soft": ("soft", "quiet", "gentle"),
    "medium": ("moderate", "medium-loud"),
    "loud": ("loud", "powerful"),
}
SHAPE_WORDS = {"steady": "", "crescendo": ", getting louder", "decrescendo": ", fading away"}
TEMPLATES = (
    "a {tempo} {instrument} melody in {key}{drums}{shape}",
    "{dynamics} {instrument} tune in {key} at {bpm} BPM{drums}{shape}",
    "a {dynamics}, {tempo} {instrument} line in {key}{drums}{shape}",
)


def make_caption(
    rng: np.random.Generator,
    instrument: str,
    tempo_word: str,
    bpm: float,
    key: str,
    dynamics: str,
    shape: str,
    drums: bool,
) -> str:
    """Caption such as "a slow plucked-string melody in A minor with drums, getting louder".

    Args:
        rng: picks the template and synonyms (the clip's generator, so captions are reproducible).
        instrument: a name in ``SynthMusic.INSTRUMENTS``.
        tempo_word: ``"slow"``, ``"medium"`` or ``"fast"``.
        bpm: the tempo in beats per minute.
        key: e.g. ``"A minor"``.
        dynamics: ``"soft"``, ``"medium"`` or ``"loud"``.
        shape: ``"steady"``, ``"crescendo"`` or ``"decrescendo"``.
        drums: whether the clip has drums.
    """
    template = TEMPLATES[rng.integers(len(TEMPLATES))]
    words = DYNAMICS_WORDS[dynamics]
    drums_phrase = (" with drums", " with a drum beat") if drums else (" without drums", ", no drums")
    return template.format(
        tempo="medium-tempo" if tempo_word == "medium" else tempo_word,
        instrument=INSTRUMENT_WORDS[instrument],
        key=key,
        bpm=round(bpm),
        dynamics=words[rng.integers(len(words))],
        drums=drums_phrase[rng.integers(2)],
        shape=SHAPE_WORDS[shape],
    )


# ------------------------------------------------------------------------- reading a caption back
# The label order of Clip.labels: instruments as in timbres.INSTRUMENTS, dynamics as DYNAMICS_WORDS'
# keys (soft, medium, loud; the same order as SynthMusic.DYNAMICS), tempo classes, modes and
# tonics as in music_theory.
_DYNAMICS_ORDER = tuple(DYNAMICS_WORDS)
_TONICS = {name.lower(): i for i, name in enumerate(NOTE_NAMES)}
_TONICS.update({"db": 1, "d#": 3, "e#": 5, "fb": 4, "gb": 6, "g#": 8, "a#": 10, "cb": 11, "b#": 0})  # enharmonics
_INSTRUMENT_PATTERNS = {  # "FM-bell", "fm bell" and "fm_bell" all name the same instrument
    "additive": re.compile(r"\badditive\b"),
    "fm_bell": re.compile(r"\bfm[\s_-]?bells?\b"),
    "plucked_string": re.compile(r"\bplucked[\s_-]?strings?\b"),
}
_DYNAMICS_PATTERNS = {  # "medium-loud" first, so its "loud" is not read as "loud"
    "medium": re.compile(r"\b(?:moderate|moderately loud|medium[\s-]loud)\b"),
    "soft": re.compile(r"\b(?:soft|quiet|gentle)\b"),
    "loud": re.compile(r"(?<!medium-)(?<!medium )(?<!moderately )\b(?:loud|powerful)\b"),
}
_TEMPO_PATTERNS = {
    "slow": re.compile(r"\bslow\b"),
    "medium": re.compile(r"\bmedium[\s-]tempo\b"),
    "fast": re.compile(r"\bfast\b"),
}
_BPM = re.compile(r"\b(\d+(?:\.\d+)?)\s*bpm\b")
_KEY = re.compile(r"\bin\s+([a-g])\s?([#b♯♭]?)\s+(major|minor)\b")
_WITH_DRUMS = re.compile(r"\bwith\s+(?:a\s+)?drums?(?:\s+beat)?\b")
_WITHOUT_DRUMS = re.compile(r"\b(?:without\s+(?:a\s+)?drums?|no\s+drums?)\b")


def caption_attributes(caption: str) -> dict[str, int]:
    """Read a caption's words back into the label ints of :attr:`course_lib.data.Clip.labels`.

    The inverse of :func:`make_caption` for the attributes a caption names: ``instrument``,
    ``tempo_class`` (from "slow" / "medium-tempo" / "fast", or from "at N BPM" with the dataset's
    class boundaries), ``drums``, ``key`` and ``mode`` ("in Eb minor"; enharmonic spellings such as
    "D# minor" are accepted) and ``dynamics`` (its synonyms: "quiet", "powerful", ...). An attribute the
    caption does not mention, or mentions with contradicting words ("slow" and "fast"), is left out,
    so ``caption_attributes("a slow melody")`` is ``{"tempo_class": 0}``. Matching ignores case, and
    hyphens in multi-word names are optional ("plucked string" = "plucked-string").

    Caption adherence (:func:`course_lib.metrics.caption_adherence`) scores a generated clip on
    exactly these attributes: the ones its caption asked for.

    Args:
        caption: any text; typically a SynthMusic caption or one written in its vocabulary.

    Returns:
        ``{name: label}`` for each attribute named unambiguously, e.g.
        ``{"instrument": 2, "tempo_class": 0, "drums": 1, "key": 9, "mode": 1}`` for
        "a slow plucked-string melody in A minor with drums".

    Notebook: notebooks/06_text_to_music.ipynb (caption adherence); notebooks/08_latent_diffusion.ipynb.
    """
    if not isinstance(caption, str):
        raise ConfigError(f"caption_attributes reads one caption (a str), got {type(caption).__name__}.")
    text = " ".join(caption.lower().replace(",", " ").split())
    found: dict[str, set[int]] = {}

    def add(name: str, value: int) -> None:
        found.setdefault(name, set()).add(value)

    for i, name in enumerate(INSTRUMENTS):
        if _INSTRUMENT_PATTERNS[name].search(text):
            add("instrument", i)
    for i, word in enumerate(TEMPO_CLASSES):
        if _TEMPO_PATTERNS[word].search(text):
            add("tempo_class", i)
    for match in _BPM.finditer(text):
        add("tempo_class", TEMPO_CLASSES.index(tempo_class(float(match.group(1)))))
    if _WITH_DRUMS.search(text):
        add("drums", 1)
    if _WITHOUT_DRUMS.search(text):
        add("drums", 0)
    for match in _KEY.finditer(text):
        accidental = {"♯": "#", "♭": "b"}.get(match.group(2), match.group(2))
        add("key", _TONICS[match.group(1) + accidental])
        add("mode", MODES.index(match.group(3)))
    for word, pattern in _DYNAMICS_PATTERNS.items():
        if pattern.search(text):
            add("dynamics", _DYNAMICS_ORDER.index(word))
    return {name: values.pop() for name, values in found.items() if len(values) == 1}
