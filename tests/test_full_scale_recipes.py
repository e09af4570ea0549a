"""The full-scale training paths without training: recipes that fit their data, and parents a full chain can pass.

A full-scale stage must be able to read full-scale parents (a VAE, a joint embedding, a codec, a
tokenizer, a latent diffusion model); these tests check that each command line hands its paths on
and that a parent that does not fit is refused with a course error. The full runs themselves
(a few optimizer steps of every ``--scale full`` command) are measured by hand, see README.md,
"Training the full-scale models".
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from course_lib.errors import CheckpointError, ConfigError


def test_the_full_vae_crops_fit_a_training_clip_and_train():
    from course_lib.audio import MelConfig
    from course_lib.diffusion.mel_patches import MelPatches
    from course_lib.latent_diffusion.mel_vae import MelVAE, MelVAEConfig
    from course_lib.latent_diffusion.train import recipe

    plan = recipe("vae", "full")
    mel = MelConfig()
    clip_frames = round(2.0 * mel.sample_rate) // mel.hop_length + 1  # 201 frames in a 2-second clip
    torch.manual_seed(0)
    vae = MelVAE(MelVAEConfig.full())
    assert plan.crop_frames <= clip_frames and plan.crop_frames % vae.frame_multiple == 0
    batch = MelPatches(2, frames=plan.crop_frames).random_batch(1, torch.Generator().manual_seed(0))
    assert batch.shape == (1, 1, mel.n_mels, plan.crop_frames)
    loss = vae.loss(batch)["loss"]
    assert torch.isfinite(loss)


def _fake_runner(calls: list, name: str):
    def run(config, training_run, **parents):
        calls.append((name, training_run.scale, parents))
        Path(training_run.out).write_bytes(b"x")
        return {"train_seconds": 0.0, "final": {}}

    return run


def test_the_latent_diffusion_command_passes_full_scale_parents(monkeypatch, tmp_path):
    import course_lib.latent_diffusion.train as train_module
    from course_lib.latent_diffusion.model import TINY_JOINT_EMBEDDING, TINY_VAE

    calls: list = []
    for stage in ("ldm", "controlnet"):
        monkeypatch.setattr(train_module, f"run_{stage}", _fake_runner(calls, stage))
    vae, embedding, base = tmp_path / "vae.safetensors", tmp_path / "emb.safetensors", tmp_path / "ldm.safetensors"
    out = str(tmp_path / "out.safetensors")
    common = ["--scale", "full", "--out", out, "--device", "cpu"]
    train_module.main(["--stage", "ldm", *common, "--vae", str(vae), "--embedding", str(embedding)])
    train_module.main(["--stage", "controlnet", *common, "--base", str(base), "--vae", str(vae)])
    assert calls[0] == ("ldm", "full", {"vae_path": vae, "embedding_path": embedding})
    assert calls[1] == (
        "controlnet",
        "full",
        {"base_path": base, "vae_path": vae, "embedding_path": TINY_JOINT_EMBEDDING},
    )
    train_module.main(["--stage", "ldm", "--scale", "tiny", "--out", out])  # the tiny defaults: the shipped files
    assert calls[2][2]["vae_path"] == TINY_VAE


def test_the_lm_command_passes_full_scale_parents(monkeypatch, tmp_path):
    import course_lib.lm.train as train_module

    calls: list = []
    monkeypatch.setattr(
        train_module, "run_stage", lambda plan, run, tokenizer, codec, embedding: calls.append(
            (plan.stage, tokenizer, codec, embedding)
        ) or {"train_seconds": 0.0, "validation_nll": 0.0, "unigram_nll": 0.0},
    )  # fmt: skip
    monkeypatch.setattr(
        train_module, "run_tokenizer", lambda plan, run, embedding: calls.append(
            ("tokenizer", embedding)
        ) or {"clusters_used": 0, "train_seconds": 0.0},
    )  # fmt: skip
    paths = {name: tmp_path / f"{name}.safetensors" for name in ("codec", "embedding", "tokenizer")}
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"x")
    common = ["--scale", "full", "--out", str(out), "--device", "cpu"]
    train_module.main(["--stage", "tokenizer", *common, "--embedding", str(paths["embedding"])])
    train_module.main(["--stage", "coarse", *common, *(f"--{k}={v}" for k, v in paths.items())])
    assert calls == [
        ("tokenizer", paths["embedding"]),
        ("coarse", paths["tokenizer"], paths["codec"], paths["embedding"]),
    ]


def test_a_full_semantic_stage_refuses_a_tokenizer_with_other_clusters(monkeypatch, tmp_path):
    import course_lib.lm.train as train_module

    tokenizer = SimpleNamespace(config=SimpleNamespace(n_clusters=64))  # the tiny tokenizer's size
    monkeypatch.setattr(train_module, "_models", lambda *args, **paths: (None, None, tokenizer))
    with pytest.raises(ConfigError, match="64 clusters but this full recipe expects 256"):
        run = train_module.COMMAND.parse(
            ["--stage", "semantic", "--scale", "full", "--device", "cpu", "--out", str(tmp_path / "x")]
        )
        train_module.run_stage(train_module.recipe("semantic", "full"), run, tmp_path / "k")


def test_a_tokenizer_fitted_on_another_embedding_is_refused(tmp_path):
    from course_lib.joint_embedding.model import JointEmbedding, JointEmbeddingConfig
    from course_lib.lm.pretrained import TINY_FILES
    from course_lib.lm.train import _models
    from course_lib.train import save_weights

    torch.manual_seed(0)
    other = tmp_path / "another_embedding.safetensors"
    save_weights(other, JointEmbedding(JointEmbeddingConfig()))  # untrained: not the tokenizer's embedding
    with pytest.raises(CheckpointError, match="made with another joint embedding"):
        _models(torch.device("cpu"), False, True, TINY_FILES["tokenizer"], embedding_path=other)
