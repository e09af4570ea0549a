"""course_lib: the companion library of the course "Audio-Level Music Generation".

Sub-packages follow the lecture: ``audio`` (I/O, spectrograms), ``data`` (SynthMusic), ``quantize``
(k-means, VQ, VQ-VAE, Jukebox), ``control`` (melody, dynamics, rhythm), ``train`` (the training loop),
``viz`` (plots). Run ``python -m course_lib doctor`` to check an installation.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("course-lib")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"
