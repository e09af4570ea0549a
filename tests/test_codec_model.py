"""The codec model (SEANet + RVQ), its training loss and its codes file, on small random models."""

import math

import pytest
import torch

from course_lib.codec.codes_file import check_codes_model, load_codes, pack_codes, save_codes, unpack_codes
from course_lib.codec.model import Codec, CodecConfig
from course_lib.codec.recipes import CodecTrainingLoss, recipe, train_codec
from course_lib.codec.seanet import SEANetDecoder, SEANetEncoder
from course_lib.errors import AudioInputError, CheckpointError, ConfigError

SMALL = dict(channels=2, latent_dim=4, n_q=4, codebook_size=16, kmeans_init=False, offered_n_q=(2, 4))


def small_codec(seed: int = 0, **changes) -> Codec:
    torch.manual_seed(seed)
    return Codec(CodecConfig(**{**SMALL, **changes})).eval()


def test_seanet_lengths_divide_exactly():
    encoder, decoder = SEANetEncoder(2, (2, 4, 5, 8), 1, 4), SEANetDecoder(2, (2, 4, 5, 8), 1, 4)
    z = encoder(torch.randn(3, 1, 320 * 7))
    assert z.shape == (3, 4, 7)
    assert decoder(z).shape == (3, 1, 320 * 7)
    with pytest.raises(ConfigError, match="strides"):
        SEANetEncoder(2, (1, 4), 1, 4)


def test_the_stable_interface_of_the_tiny_preset():
    codec = Codec(CodecConfig())
    assert (codec.sample_rate, codec.hop, codec.frame_rate, codec.n_q, codec.codebook_size) == (
        16_000,
        320,
        50.0,
        12,
        1024,
    )
    assert [codec.bitrate(n) for n in (3, 6, 12)] == [1500.0, 3000.0, 6000.0]  # 50 frames/s x n_q x 10 bits
    assert codec.offered_bitrates() == {1.5: 3, 3.0: 6, 6.0: 12}
    size = sum(t.numel() * t.element_size() for t in codec.state_dict().values())
    assert size < 4.5e6  # the shipped checkpoint must stay under 5 MB


def test_encode_decode_shapes_and_level_prefixes():
    codec = small_codec()
    audio = 0.1 * torch.randn(2, 1000)  # not a whole number of frames: padded to 4 x 320
    codes = codec.encode(audio)
    assert codes.shape == (2, 4, math.ceil(1000 / 320)) and codes.dtype == torch.long
    assert codes.min() >= 0 and codes.max() < 16
    assert torch.equal(codec.encode(audio, n_q=2), codes[:, :2])  # a lower bitrate is a prefix of the levels
    assert codec.decode(codes).shape == (2, 4 * 320)
    assert codec.decode(codes[:, :1], length=1000).shape == (2, 1000)
    assert codec.encode(audio[0]).shape == (1, 4, 4)  # (T,) is one clip


def test_forward_trains_encoder_and_decoder_under_quantizer_dropout():
    codec = small_codec().train()
    audio = 0.1 * torch.randn(2, 640)
    out = codec(audio)
    assert out.audio.shape == audio.shape and 1 <= out.vq.n_q <= 4
    (out.audio.pow(2).mean() + out.vq.loss).backward()
    for part in (codec.encoder, codec.decoder):
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in part.parameters())
    assert any(p.grad.abs().sum() > 0 for p in codec.encoder.parameters())


def test_bad_audio_gets_course_errors():
    codec = small_codec()
    with pytest.raises(AudioInputError, match="mono"):
        codec.encode(torch.randn(2, 2, 640))
    with pytest.raises(AudioInputError, match="NaN"):
        codec.encode(torch.full((1, 640), float("nan")))
    with pytest.raises(ConfigError, match="between 1 and 4"):
        codec.encode(torch.randn(1, 640), n_q=5)
    with pytest.raises(ConfigError, match="frames"):
        Codec(CodecConfig(**{**SMALL, "kmeans_init": True})).initialise_codebooks(torch.randn(2, 640))


def test_fingerprint_identifies_the_weights_not_the_runs():
    codec = small_codec()
    before = codec.fingerprint()
    codec.encode(torch.randn(1, 640))
    assert codec.fingerprint() == before and len(before) == 16
    assert small_codec(seed=1).fingerprint() != before


def test_codes_are_bit_packed_and_round_trip():
    codes = torch.randint(0, 1024, (12, 37))
    data = pack_codes(codes, 10)
    assert len(data) == math.ceil(12 * 37 * 10 / 8)  # exactly 10 bits per code
    assert torch.equal(unpack_codes(data, 12, 37, 10), codes)
    with pytest.raises(AudioInputError, match="cut short"):
        unpack_codes(data[:-20], 12, 37, 10)


def test_codes_file_records_and_checks_the_model(tmp_path):
    codec, other = small_codec(), small_codec(seed=1)
    audio = 0.1 * torch.randn(1, 1000)
    path = save_codes(tmp_path / "clip.codes", codec.encode(audio, n_q=2), codec, 1000)
    loaded = load_codes(path)
    assert torch.equal(loaded.codes, codec.encode(audio, n_q=2)[0])
    assert (loaded.num_samples, loaded.n_q, loaded.bitrate) == (1000, 2, 50.0 * 2 * 4)
    check_codes_model(loaded, codec)  # the same model: no error
    with pytest.raises(CheckpointError, match="another codec"):
        check_codes_model(loaded, other)
    (tmp_path / "junk.codes").write_bytes(b"not codes at all")
    with pytest.raises(AudioInputError, match="not a course_lib codes file"):
        load_codes(tmp_path / "junk.codes")
    (tmp_path / "cut.codes").write_bytes(path.read_bytes()[:30])
    with pytest.raises(AudioInputError, match="corrupt|cut short"):
        load_codes(tmp_path / "cut.codes")


def test_training_loss_adds_the_gan_terms_after_the_warm_up():
    plan = recipe("tiny", adversarial_start=1, disc_windows=(128,), disc_channels=2, disc_batch=2)
    loss = CodecTrainingLoss(plan)
    codec = small_codec().train()
    batch = 0.1 * torch.randn(3, 1280)
    first = loss(codec, batch)
    assert "adversarial" not in first and first["reconstruction"] > 0
    second = loss(codec, batch)
    assert {"adversarial", "feature", "discriminator"} <= set(second)
    second["loss"].backward()
    assert all(p.grad is None for p in loss.discriminator.parameters())  # L_G does not train the discriminator


def test_a_short_training_run_lowers_the_reconstruction_loss():
    plan = recipe(
        "tiny", steps=40, adversarial_start=30, batch_size=4, crop=3200, warmup_steps=5, train_clips=8, init_clips=8,
        disc_windows=(256,), disc_channels=2, disc_batch=2,
    )  # fmt: skip
    config = CodecConfig(channels=4, latent_dim=8, n_q=2, codebook_size=32, dead_code_steps=10, offered_n_q=(1, 2))
    codec, history, _, cpu_seconds = train_codec(config, plan, "cpu", progress=False)
    assert history[0]["reconstruction"] > 1.1 * history[-1]["reconstruction"]
    assert "adversarial" in history[-1] and not codec.training and cpu_seconds > 0
