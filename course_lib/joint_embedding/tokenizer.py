"""The text tower's tokenizer: words of SynthMusic's captions, numbers as digits, anything else unknown.

Why word level, and why this vocabulary: MuLan and CLAP encode text with a pre-trained BERT or
RoBERTa and its sub-word tokenizer, learnt on billions of words. The course downloads nothing, and
SynthMusic's captions use about fifty distinct words, so the whole vocabulary is written down here,
read from the caption module's own word lists (:mod:`course_lib.data.captions`); a word outside it
becomes ``[UNK]`` instead of an error, so any sentence can be embedded (it just says less).

Three normalisations make the token sequence depend on the meaning, not the spelling:

- lower case, punctuation dropped, hyphens and underscores split: "FM-bell", "fm bell" and
  "fm_bell" are the same two tokens ``fm bell``;
- enharmonic key names mapped to the spelling the captions use ("D#" → "eb", "Gb" → "f#");
- numbers split into digits ("144 BPM" → ``1 4 4 bpm``), as LLaMA's tokenizer does: the tempo then
  reads as a short sequence of ten digit tokens the transformer learns to compare, instead of a
  hundred number tokens each seen a few times (and a tempo never seen in training still tokenizes).

Every caption starts with ``[BOS]``, so even the empty string has one token to pool.

Notebook: notebooks/06_text_to_music.ipynb (the joint embedding's text tower).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch

from course_lib.data.captions import DYNAMICS_WORDS, INSTRUMENT_WORDS, SHAPE_WORDS, TEMPLATES
from course_lib.data.music_theory import MODES, NOTE_NAMES, TEMPO_CLASSES
from course_lib.errors import ConfigError

PAD, UNK, BOS = "[PAD]", "[UNK]", "[BOS]"
SPECIAL_TOKENS = (PAD, UNK, BOS)  # ids 0, 1, 2
DRUM_WORDS = ("with", "without", "a", "drum", "drums", "beat", "no")  # make_caption's drum phrases
ENHARMONICS = {"d#": "eb", "db": "c#", "gb": "f#", "g#": "ab", "a#": "bb"}
_SPLIT = re.compile(r"[\s,.;:!?()\[\]{}\"'/_-]+")
_PIECES = re.compile(r"\d|[^\d]+")


def normalize_words(text: str) -> list[str]:
    """The word pieces of ``text`` before lookup: lower case, split at spaces, punctuation and hyphens, digits apart."""
    text = text.lower().replace("♯", "#").replace("♭", "b")
    words = []
    for chunk in _SPLIT.split(text):
        for piece in _PIECES.findall(chunk):
            words.append(ENHARMONICS.get(piece, piece))
    return words


def caption_vocabulary() -> tuple[str, ...]:
    """The tokenizer's words, in id order: the special tokens, then every word the caption templates and
    their word lists can produce (sorted), then the ten digits."""
    phrases = [re.sub(r"\{\w+\}", " ", template) for template in TEMPLATES]
    phrases += list(INSTRUMENT_WORDS.values()) + [w for words in DYNAMICS_WORDS.values() for w in words]
    phrases += list(SHAPE_WORDS.values()) + list(DRUM_WORDS) + list(TEMPO_CLASSES) + ["medium-tempo"]
    phrases += [name.lower() for name in NOTE_NAMES] + list(MODES) + ["bpm"]
    words = {word for phrase in phrases for word in normalize_words(phrase) if not word.isdigit()}
    return SPECIAL_TOKENS + tuple(sorted(words)) + tuple(str(d) for d in range(10))


class CaptionTokenizer:
    """Word-level tokenizer over :func:`caption_vocabulary` (see the module docstring for why).

    Example::

        tokenizer = CaptionTokenizer()
        ids, mask = tokenizer(["a slow FM-bell melody in Eb major", "loud drums"])  # (2, L), (2, L)
        tokenizer.decode(ids[0])  # '[BOS] a slow fm bell melody in eb major'
    """

    def __init__(self, max_tokens: int = 32) -> None:
        if max_tokens < 2:
            raise ConfigError(f"max_tokens must be at least 2 ([BOS] and one word), got {max_tokens}.")
        self.vocabulary = caption_vocabulary()
        self.index = {word: i for i, word in enumerate(self.vocabulary)}
        self.max_tokens = max_tokens
        self.pad_id, self.unk_id, self.bos_id = (self.index[t] for t in SPECIAL_TOKENS)

    def __len__(self) -> int:
        return len(self.vocabulary)

    def encode(self, caption: str) -> list[int]:
        """Token ids of one caption: ``[BOS]`` then one id per word piece (``[UNK]`` for unknown ones),
        cut at ``max_tokens`` (SynthMusic captions need at most about 20)."""
        if not isinstance(caption, str):
            raise ConfigError(f"captions must be strings, got {type(caption).__name__}: pass e.g. ['a slow melody'].")
        ids = [self.bos_id] + [self.index.get(word, self.unk_id) for word in normalize_words(caption)]
        return ids[: self.max_tokens]

    def __call__(
        self, captions: Sequence[str] | str, device: torch.device | str = "cpu"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pad a batch of captions: ids ``(B, L)`` (``[PAD]`` = 0 after the end) and a mask ``(B, L)``, True on real tokens."""
        if isinstance(captions, str):
            captions = [captions]
        if len(captions) == 0:
            raise ConfigError("no captions given: pass a non-empty list of strings.")
        encoded = [self.encode(caption) for caption in captions]
        length = max(len(ids) for ids in encoded)
        ids = torch.full((len(encoded), length), self.pad_id, dtype=torch.long)  # (B, L)
        for row, tokens in enumerate(encoded):
            ids[row, : len(tokens)] = torch.tensor(tokens)
        return ids.to(device), (ids != self.pad_id).to(device)  # (B, L), (B, L)

    def decode(self, ids: torch.Tensor | Sequence[int]) -> str:
        """The words of a row of ids (padding dropped), for inspecting what the text tower sees."""
        return " ".join(self.vocabulary[int(i)] for i in ids if int(i) != self.pad_id)
