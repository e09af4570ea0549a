"""The Mel VAE: its KL term by hand, shapes and padding, learning, the latent scale factor, and the shipped weights."""

from __future__ import annotations

import math

import pytest
import torch

from course_lib.diffusion import SpectrogramScaling
from course_lib.errors import ConfigError
from course_lib.latent_diffusion import DiagonalGaussian, MelVAE, MelVAEConfig, pad_frames
from course_lib.latent_diffusion.evaluation import evaluate_vae, vae_baseline
from course_lib.latent_diffusion.model import TINY_VAE, load_mel_vae

SMALL = MelVAEConfig(channels=(8, 16, 16), latent_channels=4, norm_groups=4)


def test_kl_of_a_diagonal_gaussian_by_hand():
    standard = DiagonalGaussian(torch.zeros(1, 2, 1, 1), torch.zeros(1, 2, 1, 1))
    assert standard.kl().item() == 0.0  # N(0, I) against itself
    # one element with mean 1 and variance e: ½ (1 + e - 1 - 1) = ½ (e - 1)
    q = DiagonalGaussian(torch.ones(1, 1, 1, 1), torch.ones(1, 1, 1, 1))
    assert q.kl().item() == pytest.approx(0.5 * (math.e - 1))
    # the reparameterised sample has the posterior's moments
    wide = DiagonalGaussian(torch.full((1, 1, 100, 100), 2.0), torch.full((1, 1, 100, 100), math.log(0.25)))
    z = wide.sample(torch.Generator().manual_seed(0))
    assert z.mean().item() == pytest.approx(2.0, abs=0.02) and z.std().item() == pytest.approx(0.5, abs=0.02)


def test_shapes_compression_and_padding():
    vae = MelVAE(SMALL)
    x = torch.zeros(2, 1, 64, 52)
    posterior = vae.encode(x)
    assert posterior.mean.shape == (2, 4, 16, 13)  # ×4 down in mel and time
    assert vae.decode(posterior.mean).shape == x.shape
    assert vae.latent_shape(201) == (4, 16, 51)
    padded = pad_frames(torch.zeros(1, 1, 64, 201), 4)
    assert padded.shape[-1] == 204 and (padded[..., 201:] == -1.0).all()  # silence in model units
    log_mel = torch.full((1, 64, 201), -3.0)
    assert vae.encode_log_mel(log_mel).shape == (1, 4, 16, 51)
    assert vae.decode_to_log_mel(vae.encode_log_mel(log_mel), frames=201).shape == (1, 64, 201)


def test_bad_inputs_are_course_errors():
    vae = MelVAE(SMALL)
    with pytest.raises(ConfigError, match="unsqueeze"):
        vae.encode(torch.zeros(2, 64, 52))
    with pytest.raises(ConfigError, match="pad_frames"):
        vae.encode(torch.zeros(2, 1, 64, 51))
    with pytest.raises(ConfigError, match="norm_groups"):
        MelVAEConfig(channels=(10, 20), norm_groups=4)


def test_the_vae_learns_to_reconstruct():
    torch.manual_seed(0)
    vae = MelVAE(MelVAEConfig(channels=(4, 8, 8), norm_groups=4))
    x = SpectrogramScaling().to_model(torch.randn(2, 64, 16).cumsum(-1).clamp(-11, 1)).unsqueeze(1).clamp(-1, 1)
    optimizer = torch.optim.Adam(vae.parameters(), lr=5e-3)
    losses = []
    for _ in range(30):
        terms = vae.loss(x)
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
        losses.append(terms["l1"].item())
    assert losses[-1] < 0.5 * losses[0], losses
    assert set(terms) == {"loss", "l1", "kl", "spectral"}


def test_latent_scale_gives_unit_variance():
    torch.manual_seed(0)
    vae = MelVAE(SMALL).eval()
    x = torch.rand(8, 1, 64, 32) * 2 - 1
    scale = vae.fit_latent_scale(x)
    assert scale == pytest.approx(float(vae.latent_scale))
    with torch.no_grad():
        z = vae.to_latent(x)
        assert z.std().item() == pytest.approx(1.0, abs=0.05)
        torch.testing.assert_close(vae.from_latent(z), vae.decode(z / scale))


def test_baseline_keeps_as_many_numbers_as_the_latent():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    base = vae_baseline(x, compression=4, latent_channels=4)  # k = 2: 2×2 blocks
    assert base.shape == x.shape and base[0, 0, 0, 0] == x[0, 0, :2, :2].mean()
    assert torch.equal(vae_baseline(x, 4, 16), x)  # as many latent numbers as inputs: no reduction
    full = vae_baseline(x, compression=4, latent_channels=8)  # the full VAE: ρ = 2, 2 × 1 blocks
    assert full.shape == x.shape and full.unique().numel() == x.numel() // 2
    assert full[0, 0, 0, 1] == x[0, 0, :2, 1].mean()


def test_shipped_vae_beats_the_same_size_baseline_and_has_unit_latents():
    from course_lib.diffusion import held_out_patches

    vae = load_mel_vae(device="cpu")
    assert TINY_VAE.stat().st_size < 5e6
    assert "latent_diffusion.train" in vae.metadata["command"]
    held_out = held_out_patches(8).log_mels  # (8, 64, 201) nats, never trained on
    scores = evaluate_vae(vae, held_out)
    assert scores["vae_l1_nats"] < 0.7 * scores["baseline_l1_nats"], scores
    with torch.no_grad():
        z = vae.encode_log_mel(held_out, sample=True)
    assert 0.7 < z.std().item() < 1.3  # the scale factor fitted on training clips carries over
