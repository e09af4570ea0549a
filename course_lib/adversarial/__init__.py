"""Adversarial training of audio models: discriminators, GAN losses, and the discriminator's step inside the one loop.

Used alike by the neural codec (SoundStream's hinge losses against EnCodec's multi-scale STFT
discriminator, notebook 04) and the HiFi-GAN vocoder (least squares against the multi-period and
multi-scale discriminators, notebook 08).

- ``discriminators``: :class:`MultiScaleSTFTDiscriminator`, :class:`MultiPeriodDiscriminator`,
  :class:`MultiScaleDiscriminator` (and their sub-discriminators).
- ``losses``: hinge (SoundStream), least squares (HiFi-GAN), feature matching.
- ``discriminator_step``: :class:`DiscriminatorStep`, one discriminator step per call of a generator's
  ``loss_fn`` in :class:`course_lib.train.Trainer`: one model across processes, part of the checkpoint.

Notebooks: notebooks/04_neural_codec.ipynb, 08_latent_diffusion.ipynb.
"""

from course_lib.adversarial.discriminator_step import DiscriminatorStep
from course_lib.adversarial.discriminators import (
    DiscriminatorOutput,
    MultiPeriodDiscriminator,
    MultiScaleDiscriminator,
    MultiScaleSTFTDiscriminator,
    PeriodDiscriminator,
    ScaleDiscriminator,
    STFTDiscriminator,
    merge_outputs,
)
from course_lib.adversarial.losses import (
    feature_matching_loss,
    hinge_discriminator_loss,
    hinge_generator_loss,
    least_squares_discriminator_loss,
    least_squares_generator_loss,
)

__all__ = [
    "DiscriminatorOutput",
    "DiscriminatorStep",
    "MultiPeriodDiscriminator",
    "MultiScaleDiscriminator",
    "MultiScaleSTFTDiscriminator",
    "PeriodDiscriminator",
    "STFTDiscriminator",
    "ScaleDiscriminator",
    "feature_matching_loss",
    "hinge_discriminator_loss",
    "hinge_generator_loss",
    "least_squares_discriminator_loss",
    "least_squares_generator_loss",
    "merge_outputs",
]
