"""Vocoders: Griffin-Lim's baseline, HiFi-GAN's generator (lengths, MRF blocks), its losses, and the shipped weights."""

from __future__ import annotations

import pytest
import torch

from course_lib.adversarial.losses import (
    feature_matching_loss,
    least_squares_discriminator_loss,
    least_squares_generator_loss,
)
from course_lib.audio import log_mel_spectrogram
from course_lib.errors import ConfigError
from course_lib.latent_diffusion import (
    DiscriminatorSizes,
    HiFiGAN,
    HiFiGANConfig,
    HiFiGANDiscriminators,
    discriminator_loss,
    generator_losses,
    griffin_lim_vocoder,
)
from course_lib.latent_diffusion.vocoder import MRFResidualBlock

TINY = HiFiGANConfig(channels=32)


def test_generator_upsamples_by_the_hop_for_every_rate():
    assert HiFiGANConfig().hop_length == 160  # AudioLDM's 5·4·2·2·2
    vocoder = HiFiGAN(TINY)
    log_mel = torch.randn(2, 64, 11)
    audio = vocoder(log_mel)
    assert audio.shape == (2, 11 * 160) and audio.abs().max() <= 1.0  # tanh output
    assert vocoder.vocode(log_mel).shape == (2, 10 * 160)  # centred frames span (F - 1) hops
    # an odd and an even rate both give exactly u times the length
    odd = HiFiGAN(HiFiGANConfig(channels=8, upsample_rates=(3, 2)))
    assert odd(torch.randn(1, 64, 7)).shape == (1, 42)
    with pytest.raises(ConfigError, match="divisible"):
        HiFiGANConfig(channels=20)
    with pytest.raises(ConfigError, match="log_mel_spectrogram"):
        vocoder(torch.randn(2, 80, 11))


def test_mrf_block_is_residual():
    block = MRFResidualBlock(4, 3, (1, 3, 5))
    for conv in block.plain:  # the last convolution of each step zeroed (weight-norm's magnitude g = 0): identity
        with torch.no_grad():
            conv.parametrizations.weight.original0.zero_()
            conv.bias.zero_()
    x = torch.randn(1, 4, 50)
    torch.testing.assert_close(block(x), x)


def test_losses_are_hifigan_equations():
    torch.manual_seed(0)
    discriminators = HiFiGANDiscriminators(
        DiscriminatorSizes(period_channels=(2, 4, 4, 4, 4), scale_channels=(4,) * 7, scale_groups=(1, 2, 2, 2, 2, 2, 1))
    ).eval()  # eval: spectral norm stops its power iteration, so calls agree
    real, fake = torch.randn(2, 1600) * 0.1, torch.randn(2, 1600) * 0.1
    mel_only = generator_losses(None, real, fake)
    mel = (log_mel_spectrogram(real) - log_mel_spectrogram(fake)).abs().mean()
    torch.testing.assert_close(mel_only["loss"], 45 * mel)
    on_real, on_fake = discriminators(real), discriminators(fake)
    expected_d = sum(
        least_squares_discriminator_loss(r.logits, f.logits) for r, f in zip(on_real, on_fake, strict=True)
    )
    torch.testing.assert_close(discriminator_loss(discriminators, real, fake), expected_d)
    terms = generator_losses(discriminators, real, fake)
    expected_g = (
        sum(least_squares_generator_loss(f.logits) for f in on_fake)
        + 2 * sum(feature_matching_loss(r.features, f.features, "sum") for r, f in zip(on_real, on_fake, strict=True))
        + 45 * mel
    )
    torch.testing.assert_close(terms["loss"], expected_g)


def test_griffin_lim_baseline_length():
    log_mel = log_mel_spectrogram(torch.randn(1, 3200) * 0.1)  # (1, 64, 21)
    assert griffin_lim_vocoder(log_mel, n_iter=2).shape == (1, 3200)


def test_shipped_hifigan_learned_and_is_faster_than_griffin_lim():
    """The shipped tiny HiFi-GAN (1,400 CPU steps) against an untrained generator on the log-mel error, and
    against Griffin-Lim on compute. At this budget Griffin-Lim is still closer to the original (its recorded
    figures say so, and the pipeline's "auto" vocoder then picks Griffin-Lim)."""
    import time

    from course_lib.data import SynthMusic
    from course_lib.latent_diffusion.evaluation import evaluate_vocoder
    from course_lib.latent_diffusion.model import TINY_VOCODER, load_hifigan

    vocoder = load_hifigan(device="cpu")
    assert TINY_VOCODER.stat().st_size < 5e6
    assert "latent_diffusion.train" in vocoder.metadata["command"]
    audio = SynthMusic(n_clips=4, seconds=2.0, seed=1).batch(4).audio  # held-out clips
    trained = evaluate_vocoder(vocoder, audio, n_iter=8)["hifigan_mel_l1"]
    torch.manual_seed(0)
    untrained = evaluate_vocoder(HiFiGAN(HiFiGANConfig(**vocoder.config.to_dict())), audio, n_iter=8)["hifigan_mel_l1"]
    assert trained < 0.5 * untrained, (trained, untrained)
    log_mel = log_mel_spectrogram(audio)
    started = time.process_time()
    vocoder.vocode(log_mel)
    hifigan_s = time.process_time() - started
    started = time.process_time()
    griffin_lim_vocoder(log_mel, n_iter=64)
    assert hifigan_s < time.process_time() - started
