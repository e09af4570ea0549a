"""Every loader of weights reads its header through one function, and checks the tensors' checksum.

A missing file, a cut-short one, a pickle renamed ``.safetensors``, a file without course metadata,
another model's weights and a flipped byte in the tensor data each give a CheckpointError naming the
file, what it holds and what was expected, from every ``load_*`` function of the course.
"""

from __future__ import annotations

import functools
import json
import shutil
import struct
import sys
import warnings
from pathlib import Path

import pytest
import safetensors.torch
import torch

from course_lib.attributes import load_attribute_classifier
from course_lib.codec.pretrained import load_codec
from course_lib.diffusion.pretrained import load_pretrained_diffusion
from course_lib.errors import CheckpointError
from course_lib.joint_embedding.model import load_joint_embedding
from course_lib.latent_diffusion.model import (
    file_sha256,
    load_controlnet,
    load_hifigan,
    load_latent_diffusion,
    load_mel_vae,
)
from course_lib.lm.pretrained import load_lm, load_semantic_tokenizer
from course_lib.quantize import VQVAE, HierarchicalVQVAE
from course_lib.quantize.recipes import hierarchical_config, vq_vae_config
from course_lib.train.weights import (
    CHECKSUM_KEY,
    WeightsHeader,
    load_weights,
    read_weights_header,
    save_weights,
    tensors_checksum,
)

CHECKPOINTS = Path(__file__).resolve().parent.parent / "course_lib" / "checkpoints"
SHIPPED = sorted(CHECKPOINTS.glob("*.safetensors"))


class StubEmbedding:
    """Stands in for the joint embedding the semantic tokenizer reads frames with (not needed to load it)."""

    def audio_frames(self, audio):
        return audio


@functools.cache
def shipped_pipeline():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the LDM's recorded VAE and embedding hashes match the shipped files
        return load_latent_diffusion(device="cpu")


# loader, the shipped file it loads, what the message says was expected
LOADERS = {
    "codec": (lambda p: load_codec(p, "cpu"), "codec_tiny", "course_lib Codec"),
    "diffusion": (lambda p: load_pretrained_diffusion(p, "cpu"), "ddpm_tiny", "spectrogram diffusion UNet"),
    "joint_embedding": (lambda p: load_joint_embedding(p, "cpu"), "joint_embedding_tiny", "course_lib JointEmbedding"),
    "attributes": (lambda p: load_attribute_classifier(p, "cpu"), "attribute_classifier_tiny", "course_lib AttributeClassifier"),
    "lm": (lambda p: load_lm(p, "cpu"), "lm_delay_tiny", "course_lib TokenLM"),
    "tokenizer": (
        lambda p: load_semantic_tokenizer(p, StubEmbedding(), "cpu"), "lm_semantic_kmeans_tiny", "course_lib SemanticTokenizer"
    ),
    "mel_vae": (lambda p: load_mel_vae(p, "cpu"), "mel_vae_tiny", "course_lib MelVAE"),
    "hifigan": (lambda p: load_hifigan(p, "cpu"), "hifigan_tiny", "course_lib HiFiGAN"),
    "latent_diffusion": (
        lambda p: load_latent_diffusion(p, "cpu"), "latent_diffusion_tiny", "course_lib UNet (latent_diffusion"
    ),
    "controlnet": (lambda p: load_controlnet(shipped_pipeline(), p), "controlnet_music_tiny", "course_lib ControlNet"),
    "vqvae": (lambda p: load_weights(p, VQVAE(vq_vae_config("tiny"))), "vqvae_tiny", None),
    "jukebox": (lambda p: load_weights(p, HierarchicalVQVAE(hierarchical_config("tiny"))), "jukebox_tiny", None),
}  # fmt: skip


def copy_of(name: str, folder: Path) -> Path:
    """A copy of a shipped file under its own name (the latent diffusion loaders look files up by name)."""
    return Path(shutil.copy(CHECKPOINTS / f"{name}.safetensors", folder / f"{name}.safetensors"))


def data_start(path: Path) -> int:
    return 8 + struct.unpack("<Q", path.read_bytes()[:8])[0]


def flip_a_byte(path: Path, at: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    start = data_start(path)
    data[start + int((len(data) - start) * at)] ^= 0x01
    path.write_bytes(bytes(data))


# --------------------------------------------------------------------------------- the header reader
def test_the_header_reader_gives_class_config_metadata_and_checksum():
    header = read_weights_header(CHECKPOINTS / "ddpm_tiny.safetensors", "UNet")
    assert isinstance(header, WeightsHeader) and header.model_class == "UNet"
    assert header.config["channel_mults"] == [1, 2, 2] and header.metadata["stage"] == "teacher"
    assert len(header.checksum) == 64
    assert header.describe().startswith("a UNet (stage 'teacher', made by `python -m course_lib.diffusion")


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_every_loader_names_another_models_file_and_what_it_expected(tmp_path, name):
    load, own, expected = LOADERS[name]
    other = copy_of("codec_tiny" if name in ("vqvae", "jukebox") else "vqvae_tiny", tmp_path)
    with pytest.raises(CheckpointError) as caught:
        load(other)
    message = str(caught.value)
    assert str(other) in message and "Fix:" in message, message
    if expected is None:  # load_weights into a model you built: the identity check lists what differs
        assert "model class: saved Codec, this model" in message, message
    else:
        assert (
            f"holds no {expected}" in message and "it holds a VQVAE (made by `python -m course_lib.quantize" in message
        )


@pytest.mark.parametrize(
    "load, wrong, holds",
    [
        ("diffusion", "latent_diffusion_tiny", "a UNet (stage 'ldm'"),  # same class, another pipeline
        ("latent_diffusion", "ddpm_tiny", "a UNet (stage 'teacher'"),
        ("mel_vae", "codec_tiny", "a Codec"),  # a TypeError from MelVAEConfig before
        ("hifigan", "mel_vae_tiny", "a MelVAE (stage 'vae'"),
        ("lm", "lm_semantic_kmeans_tiny", "a SemanticTokenizer"),
        ("tokenizer", "lm_fine_tiny", "a TokenLM (stage 'fine'"),
        ("codec", "joint_embedding_tiny", "a JointEmbedding"),
    ],
)
def test_files_of_a_neighbouring_model_are_told_apart(tmp_path, load, wrong, holds):
    loader, _, expected = LOADERS[load]
    with pytest.raises(CheckpointError, match=f"holds no {expected}.*: it holds {holds}".replace("(", r"\(")):
        loader(copy_of(wrong, tmp_path))


def test_a_teacher_of_the_wrong_kind_fails_before_distillation_starts(tmp_path):
    """The issue's case: ``--teacher vqvae_tiny.safetensors`` gave ``KeyError: 'channel_mults'``.

    The distillation stages of course_lib.diffusion.train load the teacher with load_pretrained_diffusion.
    """
    with pytest.raises(CheckpointError, match="holds no spectrogram diffusion UNet.*it holds a VQVAE"):
        load_pretrained_diffusion(copy_of("vqvae_tiny", tmp_path), "cpu")


@pytest.mark.parametrize("name", sorted(LOADERS))
@pytest.mark.parametrize("cut", ["header", "data"])
def test_every_loader_refuses_a_cut_short_file(tmp_path, name, cut):
    load, own, _ = LOADERS[name]
    path = copy_of(own, tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: 100 if cut == "header" else len(data) - 1000])
    with pytest.raises(CheckpointError, match="is cut short or corrupt") as caught:
        load(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_every_loader_refuses_a_pickle_an_unmarked_file_and_a_missing_one(tmp_path, name):
    load, own, _ = LOADERS[name]
    pickle = tmp_path / f"{own}.safetensors"
    torch.save({"weight": torch.zeros(3)}, pickle)  # a torch pickle renamed .safetensors
    with pytest.raises(CheckpointError, match="cut short or corrupt, or not a safetensors file"):
        load(pickle)
    safetensors.torch.save_file({"weight": torch.zeros(3)}, pickle)  # safetensors without course metadata
    with pytest.raises(CheckpointError, match="it has no course_lib metadata"):
        load(pickle)
    pickle.unlink()
    with pytest.raises(CheckpointError, match=f"No .*file at {pickle}"):
        load(pickle)


# ------------------------------------------------------------------------------------------ checksums
@pytest.mark.parametrize("name", sorted(LOADERS))
def test_every_loader_detects_a_flipped_byte_in_the_tensors(tmp_path, name):
    load, own, _ = LOADERS[name]
    path = copy_of(own, tmp_path)
    flip_a_byte(path)
    with pytest.raises(CheckpointError, match=r"corrupt: its tensors do not match the checksum") as caught:
        load(path)
    assert str(path) in str(caught.value)


def test_saved_weights_carry_a_checksum_that_catches_any_changed_byte(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 2))
    path = save_weights(tmp_path / "w.safetensors", model, {"steps": 3})
    assert read_weights_header(path).checksum == tensors_checksum(model.state_dict())
    for at in (0.0, 0.5, 0.999):
        damaged = Path(shutil.copy(path, tmp_path / f"damaged_{at}.safetensors"))
        flip_a_byte(damaged, at)
        with pytest.raises(CheckpointError, match="checksum"):
            load_weights(damaged, model)
    assert load_weights(path, model) == {"steps": 3}


def test_the_checksum_covers_names_dtypes_and_shapes():
    base = {"a": torch.zeros(2, 3), "b": torch.ones(4)}
    assert tensors_checksum(base) == tensors_checksum(dict(reversed(base.items())))  # name order, not dict order
    for changed in (
        {"a": torch.zeros(3, 2), "b": torch.ones(4)},  # same bytes, another shape
        {"a": torch.zeros(2, 3), "c": torch.ones(4)},  # another name
        {"a": torch.zeros(2, 3, dtype=torch.int32), "b": torch.ones(4)},  # same bytes, another dtype
    ):
        assert tensors_checksum(changed) != tensors_checksum(base)


def test_older_files_without_a_checksum_still_load(tmp_path):
    """Files saved before checksums existed have none: they load unchecked (re-save them to add one)."""
    model = torch.nn.Linear(3, 2)
    path = save_weights(tmp_path / "w.safetensors", model, {"note": "old"})
    with safetensors.safe_open(path, framework="pt") as file:
        header, tensors = file.metadata(), {n: file.get_tensor(n) for n in file.keys()}
    del header[CHECKSUM_KEY]
    safetensors.torch.save_file(tensors, path, metadata=header)
    assert read_weights_header(path).checksum is None
    assert load_weights(path, torch.nn.Linear(3, 2)) == {"note": "old"}


# ------------------------------------------------------------------------------------- shipped files
@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_file_carries_a_checksum_that_matches_its_tensors(path):
    header = read_weights_header(path)
    assert header.checksum is not None and path.stat().st_size <= 5_000_000
    assert tensors_checksum(safetensors.torch.load_file(path)) == header.checksum


def test_shipped_files_record_the_current_hashes_and_fingerprints_of_what_they_were_trained_on():
    codec = load_codec(CHECKPOINTS / "codec_tiny.safetensors", "cpu")
    assert codec.fingerprint() == "5c308128e169b62a"  # the fingerprint before the headers were rewritten
    for name in ("lm_delay_tiny", "lm_coarse_tiny", "lm_fine_tiny"):
        assert (
            read_weights_header(CHECKPOINTS / f"{name}.safetensors").metadata["codec_fingerprint"]
            == codec.fingerprint()
        )
    ldm = read_weights_header(CHECKPOINTS / "latent_diffusion_tiny.safetensors").metadata
    assert ldm["vae_sha256"] == file_sha256(CHECKPOINTS / ldm["vae"])
    assert ldm["embedding_sha256"] == file_sha256(CHECKPOINTS / ldm["embedding"])
    controlnet = read_weights_header(CHECKPOINTS / "controlnet_music_tiny.safetensors").metadata
    assert controlnet["base_sha256"] == file_sha256(CHECKPOINTS / controlnet["base"])
    shipped_pipeline()  # and the pipeline loads without a "not the VAE it was trained with" warning


def test_the_checksum_tool_finds_nothing_to_do():
    sys.path.insert(0, str(CHECKPOINTS.parent.parent / "tools"))
    try:
        from checksum_shipped_weights import main
    finally:
        sys.path.pop(0)
    assert main(["--check"]) == 0


def test_a_cut_short_token_cache_names_the_file_to_delete(tmp_path):
    from course_lib.lm.data import _read

    path = tmp_path / "cache.safetensors"
    data = safetensors.torch.save(
        {"codes": torch.zeros(2, 1, 3, dtype=torch.short)}, {"captions": json.dumps(["a", "b"])}
    )
    path.write_bytes(data[:-4])
    with pytest.raises(CheckpointError, match=f"token cache|{path}.*delete"):
        _read(path, [0, 1], 0)
