"""Audio in, audio out: file I/O and conditioning, spectrograms and their inversion, notebook players."""

from course_lib.audio.io import (
    check_audio,
    load_audio,
    loudness_normalize,
    peak_normalize,
    require_mono,
    require_sample_rate,
    resample,
    rms_db,
    save_audio,
    to_mono,
)
from course_lib.audio.players import audio_data_url, audio_table
from course_lib.audio.spectral import (
    MelConfig,
    griffin_lim,
    log_mel_spectrogram,
    log_mel_to_audio,
    magnitude_spectrogram,
    mel_filterbank,
    mel_spectrogram,
    mel_to_magnitude,
    spectral_convergence,
    stft,
)

__all__ = [
    "MelConfig",
    "audio_data_url",
    "audio_table",
    "check_audio",
    "griffin_lim",
    "load_audio",
    "log_mel_spectrogram",
    "log_mel_to_audio",
    "loudness_normalize",
    "magnitude_spectrogram",
    "mel_filterbank",
    "mel_spectrogram",
    "mel_to_magnitude",
    "peak_normalize",
    "require_mono",
    "require_sample_rate",
    "resample",
    "rms_db",
    "save_audio",
    "spectral_convergence",
    "stft",
    "to_mono",
]
