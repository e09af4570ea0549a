"""VQ-VAE and Jukebox's hierarchical VQ-VAE: shapes, losses, a few training steps, token rates, errors."""

import math

import pytest
import torch

from course_lib.config import seed_everything
from course_lib.errors import AudioInputError, ConfigError
from course_lib.quantize.hierarchical_vq_vae import (
    JUKEBOX_HOPS,
    HierarchicalVQVAE,
    HierarchicalVQVAEConfig,
    token_rate,
)
from course_lib.quantize.vq_vae import VQVAE, VQVAEConfig

cuda_only = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA GPU on this machine; run `make gpu-check` on one"
)


def tones(batch: int = 4, samples: int = 2048, sample_rate: int = 16_000, seed: int = 0) -> torch.Tensor:
    """Decaying sine tones between 110 and 880 Hz, (B, T)."""
    generator = torch.Generator().manual_seed(seed)
    frequency = 110 * 2 ** (3 * torch.rand(batch, 1, generator=generator))
    t = torch.arange(samples) / sample_rate
    return 0.5 * torch.sin(2 * math.pi * frequency * t) * torch.exp(-4 * t)


def train(model: torch.nn.Module, wav: torch.Tensor, steps: int, lr: float = 3e-3) -> list[float]:
    optimizer = torch.optim.Adam(model.parameters(), lr)
    losses = []
    for _ in range(steps):
        loss = model(wav).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_vq_vae_shapes_for_any_length():
    model = VQVAE()
    assert model.hop == 64
    wav = tones(samples=1000)  # not a multiple of the hop: padded inside, cropped back
    out = model(wav)
    assert out.reconstruction.shape == (4, 1, 1000)
    assert out.vq.indices.shape == (4, 16)  # ceil(1000 / 64)
    assert out.vq.quantized.shape == (4, 32, 16)
    codes = model.encode(wav)
    assert codes.shape == (4, 16) and codes.dtype == torch.long
    assert model.decode(codes).shape == (4, 1, 1024)
    torch.testing.assert_close(out.loss, out.reconstruction_loss + out.vq.loss)
    torch.testing.assert_close(model(wav[:, None]).loss, out.loss)  # (B, 1, T) and (B, T) alike


def test_vq_vae_eval_reconstruction_is_the_decoded_codes():
    model = VQVAE().eval()
    wav = tones(samples=1024)
    with torch.no_grad():
        out = model(wav)
    assert torch.equal(model.encode(wav), out.vq.indices)
    torch.testing.assert_close(model.decode(out.vq.indices), out.reconstruction)


def test_vq_vae_loss_falls_in_a_few_steps():
    seed_everything(0)
    model = VQVAE(VQVAEConfig(channels=16, strides=(2, 4), use_ema=True))
    losses = train(model, tones(), steps=40)
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5


def test_vq_vae_config_presets_and_quantizer_options():
    full = VQVAEConfig.for_scale("full")
    assert (full.channels, full.codebook_size, full.hop) == (128, 1024, 64)
    model = VQVAE(VQVAEConfig(strides=(2, 5), use_ema=True, dead_code_steps=3, cosine=True))
    assert model.hop == 10 and model(tones(samples=100)).reconstruction.shape == (4, 1, 100)
    vq = model.quantizer
    assert vq.use_ema and vq.dead_code_steps == 3 and vq.cosine


def test_vq_vae_training_is_reproducible_from_a_seed():
    def run() -> list[float]:
        seed_everything(0)
        return train(VQVAE(VQVAEConfig(channels=8, dead_code_steps=1)), tones(samples=512), steps=3)

    assert run() == run()


def test_vq_vae_bad_input_raises_errors_that_name_the_fix():
    model = VQVAE()
    with pytest.raises(AudioInputError, match="average the channels"):
        model(torch.randn(2, 2, 256))
    with pytest.raises(AudioInputError, match="NaN"):
        model(torch.full((1, 256), float("nan")))
    with pytest.raises(ConfigError, match="strides"):
        VQVAE(VQVAEConfig(strides=(4, 1)))


def test_token_rate_of_jukebox():
    rate = token_rate(44_100, JUKEBOX_HOPS)
    assert [44_100 / hop for hop in JUKEBOX_HOPS] == [5512.5, 1378.125, 344.53125]
    assert rate == pytest.approx(7235.15625)
    assert rate == pytest.approx(7234, rel=2e-4)  # the lecture's "about 7,234 tokens per second"
    assert token_rate(24_000, [320]) == 75  # one level at SoundStream's hop
    assert HierarchicalVQVAE().token_rate(16_000) == pytest.approx(2000 + 500 + 125)
    with pytest.raises(ConfigError):
        token_rate(44_100, [])


def test_hierarchical_levels_reconstruct_independently():
    model = HierarchicalVQVAE()
    assert model.hops == JUKEBOX_HOPS
    wav = tones(batch=2, samples=1024)
    out = model(wav)
    assert len(out.levels) == 3
    for level, hop in zip(out.levels, JUKEBOX_HOPS, strict=True):
        assert level.reconstruction.shape == (2, 1, 1024)
        assert level.vq.indices.shape == (2, 1024 // hop)
    torch.testing.assert_close(out.loss, sum(level.loss for level in out.levels))
    codes = model.encode(wav)
    assert [c.shape[1] for c in codes] == [128, 32, 8]
    assert all(model.decode(c, level=i).shape == (2, 1, 1024) for i, c in enumerate(codes))
    # Levels share the codebook size but not weights.
    sizes = {level.quantizer.codebook_size for level in model.levels}
    assert sizes == {256} and model.levels[0].quantizer.codebook is not model.levels[1].quantizer.codebook


def test_hierarchical_loss_falls_and_the_top_level_reconstructs_worst():
    seed_everything(0)
    model = HierarchicalVQVAE()
    wav = tones(batch=4, samples=2048)
    losses = train(model, wav, steps=60)
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5
    with torch.no_grad():
        errors = [level.reconstruction_loss.item() for level in model.eval()(wav).levels]
    assert errors[0] < errors[2]  # hop 8 keeps more detail than hop 128


def test_hierarchical_config_presets():
    tiny, full = HierarchicalVQVAEConfig.tiny(), HierarchicalVQVAEConfig.full()
    assert tiny.hops == full.hops == JUKEBOX_HOPS
    assert (full.codebook_size, full.decay, full.beta) == (2048, 0.99, 0.02)  # Jukebox's settings
    level = full.level(2)
    assert level.strides == (4, 4, 4, 2) and level.codebook_size == 2048 and level.use_ema


@pytest.mark.cuda
@cuda_only
def test_models_run_on_cuda():
    wav = tones(batch=2, samples=1024).cuda()
    out = VQVAE().cuda()(wav)
    out.loss.backward()
    assert out.reconstruction.device.type == "cuda"
    assert HierarchicalVQVAE().cuda()(wav).loss.isfinite()
