"""The set-up every notebook runs first: one-line doctor summary, seeds, plot style.

Notebook: the first code cell of every notebook.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from course_lib.config import get_device, get_scale, seed_everything
from course_lib.doctor import summary_line
from course_lib.viz import use_course_style


@dataclass
class NotebookContext:
    scale: str
    device: torch.device
    generator: torch.Generator

    @property
    def tiny(self) -> bool:
        return self.scale == "tiny"


def setup(seed: int = 0) -> NotebookContext:
    """Print the summary line, seed Python/NumPy/torch, apply the course's plot style.

    Returns the scale, the device and a seeded generator for the cells that follow.

    Notebooks: every notebook, notebooks/00_audio_and_data.ipynb to 10_fast_sampling.ipynb
    """
    print(summary_line())
    generator = seed_everything(seed)
    use_course_style()
    _inline_figures_as_jpeg()
    return NotebookContext(scale=get_scale(), device=get_device(), generator=generator)


def _inline_figures_as_jpeg() -> None:
    """Spectrograms are noisy images: JPEG stores them at a third of PNG's size (notebooks < 2 MB)."""
    try:
        from IPython import get_ipython
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:  # not in IPython: nothing to configure
        return
    if get_ipython() is not None:
        set_matplotlib_formats("jpeg", pil_kwargs={"quality": 80})
