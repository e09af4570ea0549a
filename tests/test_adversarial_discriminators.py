"""Discriminators of course_lib.adversarial.discriminators: shapes, what each one looks at, and that one can learn."""

import pytest
import torch

from course_lib.adversarial.discriminators import (
    DiscriminatorOutput,
    MultiPeriodDiscriminator,
    MultiScaleDiscriminator,
    MultiScaleSTFTDiscriminator,
    PeriodDiscriminator,
    ScaleDiscriminator,
    merge_outputs,
)
from course_lib.adversarial.losses import hinge_discriminator_loss
from course_lib.errors import AudioInputError, ConfigError

SMALL_MSD = dict(channels=(8, 8, 16), kernels=(15, 41, 5), strides=(1, 4, 1), groups=(1, 4, 1))


def test_stft_discriminator_output_shapes():
    disc = MultiScaleSTFTDiscriminator(windows=(256, 128), channels=4)
    out = disc(torch.randn(2, 2048))
    assert isinstance(out, DiscriminatorOutput) and len(out.logits) == len(out.features) == 2
    for window, logit, maps in zip((256, 128), out.logits, out.features, strict=True):
        frames, bins = 2048 // (window // 4) + 1, window // 2 + 1
        for _ in range(3):  # three stride-2 layers along frequency
            bins = (bins + 1) // 2
        assert logit.shape == (2, 1, frames, bins)
        assert len(maps) == 5 and all(m.shape[:2] == (2, 4) for m in maps)


def test_period_discriminator_sees_each_column_of_samples_period_apart():
    torch.manual_seed(0)
    disc = PeriodDiscriminator(period=3, channels=(4, 8))
    audio = torch.randn(1, 1, 120, requires_grad=True)
    logits, features = disc(audio)
    assert logits.shape[-1] == 3 and len(features) == 2
    logits[..., 1].sum().backward()  # column 1 of the folded map: samples 1, 4, 7, ...
    touched = audio.grad[0, 0].abs() > 0
    assert touched[1::3].any() and not touched[0::3].any() and not touched[2::3].any()


def test_period_discriminator_pads_lengths_that_are_not_a_multiple():
    out = MultiPeriodDiscriminator(periods=(2, 3, 5, 7, 11), channels=(4, 8))(torch.randn(2, 1000))
    assert [logit.shape[-1] for logit in out.logits] == [2, 3, 5, 7, 11]
    assert all(len(maps) == 2 for maps in out.features)


def test_multi_scale_discriminator_pools_the_audio_and_normalises_scale_zero_spectrally():
    disc = MultiScaleDiscriminator(scales=3, **SMALL_MSD)
    out = disc(torch.randn(2, 1, 1024))
    lengths = [logit.shape[-1] for logit in out.logits]
    assert lengths[0] == 1024 // 4 and lengths[0] > lengths[1] > lengths[2]  # each scale pools by 2
    names = [dict(d.named_parameters()) for d in disc.discriminators]
    assert any("original0" in n for n in names[1]) and not any("original0" in n for n in names[0])  # weight vs spectral


def test_default_sizes_are_the_papers():
    mpd = MultiPeriodDiscriminator()
    assert [d.period for d in mpd.discriminators] == [2, 3, 5, 7, 11]
    assert [layer.out_channels for layer in mpd.discriminators[0].layers] == [32, 128, 512, 1024, 1024]
    msd = ScaleDiscriminator()
    assert [layer.groups for layer in msd.layers] == [1, 4, 16, 16, 16, 16, 1]
    assert [d.window for d in MultiScaleSTFTDiscriminator().discriminators] == [2048, 1024, 512, 256, 128]


def test_merge_outputs_concatenates_the_sub_discriminators():
    audio = torch.randn(1, 512)
    merged = merge_outputs(
        MultiPeriodDiscriminator((2, 3), channels=(4,))(audio), MultiScaleDiscriminator(2, **SMALL_MSD)(audio)
    )
    assert len(merged.logits) == len(merged.features) == 4


def test_bad_inputs_and_settings_get_course_errors():
    with pytest.raises(AudioInputError, match="mono"):
        MultiScaleSTFTDiscriminator(windows=(128,), channels=2)(torch.randn(2, 2, 512))
    with pytest.raises(ConfigError, match="groups"):
        ScaleDiscriminator(channels=(6, 10), kernels=(3, 3), strides=(1, 1), groups=(1, 4))


def test_a_discriminator_learns_to_tell_tones_from_noise():
    # The hinge loss falls when an STFT discriminator is trained to separate sines from white noise.
    torch.manual_seed(0)
    disc = MultiScaleSTFTDiscriminator(windows=(128,), channels=4)
    optimizer = torch.optim.Adam(disc.parameters(), lr=1e-2)
    t = torch.arange(1024) / 16_000
    losses = []
    for _ in range(40):
        freqs = 200 + 1500 * torch.rand(4, 1)
        real = 0.5 * torch.sin(2 * torch.pi * freqs * t)  # (4, 1024)
        fake = 0.3 * torch.randn(4, 1024)
        loss = hinge_discriminator_loss(disc(real).logits, disc(fake).logits)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5, losses
