"""The neural audio codec: residual VQ, a SEANet encoder/decoder, and the GAN pieces that train it.

Lecture sections "Audio Codec" and "Soundstream". Notebook: notebooks/04_neural_codec.ipynb.
The discriminators and GAN losses are shared with the HiFi-GAN vocoder (notebook 08).
"""

from course_lib.codec.discriminators import (
    DiscriminatorOutput,
    MultiPeriodDiscriminator,
    MultiScaleDiscriminator,
    MultiScaleSTFTDiscriminator,
    PeriodDiscriminator,
    ScaleDiscriminator,
    STFTDiscriminator,
    merge_outputs,
)
from course_lib.codec.losses import (
    SOUNDSTREAM_WEIGHTS,
    SOUNDSTREAM_WINDOWS,
    feature_matching_loss,
    generator_loss,
    hinge_discriminator_loss,
    hinge_generator_loss,
    least_squares_discriminator_loss,
    least_squares_generator_loss,
    mel_l1_loss,
    multi_scale_spectral_loss,
    soundstream_mel_spectrogram,
)

__all__ = [
    "SOUNDSTREAM_WEIGHTS",
    "SOUNDSTREAM_WINDOWS",
    "DiscriminatorOutput",
    "MultiPeriodDiscriminator",
    "MultiScaleDiscriminator",
    "MultiScaleSTFTDiscriminator",
    "PeriodDiscriminator",
    "STFTDiscriminator",
    "ScaleDiscriminator",
    "feature_matching_loss",
    "generator_loss",
    "hinge_discriminator_loss",
    "hinge_generator_loss",
    "least_squares_discriminator_loss",
    "least_squares_generator_loss",
    "mel_l1_loss",
    "merge_outputs",
    "multi_scale_spectral_loss",
    "soundstream_mel_spectrogram",
]
