"""Tests of the spectrogram UNet: shapes, time and condition inputs, ControlNet injection points, training."""

from __future__ import annotations

import math

import pytest
import torch

from course_lib.diffusion import DiffusionLoss, NoiseSchedule, UNet, UNetConfig
from course_lib.diffusion.unet import timestep_embedding
from course_lib.errors import ConfigError
from course_lib.train import TrainConfig, Trainer


def small_config(**changes) -> UNetConfig:
    """Three levels (8 → 16 → 16 channels), attention at the lowest: a few ms per call on one core."""
    defaults = {"base_channels": 8, "channel_mults": (1, 2, 2), "attention_levels": (2,), "attention_heads": 2}
    return UNetConfig(**{**defaults, **changes})


@pytest.mark.parametrize("time_embedding", ["adagn", "add"])
def test_output_shape_equals_input_shape(time_embedding):
    torch.manual_seed(0)
    unet = UNet(small_config(time_embedding=time_embedding))
    x = torch.randn(2, 1, 16, 32)  # (B, C, n_mels, frames)
    assert unet(x, torch.tensor([0, 999])).shape == x.shape
    assert unet(x, 17).shape == x.shape  # one timestep for the whole batch


@pytest.mark.parametrize("time_embedding", ["adagn", "add"])
def test_time_embedding_changes_the_output(time_embedding):
    torch.manual_seed(0)
    unet = UNet(small_config(time_embedding=time_embedding))
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        early, late = unet(x, torch.tensor([1, 1])), unet(x, torch.tensor([900, 900]))
    assert (early - late).abs().max() > 1e-3


def test_zero_residuals_leave_the_output_unchanged():
    torch.manual_seed(0)
    unet = UNet(small_config())
    x, t = torch.randn(2, 1, 8, 16), torch.tensor([3, 700])
    with torch.no_grad():
        emb = unet.embed(t)
        _, skips = unet.encode(x, emb)
        assert [s.shape[1] for s in skips] == list(unet.skip_channels)
        middle_shape = unet.middle(skips[-1], emb).shape
        plain = unet(x, t)
        zeros = [torch.zeros_like(s) for s in skips]
        injected = unet(x, t, skip_residuals=zeros, middle_residual=torch.zeros(middle_shape))
        torch.testing.assert_close(injected, plain, atol=0, rtol=0)
        nudged = unet(x, t, skip_residuals=[z + 0.1 for z in zeros])
        assert not torch.allclose(nudged, plain)
        assert not torch.allclose(unet(x, t, middle_residual=torch.ones(middle_shape)), plain)
    with pytest.raises(ConfigError, match="skips"):
        unet(x, t, skip_residuals=zeros[:-1])


def test_input_size_must_divide_by_the_number_of_halvings():
    unet = UNet(small_config())  # 3 levels: 2 halvings, sizes must be multiples of 4
    assert unet.size_multiple == 4
    with pytest.raises(ConfigError, match="not divisible by 4"):
        unet(torch.randn(1, 1, 18, 32), 0)
    with pytest.raises(ConfigError, match="unsqueeze"):
        unet(torch.randn(1, 18, 32), 0)


def test_condition_and_learned_null_embedding():
    torch.manual_seed(0)
    unet = UNet(small_config(cond_dim=3))
    with torch.no_grad():
        unet.null_cond.normal_()
    x, t, cond = torch.randn(2, 1, 8, 8), torch.tensor([5, 5]), torch.randn(2, 3)
    with torch.no_grad():
        unconditional, conditional = unet(x, t), unet(x, t, cond=cond)
        mixed = unet(x, t, cond=cond, cond_mask=torch.tensor([True, False]))
    torch.testing.assert_close(mixed[0], conditional[0])
    torch.testing.assert_close(mixed[1], unconditional[1])
    assert not torch.allclose(conditional, unconditional)
    with pytest.raises(ConfigError, match="cond_dim"):
        UNet(small_config())(x, t, cond=cond)


def test_timestep_embedding_by_hand():
    emb = timestep_embedding(torch.tensor([0, 3]), 8)  # ω_i = 10000^(-i/4)
    assert emb.shape == (2, 8)
    torch.testing.assert_close(emb[0], torch.tensor([0.0] * 4 + [1.0] * 4))
    expected = [math.sin(3 * 10_000 ** (-i / 4)) for i in range(4)] + [
        math.cos(3 * 10_000 ** (-i / 4)) for i in range(4)
    ]
    torch.testing.assert_close(emb[1], torch.tensor(expected))


def test_presets_and_config_checks():
    tiny = UNet(UNetConfig.tiny())
    assert 200_000 < sum(p.numel() for p in tiny.parameters()) < 500_000  # "a few hundred K"
    full = UNetConfig.for_scale("full")
    assert full.base_channels == 96 and full.channel_mults == (1, 2, 2, 4)
    with pytest.raises(ConfigError, match="time_embedding"):
        UNetConfig(time_embedding="concat")
    with pytest.raises(ConfigError, match="divisible"):
        UNetConfig(base_channels=12, norm_groups=8)
    with pytest.raises(ConfigError, match="attention_levels"):
        UNetConfig(attention_levels=(5,))


def stripes(n: int, size: int = 8, seed: int = 0) -> torch.Tensor:
    """Tiny images: horizontal or vertical ±1 stripes with a random phase, like a spectrogram's harmonics or onsets."""
    generator = torch.Generator().manual_seed(seed)
    grid = torch.arange(size).float()
    phase = torch.rand(n, 1, 1, generator=generator) * 2 * math.pi
    wave = torch.sin(grid[None, :, None] * math.pi / 2 + phase)  # (n, size, 1): horizontal stripes
    vertical = torch.rand(n, 1, 1, generator=generator) < 0.5
    images = torch.where(vertical, wave.transpose(1, 2), wave).expand(n, size, size)  # (n, size, size)
    return images[:, None].contiguous()  # (n, 1, size, size)


@pytest.mark.parametrize("time_embedding", ["adagn", "add"])
def test_loss_falls_when_training_on_tiny_images(time_embedding):
    torch.manual_seed(0)
    unet = UNet(small_config(channel_mults=(1, 2), attention_levels=(1,), time_embedding=time_embedding))
    data = stripes(512)
    config = TrainConfig(steps=60, lr=3e-3, log_every=10, progress=False)
    history = Trainer(unet, DiffusionLoss(NoiseSchedule.linear()), config, device="cpu").fit(
        lambda step: data[(step * 16) % 512 :][:16]
    )
    losses = [entry["loss"] for entry in history]
    assert losses[-1] < 0.5 * losses[0], losses  # measured: 0.57 → 0.16 (adagn), 0.62 → 0.17 (add)


def test_self_attention_equals_softmax_attention_by_hand():
    """The attention layer computes softmax(q kᵀ / √d) v over all positions (whatever kernel torch picks)."""
    from course_lib.diffusion.unet import SelfAttention

    torch.manual_seed(0)
    layer = SelfAttention(channels=16, heads=4, groups=4)
    x = torch.randn(2, 16, 8, 8)
    qkv = layer.qkv(layer.norm(x)).reshape(2, 3, 4, 4, 64)  # (B, 3, nh, hs, HW)
    q, k, v = qkv.unbind(1)  # (B, nh, hs, HW) each
    weights = torch.softmax(q.transpose(-1, -2) @ k / math.sqrt(4), dim=-1)  # (B, nh, HW, HW)
    out = (weights @ v.transpose(-1, -2)).transpose(-1, -2).reshape(2, 16, 8, 8)  # (B, C, H, W)
    torch.testing.assert_close(layer(x), x + layer.proj(out), atol=1e-5, rtol=1e-5)
