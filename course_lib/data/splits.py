"""The course's definition of "captions never seen in training": attribute combinations held out of every training set.

Text-to-music models are judged on captions they have not seen (MusicLM on MusicCaps, AudioLDM on
AudioCaps). SynthMusic's captions are written from a handful of attributes, so a caption that is new
word for word can still describe music the model heard a thousand times. Here "unseen" means more:
a few **(instrument, tempo class, drums) combinations** never occur in any training set. Every
single value, and every pair of values, still does (the held-out triples differ in all three
attributes), so a model can only get a held-out caption right by *combining* what it learnt about
each word: compositional generalisation, the thing a text-conditioned generator promises.

=======================  ===========  ===========
instrument               tempo class  drums
=======================  ===========  ===========
additive                 fast         without
fm_bell                  slow         with
plucked_string           medium       without
=======================  ===========  ===========

That is 3 of the 18 triples, about one clip in six. The functions below draw clips of SynthMusic
deterministically (clip ``i`` of a seed is always the same clip):

- :func:`training_clips` / :func:`training_dataset`: clips of ``SynthMusic(seed=0)`` whose
  combination is **not** held out: what every model of the course trains on.
- :func:`validation_clips`: clips of the training combinations from another seed (1): new clips,
  familiar descriptions, for measuring ordinary generalisation.
- :func:`held_out_clips` / :func:`held_out_captions`: clips (and their captions) of the held-out
  combinations only, from seed 1: audio and text no model has met in that combination.
- :func:`is_held_out`: the test itself, for a clip, a labels dict or a caption.

Notebooks: notebooks/06_text_to_music.ipynb, notebooks/08_latent_diffusion.ipynb (generation from
unseen captions); the joint embedding and the attribute classifier train on :func:`training_clips`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from torch import Tensor
from torch.utils.data import Subset

from course_lib.data.captions import caption_attributes
from course_lib.data.music_theory import MODES, TEMPO_CLASSES, TEMPO_RANGES
from course_lib.data.synth_music import Clip, ClipBatch, SynthMusic
from course_lib.data.timbres import INSTRUMENTS
from course_lib.errors import ConfigError

HELD_OUT_COMBINATIONS: tuple[tuple[str, str, bool], ...] = (
    ("additive", "fast", False),
    ("fm_bell", "slow", True),
    ("plucked_string", "medium", False),
)
"""(instrument, tempo class, drums) triples that no training set contains."""

TRAINING_SEED = 0
HELD_OUT_SEED = 1  # validation and held-out clips: another seed, so not even the clip indices are shared
SAMPLE_RATE = 16_000
CLIP_SECONDS = 2.0
_HELD_OUT_LABELS = frozenset(
    (INSTRUMENTS.index(i), TEMPO_CLASSES.index(t), int(d)) for i, t, d in HELD_OUT_COMBINATIONS
)


def combination(item: Clip | Mapping[str, int]) -> tuple[int, int, int]:
    """``(instrument, tempo_class, drums)`` label ints of a clip or of a ``Clip.labels``-style dict."""
    labels = item.labels if isinstance(item, Clip) else item
    try:
        return int(labels["instrument"]), int(labels["tempo_class"]), int(labels["drums"])
    except KeyError as missing:
        raise ConfigError(
            f"is_held_out needs the instrument, tempo_class and drums labels; {missing} is missing "
            "(pass a Clip, clip.labels, or a caption that names all three)."
        ) from None


def is_held_out(item: Clip | Mapping[str, int] | str) -> bool:
    """Whether a clip, a labels dict or a caption belongs to a held-out combination.

    A caption counts as held out when it names all three attributes (instrument, tempo class, drums;
    read with :func:`course_lib.data.captions.caption_attributes`) and they form a held-out triple;
    a caption that leaves one out ("a slow FM-bell melody") describes seen music too, so it is not.

    Notebook: notebooks/06_text_to_music.ipynb
    """
    if isinstance(item, str):
        labels = caption_attributes(item)
        if not {"instrument", "tempo_class", "drums"} <= labels.keys():
            return False
        item = labels
    return combination(item) in _HELD_OUT_LABELS


def training_indices(n: int, seed: int = TRAINING_SEED, *, held_out: bool = False) -> list[int]:
    """The first ``n`` clip indices of ``SynthMusic(seed=seed)`` outside (``held_out=True``: inside) the held-out combinations.

    Reads each clip's combination from the same random draws SynthMusic makes first, without rendering
    audio, so choosing 1,000 indices is instant; the clip functions below check every clip they render
    against it.
    """
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ConfigError(f"n (the number of clips) must be a positive int, got {n!r}.")
    chosen: list[int] = []
    index = 0
    while len(chosen) < n:
        if (_peek_combination(seed, index) in _HELD_OUT_LABELS) == held_out:
            chosen.append(index)
        index += 1
    return chosen


def training_dataset(
    n: int, seed: int = TRAINING_SEED, seconds: float = CLIP_SECONDS, sample_rate: int = SAMPLE_RATE
) -> Subset:
    """``n`` training clips as a lazy Dataset (clips render when indexed), for a ``DataLoader``::

    loader = DataLoader(training_dataset(5000), batch_size=16, shuffle=True, collate_fn=SynthMusic.collate)
    """
    indices = training_indices(n, seed)
    return Subset(_dataset(seed, seconds, sample_rate, indices[-1] + 1), indices)


def training_clips(
    n: int, seed: int = TRAINING_SEED, seconds: float = CLIP_SECONDS, sample_rate: int = SAMPLE_RATE
) -> ClipBatch:
    """The first ``n`` clips of ``SynthMusic(seed=seed)`` outside the held-out combinations, as one ClipBatch.

    ``training_clips(100)`` is the first 100 clips of ``training_clips(1000)``: a larger set only adds
    clips. About 10 ms per 2-second clip on one CPU thread.

    Notebooks: notebooks/06_text_to_music.ipynb, 08_latent_diffusion.ipynb, 09_controlnet.ipynb
    """
    return _render(training_indices(n, seed), seed, seconds, sample_rate, held_out=False)


def validation_clips(
    n: int, seed: int = HELD_OUT_SEED, seconds: float = CLIP_SECONDS, sample_rate: int = SAMPLE_RATE
) -> ClipBatch:
    """``n`` new clips of the *training* combinations (another seed): seen descriptions, unseen clips.

    Notebooks: notebooks/05_audio_language_model.ipynb, 08_latent_diffusion.ipynb, 09_controlnet.ipynb
    """
    return _render(training_indices(n, seed), seed, seconds, sample_rate, held_out=False)


def held_out_clips(
    n: int, seed: int = HELD_OUT_SEED, seconds: float = CLIP_SECONDS, sample_rate: int = SAMPLE_RATE
) -> ClipBatch:
    """``n`` clips of the held-out combinations only (``batch.captions`` are their captions).

    Notebooks: notebooks/06_text_to_music.ipynb, 08_latent_diffusion.ipynb
    """
    return _render(training_indices(n, seed, held_out=True), seed, seconds, sample_rate, held_out=True)


def held_out_captions(n: int, seed: int = HELD_OUT_SEED, seconds: float = CLIP_SECONDS) -> list[str]:
    """The captions of :func:`held_out_clips` ``(n, seed, seconds)``: text describing combinations no model trained on.

    They come with real clips (``held_out_clips(n, seed)``, in the same order), which is what FAD and
    caption adherence of generations from these captions are measured against. (A clip's wording is
    drawn after its score, so it depends on ``seconds``: pass the length of the clips you compare with.)
    """
    return held_out_clips(n, seed, seconds).captions


def synth_music_audio(n: int, seed: int = TRAINING_SEED, seconds: float = CLIP_SECONDS) -> Tensor:
    """The first ``n`` clips of ``SynthMusic(seed=seed)`` at 16 kHz, every combination, as one ``(n, T)`` tensor.

    The audio the caption-free models train on (VQ-VAEs, the codec): seed 0 trains, seed 1 is held out
    (:func:`held_out_audio`).

    Notebooks: 02_vq_vae, 03_hierarchical_vqvae, 04_neural_codec.
    """
    return SynthMusic(n_clips=n, seconds=seconds, sample_rate=SAMPLE_RATE, seed=seed).batch(n).audio


def held_out_audio(n: int = 8, seconds: float = CLIP_SECONDS) -> Tensor:
    """``(n, T)`` clips no training run sees (``SynthMusic(seed=1)``, every combination): the reconstruction test set.

    Not :func:`held_out_clips`, which returns the held-out *combinations* (captions no model trained on).

    Notebooks: 02_vq_vae, 03_hierarchical_vqvae, 04_neural_codec.
    """
    return synth_music_audio(n, HELD_OUT_SEED, seconds)


# --------------------------------------------------------------------------------------- internals
def _dataset(seed: int, seconds: float, sample_rate: int, n_clips: int | None) -> SynthMusic:
    return SynthMusic(n_clips=n_clips or 1, seconds=seconds, sample_rate=sample_rate, seed=seed)


def _render(indices: list[int], seed: int, seconds: float, sample_rate: int, held_out: bool) -> ClipBatch:
    dataset = _dataset(seed, seconds, sample_rate, indices[-1] + 1)
    clips = [dataset[i] for i in indices]
    for clip in clips:
        if (combination(clip) in _HELD_OUT_LABELS) != held_out:  # SynthMusic changed how it draws a clip
            raise RuntimeError(
                f"clip {clip.index} of seed {seed} was chosen as {'held-out' if held_out else 'training'} but is "
                "not: SynthMusic's order of random draws changed; update course_lib.data.splits._peek_combination."
            )
    return SynthMusic.collate(clips)


def _peek_combination(seed: int, index: int) -> tuple[int, int, int]:
    """The combination of clip ``index`` of ``SynthMusic(seed=seed)`` (all instruments, drums probability
    0.5), from the generator's first draws, in the order ``SynthMusic._make_clip`` makes them."""
    rng = np.random.Generator(np.random.PCG64([seed, index]))
    instrument = int(rng.integers(len(INSTRUMENTS)))
    tempo_word = TEMPO_CLASSES[rng.integers(len(TEMPO_CLASSES))]
    rng.uniform(*TEMPO_RANGES[tempo_word])  # the tempo; its class is tempo_word (the ranges have gaps)
    rng.integers(12)  # the tonic
    rng.integers(len(MODES))  # the mode
    drums = int(rng.random() < 0.5)
    return instrument, TEMPO_CLASSES.index(tempo_word), drums
