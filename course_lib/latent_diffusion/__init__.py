"""Latent diffusion and control: AudioLDM (a VAE on mel, text conditioning, a vocoder) and ControlNet / Music ControlNet.

- ``mel_vae``: the KL autoencoder on log-mel spectrograms and its latent scale factor.
- ``vocoder``: Griffin-Lim (the baseline) and a small HiFi-GAN generator with its GAN losses.
- ``model``: the latent denoiser, the text-to-audio pipeline (:class:`TextToAudio`, :func:`text_to_audio`), loaders.
- ``controlnet``: ControlNet's trainable copy and zero convolutions; Music ControlNet's control signal with masks.
- ``train``: the commands behind the shipped checkpoints (``python -m course_lib.latent_diffusion.train --stage ...``).

Notebooks: notebooks/08_latent_diffusion.ipynb, 09_controlnet.ipynb.
"""

from course_lib.latent_diffusion.controlnet import (
    CONTROLS,
    ControlledUNet,
    ControlNet,
    ControlNetConfig,
    ControlNetLoss,
    control_signal,
    random_control_masks,
    zero_conv,
)
from course_lib.latent_diffusion.mel_vae import DiagonalGaussian, MelVAE, MelVAEConfig, pad_frames
from course_lib.latent_diffusion.model import (
    TextToAudio,
    latent_frames,
    latent_unet_config,
    load_controlnet,
    load_hifigan,
    load_latent_diffusion,
    load_mel_vae,
    text_to_audio,
)
from course_lib.latent_diffusion.vocoder import (
    DiscriminatorSizes,
    HiFiGAN,
    HiFiGANConfig,
    HiFiGANDiscriminators,
    discriminator_loss,
    generator_losses,
    griffin_lim_vocoder,
)

__all__ = [
    "CONTROLS",
    "ControlNet",
    "ControlNetConfig",
    "ControlNetLoss",
    "ControlledUNet",
    "DiagonalGaussian",
    "DiscriminatorSizes",
    "HiFiGAN",
    "HiFiGANConfig",
    "HiFiGANDiscriminators",
    "MelVAE",
    "MelVAEConfig",
    "TextToAudio",
    "control_signal",
    "discriminator_loss",
    "generator_losses",
    "griffin_lim_vocoder",
    "latent_frames",
    "latent_unet_config",
    "load_controlnet",
    "load_hifigan",
    "load_latent_diffusion",
    "load_mel_vae",
    "pad_frames",
    "random_control_masks",
    "text_to_audio",
    "zero_conv",
]
