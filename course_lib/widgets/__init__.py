"""Interactive widgets for JupyterLab, each with a static fallback (see ``panel.py``).

- ``kmeans_playground``: codebook size → Voronoi cells and error (notebook 01).
- ``codec_explorer``: the number of residual quantizers → bitrate, spectrogram and sound (notebook 04).
- ``diffusion_scrubber``: a time-step slider over a forward or reverse diffusion trajectory (notebook 07).
- ``control_explorer``: Music ControlNet's controls from one clip, a caption, generate, adherence (notebook 09).

Notebooks: 01, 04, 07, 09.
"""

from course_lib.widgets.codec_explorer import codec_explorer
from course_lib.widgets.control_explorer import control_explorer
from course_lib.widgets.diffusion_scrubber import diffusion_scrubber
from course_lib.widgets.kmeans_playground import kmeans_playground
from course_lib.widgets.panel import Panel

__all__ = ["Panel", "codec_explorer", "control_explorer", "diffusion_scrubber", "kmeans_playground"]
