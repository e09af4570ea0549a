"""Measures of generated and reconstructed audio: one definition of each, used by every notebook and benchmark.

- ``reconstruction``: waveform SNR, SI-SDR, spectral convergence, the log-mel and multi-scale mel
  distances, the real-time factor (codecs and VQ-VAEs, notebooks 01-04).
- ``frechet``: the Fréchet distance between Gaussians, Fréchet Audio Distance and its sample-size
  correction FAD∞ (notebooks 06, 08), the Fréchet mel distance of spectrograms (notebooks 07, 10).
- ``classifier_scores``: the Inception Score and caption adherence, read off the attribute classifier
  (notebooks 06, 08). The classifier itself is a trained model: :mod:`course_lib.attributes`.
- ``control_adherence``: Music ControlNet's melody accuracy, dynamics correlation and beat F1
  (notebook 09).
"""

from course_lib.metrics.classifier_scores import caption_adherence, inception_score
from course_lib.metrics.control_adherence import (
    beat_f1,
    control_adherence,
    dynamics_correlation,
    mean_beat_f1,
    melody_accuracy,
)
from course_lib.metrics.frechet import (
    FADInfinity,
    fad_infinity,
    frame_statistics,
    frechet_audio_distance,
    frechet_distance,
    frechet_mel_distance,
    gaussian_statistics,
    sqrt_psd,
)
from course_lib.metrics.reconstruction import (
    log_mel_distance_db,
    multi_scale_mel_distance,
    real_time_factor,
    si_sdr_db,
    snr_db,
    spectral_convergence_db,
)

__all__ = [
    "caption_adherence",
    "inception_score",
    "FADInfinity",
    "fad_infinity",
    "frame_statistics",
    "frechet_audio_distance",
    "frechet_distance",
    "frechet_mel_distance",
    "gaussian_statistics",
    "sqrt_psd",
    "log_mel_distance_db",
    "multi_scale_mel_distance",
    "real_time_factor",
    "si_sdr_db",
    "snr_db",
    "spectral_convergence_db",
    "beat_f1",
    "control_adherence",
    "dynamics_correlation",
    "mean_beat_f1",
    "melody_accuracy",
]
