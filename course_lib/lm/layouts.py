"""Token layouts: three ways to lay a codec's residual-VQ codes out as a sequence for a language model.

A codec (chapter 04) turns audio into codes ``(B, Q, T)``: Q residual levels per frame, T frames
(50 per second here). A language model predicts one *step* at a time, so the Q × T grid must become
a sequence. How it is laid out decides how many steps one second of audio costs:

- **flatten**: every level of frame 0, then every level of frame 1, ... One token per step,
  Q · frame_rate steps per second (AudioLM, Borsos et al. 2023, flattens its acoustic levels so).
- **delay** (MusicGen, Copet et al. 2023, sec. 2.2): the Q levels are Q parallel streams and level q
  is shifted right by q steps. At step s the model predicts level 0 of frame s, level 1 of frame
  s - 1, ..., so level q of a frame is predicted one step *after* level q - 1 of the same frame has
  been seen. Q tokens per step, T + Q - 1 steps for T frames: about frame_rate steps per second.
- **coarse/fine** (AudioLM, sec. 4.2): levels ``q < Q'`` (the coarse ones) form one sequence and are
  generated first; the fine levels ``q ≥ Q'`` come after, conditioned on all the coarse ones. Each
  part is flattened, so it costs (Q' + (Q - Q')) · frame_rate = Q · frame_rate steps per second, in
  two models.

Every layout builds and reverts exactly (``undelay(delay_pattern(c)) == c``); the functions are pure
and batched, with no Python loop over samples.

Notebook: notebooks/05_audio_language_model.ipynb
"""

from __future__ import annotations

import torch
from torch import Tensor

from course_lib.errors import ConfigError

LAYOUTS = ("flatten", "delay", "coarse_fine")


def _check_codes(codes: Tensor, name: str = "codes") -> None:
    if not isinstance(codes, Tensor) or codes.ndim != 3 or codes.dtype.is_floating_point:
        shape = tuple(codes.shape) if isinstance(codes, Tensor) else type(codes).__name__
        raise ConfigError(
            f"{name} must be an integer tensor (B, Q, T) of codec codes, got {shape}: add a batch dimension "
            "with codes[None] for one clip, or take codec.encode(audio)."
        )


# ---------------------------------------------------------------------------------------------- flatten
def flatten_codes(codes: Tensor) -> Tensor:
    """Frame-major flattening: ``(B, Q, T) -> (B, T·Q)`` ordered [f0 q0, f0 q1, ..., f0 q(Q-1), f1 q0, ...].

    Notebook: notebooks/05_audio_language_model.ipynb
    """
    _check_codes(codes)
    batch, levels, frames = codes.shape
    return codes.transpose(1, 2).reshape(batch, frames * levels)  # (B, T·Q)


def unflatten_codes(tokens: Tensor, n_q: int) -> Tensor:
    """Inverse of :func:`flatten_codes`: ``(B, T·Q) -> (B, Q, T)``.

    Notebook: notebooks/05_audio_language_model.ipynb
    """
    if tokens.ndim != 2 or tokens.shape[1] % n_q:
        raise ConfigError(
            f"unflatten_codes needs (B, T·Q) tokens with a length divisible by n_q={n_q}, got {tuple(tokens.shape)}: "
            "cut the sequence at a frame boundary first."
        )
    batch, length = tokens.shape
    return tokens.reshape(batch, length // n_q, n_q).transpose(1, 2)  # (B, Q, T)


def offset_levels(codes: Tensor, codebook_size: int, first_level: int = 0, base: int = 0) -> Tensor:
    """Give each level its own token ids: level q's code c becomes ``base + (first_level + q) · K + c``.

    A flattened sequence mixes levels in one stream; with separate ids the model's one vocabulary can
    tell "code 5 of level 0" from "code 5 of level 3" (AudioLM does the same). ``(B, Q, T) -> (B, Q, T)``.

    Notebook: notebooks/05_audio_language_model.ipynb
    """
    _check_codes(codes)
    levels = torch.arange(codes.shape[1], device=codes.device).view(1, -1, 1)  # (1, Q, 1)
    return codes + base + (first_level + levels) * codebook_size  # (B, Q, T)


def remove_level_offsets(tokens: Tensor, codebook_size: int, first_level: int = 0, base: int = 0) -> Tensor:
    """Inverse of :func:`offset_levels`: ``(B, Q, T)`` token ids back to codes in ``[0, K)``."""
    levels = torch.arange(tokens.shape[1], device=tokens.device).view(1, -1, 1)  # (1, Q, 1)
    return tokens - base - (first_level + levels) * codebook_size  # (B, Q, T)


# ------------------------------------------------------------------------------------------------ delay
def delay_pattern(codes: Tensor, pad_token: int) -> Tensor:
    """MusicGen's delay pattern: shift level q right by q steps, fill the gaps with ``pad_token``.

    ``(B, Q, T) -> (B, Q, T + Q - 1)``; ``out[:, q, s] = codes[:, q, s - q]`` where ``0 ≤ s - q < T``,
    else ``pad_token``. For Q = 3, T = 4 (``.`` is the pad)::

        level 0:  a0 a1 a2 a3 .  .
        level 1:  .  b0 b1 b2 b3 .
        level 2:  .  .  c0 c1 c2 c3

    Notebook: notebooks/05_audio_language_model.ipynb
    """
    _check_codes(codes)
    batch, levels, frames = codes.shape
    steps = frames + levels - 1
    out = codes.new_full((batch, levels, steps), pad_token)  # (B, Q, T + Q - 1)
    source = torch.arange(steps, device=codes.device) - torch.arange(levels, device=codes.device)[:, None]  # (Q, S)
    valid = (source >= 0) & (source < frames)  # (Q, S)
    gathered = codes.gather(2, source.clamp(0, frames - 1).expand(batch, levels, steps))  # (B, Q, S)
    return torch.where(valid, gathered, out)  # (B, Q, S)


def undelay(delayed: Tensor, n_frames: int | None = None) -> Tensor:
    """Inverse of :func:`delay_pattern`: ``(B, Q, S) -> (B, Q, S - Q + 1)`` (or ``n_frames`` frames).

    ``out[:, q, t] = delayed[:, q, t + q]``; the pads are dropped.

    Notebook: notebooks/05_audio_language_model.ipynb
    """
    _check_codes(delayed, "delayed")
    batch, levels, steps = delayed.shape
    frames = steps - levels + 1 if n_frames is None else n_frames
    if frames < 1 or frames + levels - 1 > steps:
        raise ConfigError(
            f"A delayed sequence of {steps} steps over {levels} levels holds at most {steps - levels + 1} frames, "
            f"not {frames}: generate at least n_frames + n_q - 1 steps."
        )
    index = torch.arange(frames, device=delayed.device) + torch.arange(levels, device=delayed.device)[:, None]  # (Q, T)
    return delayed.gather(2, index.expand(batch, levels, frames))  # (B, Q, T)


def delay_pad_mask(n_q: int, steps: int, n_frames: int | None = None, device: torch.device | None = None) -> Tensor:
    """Where the delay pattern has pads: ``(Q, steps)`` bool, True at step s of level q when s - q is not a frame.

    With ``n_frames=None`` only the leading pads (s < q) are marked: the pattern of a sequence still
    being generated, whose end is not known yet.
    """
    source = torch.arange(steps, device=device) - torch.arange(n_q, device=device)[:, None]  # (Q, S)
    outside = source < 0
    if n_frames is not None:
        outside |= source >= n_frames
    return outside  # (Q, S)


# ------------------------------------------------------------------------------------------ coarse/fine
def split_coarse_fine(codes: Tensor, n_coarse: int) -> tuple[Tensor, Tensor]:
    """AudioLM's split: ``(B, Q, T) -> (coarse (B, Q', T), fine (B, Q - Q', T))`` with Q' = ``n_coarse``.

    Notebook: notebooks/05_audio_language_model.ipynb
    """
    _check_codes(codes)
    if not 0 < n_coarse < codes.shape[1]:
        raise ConfigError(
            f"n_coarse={n_coarse} must be between 1 and n_q - 1 = {codes.shape[1] - 1}: the coarse part takes "
            "the first levels, the fine part the rest, and both need at least one."
        )
    return codes[:, :n_coarse], codes[:, n_coarse:]


def merge_coarse_fine(coarse: Tensor, fine: Tensor) -> Tensor:
    """Inverse of :func:`split_coarse_fine`: stack the levels back, ``(B, Q', T), (B, Q - Q', T) -> (B, Q, T)``.

    Notebook: notebooks/05_audio_language_model.ipynb
    """
    if coarse.shape[0] != fine.shape[0] or coarse.shape[2] != fine.shape[2]:
        raise ConfigError(
            f"coarse {tuple(coarse.shape)} and fine {tuple(fine.shape)} codes must have the same batch and frames."
        )
    return torch.cat([coarse, fine], dim=1)  # (B, Q, T)


# ------------------------------------------------------------------------------------------------- rates
def steps_per_second(layout: str, frame_rate: float, n_q: int, seconds: float = 1.0) -> float:
    """Autoregressive steps a layout needs for ``seconds`` of audio (per second by default).

    - ``flatten``: Q · frame_rate · seconds (one token per step);
    - ``delay``: frame_rate · seconds + Q - 1 (Q tokens per step, plus the pattern's Q - 1 extra steps);
    - ``coarse_fine``: Q · frame_rate · seconds, shared by two models (Q' · ... + (Q - Q') · ...).

    Notebook: notebooks/05_audio_language_model.ipynb
    """
    if layout not in LAYOUTS:
        raise ConfigError(f"Unknown layout {layout!r}: use one of {', '.join(LAYOUTS)}.")
    frames = frame_rate * seconds
    if layout == "delay":
        return (frames + n_q - 1) / seconds
    return n_q * frames / seconds
