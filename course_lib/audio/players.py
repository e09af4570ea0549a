"""Audio players for notebooks: several labelled clips side by side in one HTML table.

The clips are embedded as 16-bit FLAC in ``data:`` URLs: lossless, so codec comparisons are not
blurred by another codec, about half the size of WAV (notebooks stay small), playable in every
current browser, and they play in the exported HTML book too.

Notebook: every notebook that lets you listen, first in notebooks/00_audio_and_data.ipynb.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence

import numpy as np
import soundfile as sf
import torch
from IPython.display import HTML

from course_lib.audio.io import check_audio


def audio_data_url(audio: torch.Tensor | np.ndarray, sample_rate: int) -> str:
    """A ``data:audio/flac;base64,...`` URL for a mono clip; a clip louder than full scale is scaled down."""
    samples = torch.as_tensor(audio).detach().to("cpu", torch.float32).reshape(-1)
    check_audio(samples)
    peak = samples.abs().max().clamp_min(1.0)  # only scale down clips that would clip
    buffer = io.BytesIO()
    sf.write(buffer, (samples / peak).numpy(), int(sample_rate), format="FLAC", subtype="PCM_16")
    return "data:audio/flac;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def audio_table(
    clips: Mapping[str, torch.Tensor] | Sequence[tuple[str, torch.Tensor]],
    sample_rate: int,
    columns: int = 4,
    title: str | None = None,
) -> HTML:
    """Show labelled audio players in a table, ``columns`` per row.

    Args:
        clips: ``{"label": audio}`` or ``[("label", audio), ...]``; each audio ``(T,)`` (or ``(1, T)``).
        sample_rate: the clips' rate in Hz.
        columns: players per row.
        title: an optional caption above the table.

    Notebooks: every notebook, notebooks/00_audio_and_data.ipynb to 10_fast_sampling.ipynb
    """
    items = list(clips.items()) if isinstance(clips, Mapping) else list(clips)
    cells = [
        f'<td style="padding:4px 10px;text-align:left"><div><b>{html.escape(str(label))}</b></div>'
        f'<audio controls preload="none" style="width:220px" src="{audio_data_url(audio, sample_rate)}"></audio></td>'
        for label, audio in items
    ]
    rows = ["<tr>" + "".join(cells[i : i + columns]) + "</tr>" for i in range(0, len(cells), columns)]
    caption = f"<caption style='text-align:left'>{html.escape(title)}</caption>" if title else ""
    return HTML(f'<table class="course-audio-table">{caption}{"".join(rows)}</table>')
