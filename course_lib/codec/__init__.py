"""The neural audio codec: residual VQ, a SEANet encoder/decoder, and the GAN pieces that train it.

Lecture sections "Audio Codec" and "Soundstream". Notebook: notebooks/04_neural_codec.ipynb.

- ``residual_vq``: :class:`ResidualVQ` (levels of ``course_lib.quantize.VectorQuantizer``, quantizer dropout).
- ``seanet``: the convolutional encoder and decoder; ``model``: :class:`Codec` = encoder + RVQ + decoder.
- ``losses``: SoundStream's reconstruction loss and L_G; its discriminators and adversarial losses are
  :mod:`course_lib.adversarial`'s (shared with the vocoder of notebook 08), re-exported here.
- ``recipes``: the training recipe; ``evaluation``: the held-out figures per bitrate; ``train``: the
  command of the shipped checkpoint; ``pretrained``: :func:`load_tiny_codec`.
- ``codes_file``: the ``.codes`` format of the command line (``python -m course_lib.codec``).
- ``baselines``: a μ-law/MDCT transform codec and Opus, to compare with.

Tokens for a language model: ``load_tiny_codec().encode(audio)`` gives ``(B, n_q, frames)`` integers
in [0, 1024) at 50 frames per second, ``n_q`` up to 12 levels (0.5 kbps each).
"""

from course_lib.adversarial import (  # the GAN pieces, shared with the vocoder
    DiscriminatorOutput,
    MultiPeriodDiscriminator,
    MultiScaleDiscriminator,
    MultiScaleSTFTDiscriminator,
    PeriodDiscriminator,
    ScaleDiscriminator,
    STFTDiscriminator,
    feature_matching_loss,
    hinge_discriminator_loss,
    hinge_generator_loss,
    least_squares_discriminator_loss,
    least_squares_generator_loss,
    merge_outputs,
)
from course_lib.codec.baselines import MuLawMDCTCodec, imdct, mdct, opus_available, opus_roundtrip
from course_lib.codec.codes_file import CodesFile, check_codes_model, load_codes, save_codes
from course_lib.codec.losses import (
    SOUNDSTREAM_WEIGHTS,
    SOUNDSTREAM_WINDOWS,
    generator_loss,
    multi_scale_spectral_loss,
    soundstream_mel_spectrogram,
)
from course_lib.codec.model import Codec, CodecConfig, CodecOutput
from course_lib.codec.pretrained import load_codec, load_tiny_codec
from course_lib.codec.residual_vq import ResidualVQ, ResidualVQOutput
from course_lib.codec.seanet import SEANetDecoder, SEANetEncoder

__all__ = [
    "Codec",
    "CodecConfig",
    "CodecOutput",
    "CodesFile",
    "MuLawMDCTCodec",
    "ResidualVQ",
    "ResidualVQOutput",
    "SEANetDecoder",
    "SEANetEncoder",
    "check_codes_model",
    "imdct",
    "load_codec",
    "load_codes",
    "load_tiny_codec",
    "mdct",
    "opus_available",
    "opus_roundtrip",
    "save_codes",
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
    "merge_outputs",
    "multi_scale_spectral_loss",
    "soundstream_mel_spectrogram",
]
