"""How closely generated music follows its time-varying controls: Music ControlNet's three adherence metrics.

Music ControlNet (Wu et al. 2023, Sec. 4.2, "Evaluation metrics") extracts each control again from the
*generated* audio, with the same extractor that made the control, and compares it with the control
it was given:

- **melody accuracy**: the fraction of frames where the strongest pitch class of the generation is the
  control's pitch class (the control is the one-hot argmax of a high-passed chroma,
  :func:`course_lib.control.melody_chroma`). Chance is 1/12 ≈ 8.3%.
- **dynamics correlation**: Pearson's r between the control's loudness curve (smoothed frame energy
  in dB, :func:`course_lib.control.loudness_db`) and the generation's.
- **beat F1**: beats tracked in the generation against the control's beats, a beat counting as hit
  when one estimated beat lies within ±70 ms of it, each estimate used once; F1 = 2PR / (P + R)
  (the standard beat F-measure, as in mir_eval's ``beat.f_measure``, Davies et al. 2009).

The paper reports 58.7% melody accuracy, 90.8% dynamics correlation and 70.8% beat F1 (and 40.8%
downbeat F1) for its model with all controls on its test data. :func:`control_adherence` computes
all three from generated audio and the controls dict of :func:`course_lib.control.all_controls`.

Notebook: notebooks/09_controlnet.ipynb.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from course_lib.control import HOP_LENGTH, beat_times, loudness_db, melody_chroma
from course_lib.errors import ConfigError

BEAT_TOLERANCE_SECONDS = 0.07  # ±70 ms, Music ControlNet's (and mir_eval's default) window


def _frame_mask(mask: Tensor | None, shape: torch.Size, device: torch.device) -> Tensor:
    if mask is None:
        return torch.ones(shape, dtype=torch.bool, device=device)
    if mask.shape != shape:
        raise ConfigError(f"mask has shape {tuple(mask.shape)}; it must be (..., frames) = {tuple(shape)}.")
    return mask.to(device=device, dtype=torch.bool)


def _same_frames(a: Tensor, b: Tensor, what: str) -> tuple[Tensor, Tensor]:
    """Crop two frame sequences to their common length (generated audio may be a frame longer or shorter)."""
    if a.shape[:-1] != b.shape[:-1]:
        raise ConfigError(f"{what}: shapes {tuple(a.shape)} and {tuple(b.shape)} differ before the frame axis.")
    frames = min(a.shape[-1], b.shape[-1])
    if frames == 0:
        raise ConfigError(f"{what}: no frames to compare.")
    return a[..., :frames], b[..., :frames]


def melody_accuracy(reference: Tensor, generated: Tensor, mask: Tensor | None = None) -> Tensor:
    """Per-frame agreement of the top-1 pitch class, over the frames where the reference has a melody.

    Args:
        reference: ``(..., 12, F)`` the melody control (one-hot) or any chromagram.
        generated: ``(..., 12, F')`` the generation's melody chroma (or chromagram); cropped to the shorter F.
        mask: ``(..., F)`` bool, frames to score (e.g. where a control was given); silent reference frames
            (all-zero columns) are always left out.

    Returns:
        ``(...,)`` accuracy in [0, 1] per clip (NaN for a clip with no frame to score).

    Notebook: notebooks/09_controlnet.ipynb
    """
    if reference.shape[-2:-1] != (12,) or generated.shape[-2:-1] != (12,):
        raise ConfigError(
            f"melody_accuracy takes (..., 12, frames) chroma, got {tuple(reference.shape)} and {tuple(generated.shape)}: "
            "compute them with course_lib.control.melody_chroma(audio, sample_rate)."
        )
    reference, generated = _same_frames(reference, generated, "melody_accuracy")
    scored = _frame_mask(
        None if mask is None else mask[..., : reference.shape[-1]],
        reference.shape[:-2] + reference.shape[-1:],
        reference.device,
    )
    scored = scored & (reference.sum(-2) > 0)  # (..., F)  frames with a melody
    agree = (reference.argmax(-2) == generated.to(reference.device).argmax(-2)) & scored  # (..., F)
    return agree.sum(-1) / scored.sum(-1).float()  # (...,)  0/0 = NaN where nothing is scored


def dynamics_correlation(reference: Tensor, generated: Tensor, mask: Tensor | None = None) -> Tensor:
    """Pearson correlation between two loudness curves, per clip.

    ``r = Σ (a - ā)(b - b̄) / √(Σ (a - ā)² Σ (b - b̄)²)`` over the (masked) frames.

    Args:
        reference: ``(..., F)`` the dynamics control (dB).
        generated: ``(..., F')`` the generation's loudness (dB); cropped to the shorter F.
        mask: ``(..., F)`` bool, frames to use.

    Returns:
        ``(...,)`` r in [-1, 1] (NaN when a curve is constant over the frames used).
    """
    reference, generated = _same_frames(
        reference.double(), generated.to(reference.device).double(), "dynamics_correlation"
    )
    used = _frame_mask(
        None if mask is None else mask[..., : reference.shape[-1]], reference.shape, reference.device
    ).double()
    count = used.sum(-1, keepdim=True)  # (..., 1)
    a = reference - (reference * used).sum(-1, keepdim=True) / count  # (..., F)
    b = generated - (generated * used).sum(-1, keepdim=True) / count  # (..., F)
    covariance = (a * b * used).sum(-1)  # (...,)
    r = covariance / ((a**2 * used).sum(-1) * (b**2 * used).sum(-1)).sqrt()  # (...,)
    return r.float()


def match_events(reference: Tensor, estimated: Tensor, tolerance: float = BEAT_TOLERANCE_SECONDS) -> int:
    """The largest number of one-to-one pairs (reference, estimate) with ``|r - e| ≤ tolerance``.

    Both lists are sorted and scanned together, pairing the earliest unmatched reference with the
    earliest estimate that can still reach it: on a line with equal windows this greedy matching is
    a maximum matching (what mir_eval finds with a bipartite matching).
    """
    ref, est = sorted(reference.flatten().tolist()), sorted(estimated.flatten().tolist())
    i = j = matches = 0
    while i < len(ref) and j < len(est):
        if est[j] < ref[i] - tolerance - 1e-9:  # this estimate is too early for this and every later reference
            j += 1
        elif est[j] > ref[i] + tolerance + 1e-9:  # no estimate reaches this reference
            i += 1
        else:
            matches, i, j = matches + 1, i + 1, j + 1
    return matches


def beat_f1(reference: Tensor, estimated: Tensor, tolerance: float = BEAT_TOLERANCE_SECONDS) -> float:
    """Beat F-measure of one clip: precision P = hits / estimates, recall R = hits / references, F1 = 2PR / (P + R).

    Args:
        reference, estimated: beat times in seconds (1-D).
        tolerance: the window in seconds (±70 ms).

    Returns:
        F1 in [0, 1]; 0 when either list is empty (as mir_eval).
    """
    if len(reference.flatten()) == 0 or len(estimated.flatten()) == 0:
        return 0.0
    hits = match_events(reference, estimated, tolerance)
    if hits == 0:
        return 0.0
    precision, recall = hits / len(estimated.flatten()), hits / len(reference.flatten())
    return 2 * precision * recall / (precision + recall)


def mean_beat_f1(
    references: Sequence[Tensor], estimates: Sequence[Tensor], tolerance: float = BEAT_TOLERANCE_SECONDS
) -> float:
    """:func:`beat_f1` averaged over clips (lists of per-clip beat times)."""
    if len(references) != len(estimates) or not references:
        raise ConfigError(
            f"mean_beat_f1 needs as many estimate lists as reference lists, got {len(references)} and {len(estimates)}."
        )
    return sum(beat_f1(r, e, tolerance) for r, e in zip(references, estimates, strict=True)) / len(references)


def control_adherence(
    generated_audio: Tensor,
    controls: dict,
    sample_rate: int = 16_000,
    hop_length: int = HOP_LENGTH,
    tempo: float | Tensor | None = None,
    mask: Tensor | None = None,
) -> dict[str, float]:
    """All three metrics of a batch of generations against the controls they were given.

    Args:
        generated_audio: ``(B, T)``.
        controls: the controls the generation was asked to follow, as :func:`course_lib.control.all_controls`
            returns them: ``melody`` (B, 12, F), ``loudness_db`` (B, F), ``beat_times`` (a list of B tensors);
            the metrics of the keys present are computed.
        tempo: BPM for the beat tracker on the generation (a number or ``(B,)``); estimated when None.
        mask: ``(B, F)`` bool, the frames where the controls were given (for melody and dynamics).

    Returns:
        ``melody_accuracy``, ``dynamics_correlation`` (means over the clips, NaN clips left out) and ``beat_f1``.

    Notebook: notebooks/09_controlnet.ipynb
    """
    results: dict[str, float] = {}
    if "melody" in controls:
        generated = melody_chroma(generated_audio, sample_rate, hop_length)  # (B, 12, F)
        results["melody_accuracy"] = float(melody_accuracy(controls["melody"], generated, mask).nanmean())
    if "loudness_db" in controls:
        generated = loudness_db(generated_audio, sample_rate, hop_length)  # (B, F)
        results["dynamics_correlation"] = float(
            dynamics_correlation(controls["loudness_db"], generated, mask).nanmean()
        )
    if "beat_times" in controls:
        estimated = beat_times(generated_audio, sample_rate, hop_length, tempo)
        estimated = [estimated] if isinstance(estimated, Tensor) else estimated
        references = controls["beat_times"]
        references = [references] if isinstance(references, Tensor) else references
        results["beat_f1"] = mean_beat_f1(references, estimated)
    return results
