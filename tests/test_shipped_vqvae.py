"""The shipped VQ-VAE checkpoints load, reconstruct held-out audio better than baselines, and can be remade.

Checkpoints: course_lib/checkpoints/vqvae_tiny.safetensors (notebook 02) and jukebox_tiny.safetensors
(notebook 03), made by ``python -m course_lib.quantize.train``. The figures they reached when
trained are in their metadata; the thresholds here leave about 1 dB of margin below them.
"""

import pytest
import torch

from course_lib.data.splits import held_out_audio, synth_music_audio
from course_lib.metrics import log_mel_distance_db, snr_db
from course_lib.quantize import VQVAE, HierarchicalVQVAE, KMeans
from course_lib.quantize.evaluation import reconstruction_by_level
from course_lib.quantize.recipes import hierarchical_config, vq_vae_config
from course_lib.quantize.train import main
from course_lib.train import load_weights, shipped_weights


@pytest.fixture(scope="module")
def test_clips() -> torch.Tensor:
    return held_out_audio(8)  # (8, 32000), the clips notebooks 02 and 03 measure on


def test_vq_vae_checkpoint_beats_kmeans_at_the_same_bitrate(test_clips):
    model = VQVAE(vq_vae_config("tiny"))
    metadata = load_weights(shipped_weights("vqvae_tiny.safetensors"), model)
    # made by the command's earlier name (course_lib.quantize.train_vqvae); the metadata keeps its history
    assert metadata["recipe"].startswith("python -m course_lib.quantize.train_vqvae --model vqvae")
    figures = reconstruction_by_level(model, test_clips)
    # Baseline (notebook 01): k-means on 16-sample waveform frames, 256 codes: 1,000 codes/s, 8 kbit/s like the model.
    frames = synth_music_audio(16).reshape(-1, 16)  # (32,000, 16)
    kmeans = KMeans(n_clusters=256, max_iter=10, seed=0).fit(frames)
    baseline = kmeans.decode(kmeans.encode(test_clips.reshape(-1, 16))).reshape(test_clips.shape)
    assert figures["snr_db"][0] > snr_db(test_clips, baseline)
    assert figures["log_mel_db"][0] < log_mel_distance_db(test_clips, baseline) - 3  # much less hiss in quiet parts
    assert figures["snr_db"][0] > 9.0 and figures["spectral_convergence_db"][0] < -10.0
    assert figures["codes_used"][0] > 0.9 * model.config.codebook_size  # no collapse


def test_jukebox_checkpoint_upper_levels_reconstruct_worse(test_clips):
    model = HierarchicalVQVAE(hierarchical_config("tiny"))
    load_weights(shipped_weights("jukebox_tiny.safetensors"), model)
    figures = reconstruction_by_level(model, test_clips)
    sc = figures["spectral_convergence_db"]
    assert sc[0] < sc[1] - 3 and sc[1] < sc[2] - 2, (
        sc
    )  # bottom < middle < top, as Jukebox reports (trained: 6.4 and 4.1 dB apart)
    assert sc[0] < -13.0, sc  # the bottom level is a good reconstruction
    assert figures["snr_db"][0] > figures["snr_db"][1] > figures["snr_db"][2] > 0
    assert min(figures["codes_used"]) > 0.5 * model.config.codebook_size


def test_the_command_trains_and_writes_loadable_weights(tmp_path, capsys):
    out = tmp_path / "vqvae.safetensors"
    main(["--model", "vqvae", "--scale", "tiny", "--steps", "2", "--out", str(out)])
    assert "trained 2 steps" in capsys.readouterr().out
    metadata = load_weights(out, VQVAE(vq_vae_config("tiny")))
    assert metadata["steps"] == 2 and metadata["command"].endswith("--steps 2 --out " + str(out))
    assert not list(tmp_path.glob("*.ckpt"))  # the training checkpoint is removed once the weights are written
