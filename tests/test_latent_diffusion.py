"""The AudioLDM pipeline: latent sizes, text -> embedding -> DDIM on latents -> VAE -> vocoder, guidance; the shipped model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from course_lib.diffusion import DiffusionLoss, NoiseSchedule, UNet
from course_lib.errors import CheckpointError, ConfigError
from course_lib.latent_diffusion import MelVAE, MelVAEConfig, TextToAudio, latent_frames, latent_unet_config
from course_lib.latent_diffusion.model import load_mel_vae


class FakeEmbedding:
    """Stands in for the joint embedding: a fixed random unit vector per caption."""

    dim = 8

    def embed_text(self, captions):
        rows = [torch.Generator().manual_seed(sum(map(ord, c))) for c in captions]
        return F.normalize(torch.stack([torch.randn(self.dim, generator=g) for g in rows]), dim=-1)


def small_pipeline() -> TextToAudio:
    torch.manual_seed(0)
    vae = MelVAE(MelVAEConfig(channels=(4, 8, 8), norm_groups=4)).eval()
    unet = UNet(
        latent_unet_config(4, FakeEmbedding.dim).__class__(in_channels=4, cond_dim=8, base_channels=8, norm_groups=4)
    ).eval()
    return TextToAudio(unet, vae, FakeEmbedding(), None, NoiseSchedule.scaled_linear())


def test_latent_sizes_round_up_to_the_networks_multiples():
    pipeline = small_pipeline()
    assert latent_frames(2.0, pipeline.vae, pipeline.unet) == (
        201,
        52,
    )  # 201 mel frames -> 51 -> 52 (UNet: multiple of 4)
    assert pipeline.latent_shape(2.0) == (4, 16, 52)
    assert pipeline.latent_shape(0.5) == (4, 16, 16)  # 51 frames -> 13 -> 16
    with pytest.raises(ConfigError, match="seconds"):
        latent_frames(0, pipeline.vae, pipeline.unet)


def test_generate_goes_from_text_to_audio_of_the_asked_length():
    pipeline = small_pipeline()
    audio, log_mel = pipeline.generate(["a slow FM-bell melody", "loud drums"], seconds=0.5, steps=3, guidance=2.0,
                                       generator=torch.Generator().manual_seed(0), return_log_mel=True)  # fmt: skip
    assert audio.shape == (2, 8000) and torch.isfinite(audio).all()
    assert log_mel.shape == (2, 64, 51)
    with pytest.raises(ConfigError, match="captions"):
        pipeline.generate([], seconds=0.5, steps=2)
    with pytest.raises(ConfigError, match="vocoder"):
        pipeline.vocode(log_mel, 0.5, vocoder="wavenet")


def test_guidance_one_is_the_conditional_model_and_the_seed_fixes_the_sample():
    pipeline = small_pipeline()
    cond = FakeEmbedding().embed_text(["x"])
    noise = torch.randn(1, *pipeline.latent_shape(0.5), generator=torch.Generator().manual_seed(0))
    plain = pipeline.sample_latents(cond, 0.5, steps=4, guidance=1.0, noise=noise)
    again = pipeline.sample_latents(cond, 0.5, steps=4, guidance=1.0, noise=noise)
    guided = pipeline.sample_latents(cond, 0.5, steps=4, guidance=3.0, noise=noise)
    assert torch.equal(plain, again)
    # a fresh UNet's null embedding is zero and its condition projection is not: guidance changes the sample
    assert not torch.allclose(plain, guided)


def test_training_on_latents_with_condition_dropout_runs():
    pipeline = small_pipeline()
    unet = pipeline.unet.train()
    loss = DiffusionLoss(pipeline.schedule, cond_drop_prob=0.1)
    batch = {"x0": torch.randn(4, *pipeline.latent_shape(0.5)), "cond": FakeEmbedding().embed_text(list("abcd"))}
    terms = loss(unet, batch)
    terms["loss"].backward()
    assert terms["loss"].item() > 0 and unet.cond_proj.weight.grad.abs().sum() > 0


def test_missing_weights_name_the_command(tmp_path):
    with pytest.raises(CheckpointError, match="latent_diffusion.train --stage vae"):
        load_mel_vae(tmp_path / "mel_vae_tiny.safetensors")


def test_shipped_text_to_audio_follows_unseen_captions_above_chance():
    """The issue's check: captions of held-out attribute combinations -> audio whose attributes the classifier recognises."""
    from course_lib.attributes import load_tiny_attribute_classifier
    from course_lib.data.splits import held_out_clips
    from course_lib.latent_diffusion import load_latent_diffusion
    from course_lib.metrics import caption_adherence

    pipeline = load_latent_diffusion(device="cpu")
    captions = held_out_clips(8).captions
    audio = pipeline.generate(captions, seconds=2.0, steps=20, guidance=3.0, generator=torch.Generator().manual_seed(0))
    assert audio.shape == (8, 32_000)
    scores = caption_adherence(load_tiny_attribute_classifier("cpu"), audio, captions)
    chance = {"instrument": 1 / 3, "tempo_class": 1 / 3, "drums": 1 / 2}
    assert sum(scores[k] > chance[k] for k in chance) >= 2, scores


def test_recipes_and_the_training_control_signal():
    from course_lib.latent_diffusion.latent_data import random_control_signal
    from course_lib.latent_diffusion.train import recipe

    assert recipe("ldm", "tiny").cond_drop_prob == 0.1  # AudioLDM's condition dropout
    assert recipe("controlnet", "tiny").cond_drop_prob == 0.5  # ControlNet's prompt dropout
    assert recipe("ldm", "tiny").schedule == "scaled_linear" and recipe("ldm", "tiny").prediction_type == "epsilon"
    assert recipe("vocoder", "tiny").gan_steps < recipe("vocoder", "tiny").steps
    assert recipe("vae", "full").steps > recipe("vae", "tiny").steps
    with pytest.raises(ConfigError, match="stage"):
        recipe("gan")
    melody = F.one_hot(torch.randint(12, (64, 201)), 12).movedim(-1, 1).float()
    controls = {"melody": melody, "loudness_db": torch.full((64, 201), -20.0), "beats": torch.zeros(64, 201)}
    signal = random_control_signal(controls, 208, torch.Generator().manual_seed(0))
    assert signal.shape == (64, 17, 208) and (signal[..., 201:] == 0).all()
    masks = signal[:, 14:, :201]  # (64, 3, 201)
    given = masks.amax(-1)  # which controls each example got
    assert (given.sum(1) >= 1).all() and (given.sum(1) < 3).any()
    melody_rows = signal[:, :12, :201].sum(1)  # 1 where the melody is given, 0 elsewhere
    torch.testing.assert_close(melody_rows, masks[:, 0])
