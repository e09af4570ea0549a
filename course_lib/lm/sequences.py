"""The token sequences of the chapter's four language models: vocabularies, special tokens, targets, constraints.

Each class below says how one model sees its data. ``build`` turns codes into a training sequence and
a target mask (which positions the loss scores), ``prompt`` makes the sequence that generation
continues, ``processor`` returns the logits processor that keeps every sampled token legal (a level's
ids where that level is due, the delay pattern's pads where they belong), and ``codes`` reads the
codes back out of a generated sequence.

- :class:`DelaySequence`: one model over all RVQ levels at once, MusicGen's delay layout
  (Copet et al. 2023, sec. 2.2): ``n_q`` streams, one step per frame.
- :class:`SemanticSequence`: AudioLM's first stage, p(z_t | z_<t) over semantic tokens
  (Borsos et al. 2023, sec. 4.2); MusicLM adds the condition, p(S_t | S_<t, M_A).
- :class:`CoarseSequence`: the second stage, p(y_t^q | z, y_<t^≤Q', y_t^<q) for q ≤ Q': all semantic
  tokens as a prefix, then the coarse levels flattened.
- :class:`FineSequence`: the third stage, p(y_t^q | y^≤Q', y_<t^>Q', y_t^<q) for q > Q': all coarse
  levels of a chunk as a prefix, then its fine levels flattened. AudioLM runs this stage on
  non-overlapping chunks (3 s there; ``chunk_frames`` here), so its sequences stay short.

The prefix conditioning (AudioLM's decoder-only design) lets every position attend to the whole
conditioning sequence; with rotary positions the offset between a fine token and "its" coarse frame
is the same everywhere, which the model can learn.

Notebooks: notebooks/05_audio_language_model.ipynb, 06_text_to_music.ipynb
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from course_lib.errors import ConfigError
from course_lib.lm.generation import LogitsProcessor
from course_lib.lm.layouts import (
    delay_pad_mask,
    delay_pattern,
    flatten_codes,
    offset_levels,
    remove_level_offsets,
    undelay,
    unflatten_codes,
)


def _check(codes: Tensor, levels: int, name: str) -> None:
    if codes.ndim != 3 or codes.shape[1] != levels:
        raise ConfigError(
            f"{name} must be (B, {levels}, T) codes, got {tuple(codes.shape)}: take the first levels of "
            "codec.encode(audio) (codes[:, :n_q])."
        )


def _range_processor(bounds: Tensor, vocab_size: int) -> LogitsProcessor:
    """A processor that, at position p, keeps only ids in ``[bounds[p, 0], bounds[p, 1])`` (one stream)."""

    def process(position: int, logits: Tensor) -> Tensor:
        low, high = bounds[min(position, len(bounds) - 1)].tolist()
        ids = torch.arange(vocab_size, device=logits.device)  # (V,)
        return logits.masked_fill((ids < low) | (ids >= high), float("-inf"))  # (B, V)

    return process


# ----------------------------------------------------------------------------------------------- delay
@dataclasses.dataclass(frozen=True)
class DelaySequence:
    """MusicGen's layout for one model over ``n_q`` levels: ``n_q`` streams of ``codebook_size + 2`` ids.

    Ids per stream: codes ``[0, K)``, ``pad = K`` (the pattern's gaps), ``start = K + 1`` (the first
    column, from which step 0 is predicted). A clip of T frames is ``1 + T + n_q - 1`` columns.

    Notebook: notebooks/05_audio_language_model.ipynb
    """

    n_q: int = 4
    codebook_size: int = 1024

    @property
    def pad(self) -> int:
        return self.codebook_size

    @property
    def start(self) -> int:
        return self.codebook_size + 1

    @property
    def vocab_size(self) -> int:
        return self.codebook_size + 2

    def length(self, n_frames: int) -> int:
        """Columns of a whole clip: the start column and ``n_frames + n_q - 1`` steps."""
        return n_frames + self.n_q

    def build(self, codes: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, Q, T)`` codes -> tokens ``(B, Q, 1 + T + Q - 1)`` and the target mask (False at pads and start)."""
        _check(codes, self.n_q, "codes")
        delayed = delay_pattern(codes, self.pad)  # (B, Q, T + Q - 1)
        start = delayed.new_full((codes.shape[0], self.n_q, 1), self.start)  # (B, Q, 1)
        tokens = torch.cat([start, delayed], dim=2)  # (B, Q, S)
        return tokens, tokens < self.codebook_size

    def prompt(self, codes: Tensor | None, batch: int = 1) -> Tensor:
        """The start column and the first T0 steps of a prompt's delay pattern (all known): ``(B, Q, 1 + T0)``."""
        if codes is None:
            return torch.full((batch, self.n_q, 1), self.start, dtype=torch.long)
        tokens, _ = self.build(codes)  # (B, Q, 1 + T0 + Q - 1)
        return tokens[:, :, : 1 + codes.shape[2]]

    def processor(self, n_frames: int, prompt_codes: Tensor | None = None) -> LogitsProcessor:
        """Keep the pattern: pads where level q has no frame, the prompt's codes where they are known, codes elsewhere."""
        steps = n_frames + self.n_q - 1
        forced = torch.full((1, self.n_q, steps), -1, dtype=torch.long)  # (1, Q, S) -1: free to sample
        forced[:, delay_pad_mask(self.n_q, steps, n_frames)] = self.pad
        if prompt_codes is not None:
            _check(prompt_codes, self.n_q, "prompt_codes")
            known = delay_pattern(prompt_codes, -1)  # (B, Q, T0 + Q - 1), -1 where the prompt says nothing
            forced = forced.expand(known.shape[0], -1, -1).clone()  # (B, Q, S)
            forced[:, :, : known.shape[2]] = torch.where(known >= 0, known, forced[:, :, : known.shape[2]])
        codes_only = torch.arange(self.vocab_size) < self.codebook_size  # (V,)

        def process(position: int, logits: Tensor) -> Tensor:
            step = forced[:, :, min(position - 1, steps - 1)].to(logits.device)  # (B or 1, Q)
            free = logits.masked_fill(~codes_only.to(logits.device), float("-inf"))  # (B, Q, V)
            one_hot = torch.full_like(logits, float("-inf")).scatter(
                -1, step.clamp(min=0).expand(logits.shape[0], -1).unsqueeze(-1), 0.0
            )  # (B, Q, V)
            return torch.where((step >= 0).expand(logits.shape[0], -1).unsqueeze(-1), one_hot, free)

        return process

    def codes(self, tokens: Tensor, n_frames: int) -> Tensor:
        """Codes ``(B, Q, n_frames)`` from a generated ``(B, Q, 1 + S)`` sequence."""
        return undelay(tokens[:, :, 1:], n_frames)


# -------------------------------------------------------------------------------------------- semantic
@dataclasses.dataclass(frozen=True)
class SemanticSequence:
    """AudioLM's first stage: ``[start] z_0 z_1 ...`` over ``n_semantic`` cluster ids (``start = n_semantic``).

    Notebook: notebooks/05_audio_language_model.ipynb, 06_text_to_music.ipynb
    """

    n_semantic: int = 64

    @property
    def start(self) -> int:
        return self.n_semantic

    @property
    def vocab_size(self) -> int:
        return self.n_semantic + 1

    def build(self, semantic: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, S)`` semantic tokens -> ``(B, 1 + S)`` tokens and target mask (all but the start)."""
        start = semantic.new_full((semantic.shape[0], 1), self.start)  # (B, 1)
        tokens = torch.cat([start, semantic], dim=1)  # (B, 1 + S)
        return tokens, tokens != self.start

    def prompt(self, semantic: Tensor | None, batch: int = 1) -> Tensor:
        if semantic is None:
            return torch.full((batch, 1), self.start, dtype=torch.long)
        return self.build(semantic)[0]

    def processor(self, length: int) -> LogitsProcessor:
        return _range_processor(torch.tensor([[0, self.n_semantic]]).expand(length + 1, 2), self.vocab_size)

    def tokens(self, sequence: Tensor) -> Tensor:
        return sequence[:, 1:]  # (B, S)


# ---------------------------------------------------------------------------------------------- coarse
@dataclasses.dataclass(frozen=True)
class CoarseSequence:
    """AudioLM's second stage: ``[start] z_0 ... z_S-1 [sep] y_0^0 y_0^1 ... y_0^Q'-1 y_1^0 ...``.

    Ids: semantic ``[0, n_semantic)``; coarse level q code c: ``n_semantic + q · K + c``; then
    ``start`` and ``sep``. Only the coarse tokens are targets.

    Notebook: notebooks/05_audio_language_model.ipynb, 06_text_to_music.ipynb
    """

    n_semantic: int = 64
    n_coarse: int = 2
    codebook_size: int = 1024

    @property
    def start(self) -> int:
        return self.n_semantic + self.n_coarse * self.codebook_size

    @property
    def sep(self) -> int:
        return self.start + 1

    @property
    def vocab_size(self) -> int:
        return self.start + 2

    def build(self, semantic: Tensor, coarse: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, S)`` semantic and ``(B, Q', T)`` coarse codes -> ``(B, 2 + S + Q'·T)`` tokens, target mask."""
        sequence = self.prompt(semantic, coarse)  # (B, L)
        mask = torch.zeros_like(sequence, dtype=torch.bool)
        mask[:, semantic.shape[1] + 2 :] = True
        return sequence, mask

    def prompt(self, semantic: Tensor, coarse: Tensor | None = None) -> Tensor:
        """``[start] semantic [sep]`` followed by the flattened coarse codes of a prompt, if any."""
        batch = semantic.shape[0]
        parts = [
            semantic.new_full((batch, 1), self.start),
            semantic,
            semantic.new_full((batch, 1), self.sep),
        ]
        if coarse is not None:
            _check(coarse, self.n_coarse, "coarse")
            parts.append(flatten_codes(offset_levels(coarse, self.codebook_size, base=self.n_semantic)))  # (B, Q'·T0)
        return torch.cat(parts, dim=1)  # (B, L)

    def processor(self, n_semantic_tokens: int, n_frames: int) -> LogitsProcessor:
        """At the coarse position i (0-based), only ids of level ``i mod Q'``."""
        first = n_semantic_tokens + 2
        total = first + self.n_coarse * n_frames
        level = (torch.arange(total) - first).remainder(self.n_coarse)  # (L,)
        low = self.n_semantic + level * self.codebook_size  # (L,)
        return _range_processor(torch.stack([low, low + self.codebook_size], dim=1), self.vocab_size)

    def codes(self, sequence: Tensor, n_semantic_tokens: int) -> Tensor:
        """Coarse codes ``(B, Q', T)`` from a sequence."""
        flat = sequence[:, n_semantic_tokens + 2 :]  # (B, Q'·T)
        return remove_level_offsets(unflatten_codes(flat, self.n_coarse), self.codebook_size, base=self.n_semantic)


# ------------------------------------------------------------------------------------------------ fine
@dataclasses.dataclass(frozen=True)
class FineSequence:
    """AudioLM's third stage, per chunk: ``[start] coarse (flattened) [sep] fine (flattened)``.

    Ids: level q code c is ``q · K + c`` for every level (coarse q < Q', fine q ≥ Q'); then ``start``
    and ``sep``. Only the fine tokens are targets. ``chunk_frames``: frames per chunk (50 = 1 s at
    50 Hz).

    Notebook: notebooks/05_audio_language_model.ipynb
    """

    n_coarse: int = 2
    n_fine: int = 2
    codebook_size: int = 1024
    chunk_frames: int = 50

    @property
    def start(self) -> int:
        return (self.n_coarse + self.n_fine) * self.codebook_size

    @property
    def sep(self) -> int:
        return self.start + 1

    @property
    def vocab_size(self) -> int:
        return self.start + 2

    def build(self, coarse: Tensor, fine: Tensor) -> tuple[Tensor, Tensor]:
        """One chunk: ``(B, Q', T)`` and ``(B, Q - Q', T)`` codes -> ``(B, 2 + Q·T)`` tokens and target mask."""
        sequence = self.prompt(coarse, fine)  # (B, 2 + Q·T)
        mask = torch.zeros_like(sequence, dtype=torch.bool)
        mask[:, 2 + self.n_coarse * coarse.shape[2] :] = True
        return sequence, mask

    def prompt(self, coarse: Tensor, fine: Tensor | None = None) -> Tensor:
        """``[start] coarse [sep]`` of a chunk, followed by the flattened fine codes of its first frames, if known."""
        _check(coarse, self.n_coarse, "coarse")
        batch = coarse.shape[0]
        flat = flatten_codes(offset_levels(coarse, self.codebook_size))  # (B, Q'·T)
        parts = [coarse.new_full((batch, 1), self.start), flat, coarse.new_full((batch, 1), self.sep)]
        if fine is not None:
            _check(fine, self.n_fine, "fine")
            parts.append(flatten_codes(offset_levels(fine, self.codebook_size, first_level=self.n_coarse)))
        return torch.cat(parts, dim=1)  # (B, 2 + Q'·T [+ Qf·T0])

    def processor(self, n_frames: int) -> LogitsProcessor:
        first = 2 + self.n_coarse * n_frames
        total = first + self.n_fine * n_frames
        level = self.n_coarse + (torch.arange(total) - first).remainder(self.n_fine)  # (L,)
        low = level * self.codebook_size
        return _range_processor(torch.stack([low, low + self.codebook_size], dim=1), self.vocab_size)

    def codes(self, sequence: Tensor, n_frames: int) -> Tensor:
        """Fine codes ``(B, Q - Q', T)`` of a chunk of ``n_frames`` frames."""
        flat = sequence[:, 2 + self.n_coarse * n_frames :]  # (B, Qf·T)
        return remove_level_offsets(unflatten_codes(flat, self.n_fine), self.codebook_size, first_level=self.n_coarse)

    def chunks(self, n_frames: int) -> list[tuple[int, int]]:
        """``(start, stop)`` frames of the non-overlapping chunks covering ``n_frames``."""
        return [(s, min(s + self.chunk_frames, n_frames)) for s in range(0, n_frames, self.chunk_frames)]
