"""What every course widget is made of: a figure and players that redraw, and a static fallback.

A widget is live only while a kernel and a front end (JupyterLab, Notebook) are attached. Where
there is none — a notebook executed by nbval, the HTML book, a notebook opened without running it —
the same cell must still show something meaningful. So each course widget is displayed as one
output with two representations: the live widget (``application/vnd.jupyter.widget-view+json``,
which JupyterLab prefers) and a static HTML picture of its initial state (``text/html``: the figure
as an image, the audio players, the readout), which everything else shows.

Figures are rendered to JPEG bytes and shown in an ``ipywidgets.Image``, audio in an
``ipywidgets.HTML`` holding ``<audio>`` elements with FLAC ``data:`` URLs (as ``audio_table``), so that
a redraw replaces two values and nothing depends on matplotlib's interactive backends.

Notebooks: 01 (k-means playground), 04 (codec bitrate), 07 (diffusion scrubber), 09 (controls).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Mapping

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch
from IPython.display import display
from matplotlib.figure import Figure

from course_lib.audio.players import audio_data_url

JPEG_QUALITY = 80


def figure_bytes(figure: Figure) -> bytes:
    """The figure as JPEG bytes at its own dpi (closed afterwards, so no second copy is drawn inline)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="jpeg", dpi=figure.dpi, pil_kwargs={"quality": JPEG_QUALITY})
    plt.close(figure)
    return buffer.getvalue()


def players_html(clips: Mapping[str, torch.Tensor], sample_rate: int) -> str:
    """Labelled ``<audio>`` players side by side, the clips embedded as FLAC ``data:`` URLs."""
    cells = "".join(
        f'<td style="padding:2px 8px"><div><b>{html.escape(label)}</b></div>'
        f'<audio controls preload="none" style="width:220px" src="{audio_data_url(audio, sample_rate)}"></audio></td>'
        for label, audio in clips.items()
    )
    return f'<table class="course-audio-table"><tr>{cells}</tr></table>'


class Panel:
    """A readout line, a figure and audio players that ``update`` redraws, under a row of controls.

    Args:
        controls: the sliders and buttons, shown above.
        draw: ``() -> (readout_html, figure, {label: audio}, sample_rate)`` for the controls' current
            values; called once now, then after every change of a control's ``value`` — or, when a
            ``button`` is given (for a slow ``draw``), only when it is clicked.
        button: the button that redraws (it is shown after the controls).
    """

    def __init__(
        self,
        controls: list[widgets.Widget],
        draw: Callable[[], tuple[str, Figure, Mapping[str, torch.Tensor], int]],
        button: widgets.Button | None = None,
    ) -> None:
        self.controls, self.draw, self.button = controls, draw, button
        self.readout = widgets.HTML()
        self.image = widgets.Image(format="jpeg")
        self.players = widgets.HTML()
        self.update()
        if button is not None:
            button.on_click(lambda _: self.update())
            controls = [*controls, button]
        else:
            for control in controls:
                if hasattr(control, "value"):
                    control.observe(lambda _: self.update(), names="value")
        self.widget = widgets.VBox([widgets.HBox(controls), self.readout, self.image, self.players])

    def update(self) -> None:
        readout, figure, clips, sample_rate = self.draw()
        self.image.width = str(round(figure.get_figwidth() * figure.dpi))  # pixels: not stretched to the page
        self.image.value = figure_bytes(figure)
        self.players.value = players_html(clips, sample_rate) if clips else ""
        self.readout.value = readout  # last: a changed readout means the whole panel is redrawn

    def static_html(self) -> str:
        """The current state as plain HTML: readout, figure as an image, players."""
        image = base64.b64encode(self.image.value).decode("ascii")
        picture = f'<img width="{self.image.width}" src="data:image/jpeg;base64,{image}"/>'
        return f"<div>{self.readout.value}</div>{picture}{self.players.value}"

    def _repr_mimebundle_(self, **kwargs) -> dict:
        bundle = self.widget._repr_mimebundle_(**kwargs)  # the live view, for front ends with widgets
        bundle["text/html"] = self.static_html()  # everything else: nbval, the HTML book, an unrun notebook
        bundle["text/plain"] = "course widget (run the cell in JupyterLab to use it)"
        return bundle

    def show(self) -> None:
        display(self)
