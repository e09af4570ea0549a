"""Text captions for SynthMusic clips, written from their metadata.

A few templates and synonyms vary the wording, so a text encoder (notebooks 06–08) sees the same
facts phrased differently, as in real caption datasets such as MusicCaps; every word still comes
from the metadata, so a caption never says something the audio does not contain.

Notebook: notebooks/00_audio_and_data.ipynb; used for text conditioning in notebooks 06–09.
"""

from __future__ import annotations

import numpy as np

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
