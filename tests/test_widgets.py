"""Tests of the course widgets without a front end: controls redraw, the static fallback shows the state."""

from __future__ import annotations

import re

import pytest
import torch

from course_lib.audio import MelConfig, log_mel_spectrogram
from course_lib.data import SynthMusic
from course_lib.errors import ConfigError
from course_lib.widgets import diffusion_scrubber, kmeans_playground


def test_kmeans_playground_redraws_and_its_error_falls_with_the_codebook_size():
    panel = kmeans_playground(sizes=(2, 8, 32), start=2)
    bundle = panel._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle  # the live widget for JupyterLab
    assert bundle["text/html"].count("data:image/jpeg;base64,") == 1  # the static picture for everything else
    errors, images = [], []
    for k in (2, 8, 32):
        panel.controls[0].value = k
        assert f"K = {k} codes → {k.bit_length() - 1} bits" in panel.readout.value
        errors.append(float(re.search(r"error ([\d.]+) per vector", panel.readout.value).group(1)))
        images.append(panel.image.value)
    assert errors[0] > errors[1] > errors[2] and len(set(images)) == 3


def test_diffusion_scrubber_shows_and_plays_each_step():
    config = MelConfig()
    clip = SynthMusic(n_clips=1, seconds=0.5).batch(1).audio  # (1, T)
    clean = log_mel_spectrogram(clip, config)[0]  # (M, N)
    noisy = torch.stack([clean + s * torch.randn_like(clean) for s in (3.0, 1.0, 0.0)])  # (3, M, N)
    panel = diffusion_scrubber(noisy, [1000, 500, 0], config, audio_iterations=2)
    assert "step 2 of 2, diffusion time t = 0" in panel.readout.value
    first_image = panel.image.value
    panel.controls[0].value = 0
    assert "t = 1000" in panel.readout.value and panel.image.value != first_image
    assert panel.players.value.count("<audio") == 1 and "data:audio/flac;base64," in panel.players.value
    assert "<audio" in panel.static_html()


def test_diffusion_scrubber_names_a_shape_mistake():
    with pytest.raises(ConfigError, match=r"squeeze the channel"):
        diffusion_scrubber(torch.zeros(3, 1, 64, 20), [2, 1, 0])


def test_codec_explorer_shows_the_bitrate_of_each_number_of_quantizers():
    from course_lib.codec import Codec, CodecConfig
    from course_lib.widgets import codec_explorer

    torch.manual_seed(0)
    codec = Codec(CodecConfig(n_q=4, offered_n_q=(2, 4), codebook_size=16, kmeans_init=False)).eval()
    panel = codec_explorer(codec, 0.1 * torch.randn(3200))
    assert f"4 of 4 quantizers → bitrate {codec.bitrate(4) / 1000:.1f} kbps" in panel.readout.value
    panel.controls[0].value = 1
    assert f"1 of 4 quantizers → bitrate {codec.bitrate(1) / 1000:.1f} kbps" in panel.readout.value
    assert codec.bitrate(1) == 50 * 1 * 4  # 50 frames/s x 1 level x log2(16) bits
    assert panel.players.value.count("<audio") == 2


def test_control_explorer_generates_on_click_and_reports_the_adherence_of_the_controls_given():
    from course_lib.data.splits import validation_clips
    from course_lib.latent_diffusion import load_controlnet, load_latent_diffusion
    from course_lib.widgets import control_explorer

    pipeline = load_latent_diffusion(device="cpu")
    clips = validation_clips(2)
    panel = control_explorer(pipeline, load_controlnet(pipeline), clips.audio, clips.captions, steps=2)
    assert "controls melody of clip 0" in panel.readout.value and "melody accuracy" in panel.readout.value
    source, given, _ = panel.controls
    source.value, given.value = 1, ("melody", "dynamics", "rhythm")
    assert "of clip 0" in panel.readout.value  # nothing is generated until the button is clicked
    panel.button.click()
    assert "of clip 1" in panel.readout.value
    assert all(name in panel.readout.value for name in ("melody accuracy", "dynamics r", "beat F1"))
    assert panel.players.value.count("<audio") == 2
