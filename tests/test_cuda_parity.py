"""The shipped models give the CPU's result on CUDA: codec, LM, joint embedding, classifier, DDPM, AudioLDM, ControlNet.

Each test loads a shipped tiny model on the CPU and on a second device, feeds both the same input and
compares: ``max |a - b| ≤ tol · max |a| + 1e-6`` with ``tol`` 1e-3 for one network evaluation (float32,
TF32 off; kernels differ in summation order only) and 1e-2 for a few chained steps (DDIM, decoding).
Discrete outputs (codec codes) may flip at near-ties: at least 99% must agree.

The second device is CUDA (``pytest -m cuda``, run by ``make gpu-check``); on a machine without a GPU
the same comparisons run against a second CPU copy ("cpu" ids), which checks that loading twice in
eval mode gives the same model (no dropout left on, no state kept between calls) and keeps this file
from rotting where CI has no GPU.
"""

import pytest
import torch

from course_lib.audio.spectral import log_mel_spectrogram
from course_lib.data.splits import validation_clips

SINGLE_STEP = 1e-3
CHAINED = 1e-2

DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param(
        "cuda",
        id="cuda",
        marks=[
            pytest.mark.cuda,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here; run `make gpu-check` on one"),
        ],
    ),
]


@pytest.fixture(autouse=True)
def _full_float32():
    """TF32 matmuls/convolutions would differ from the CPU by ~1e-3 relative: compare float32 with float32."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.fixture(scope="module")
def clips() -> torch.Tensor:
    return validation_clips(2).audio  # (2, 32000), 16 kHz


def assert_close(reference: torch.Tensor, other: torch.Tensor, tol: float, what: str) -> None:
    other = other.detach().float().cpu()
    reference = reference.detach().float().cpu()
    assert other.shape == reference.shape, f"{what}: shape {tuple(other.shape)} vs {tuple(reference.shape)}"
    error = (other - reference).abs().max().item()
    scale = reference.abs().max().item()
    assert error <= tol * scale + 1e-6, f"{what}: max difference {error:.3g} > {tol} × {scale:.3g}"


@torch.no_grad()
@pytest.mark.parametrize("device", DEVICES)
def test_codec_codes_and_decoding(device, clips):
    from course_lib.codec import load_tiny_codec

    cpu, other = load_tiny_codec("cpu"), load_tiny_codec(device)
    codes = cpu.encode(clips)  # (B, 12, frames)
    other_codes = other.encode(clips.to(device)).cpu()
    agreement = (codes == other_codes).float().mean().item()
    assert agreement >= 0.99, f"only {agreement:.1%} of the codes agree with the CPU's"
    assert_close(cpu.decode(codes), other.decode(codes.to(device)), CHAINED, "decoded audio")


@torch.no_grad()
@pytest.mark.parametrize("device", DEVICES)
def test_language_model_logits_with_and_without_the_cache(device):
    from course_lib.lm.pretrained import load_tiny_delay_lm

    cpu, other = load_tiny_delay_lm("cpu").model, load_tiny_delay_lm(device).model
    tokens = torch.randint(1024, (2, 4, 40), generator=torch.Generator().manual_seed(0))  # (B, K, T)
    reference = cpu(tokens)  # (B, K, T, V)
    assert_close(reference, other(tokens.to(device)), SINGLE_STEP, "logits")
    cache = other.new_cache(2, max_len=40)
    prefix = other(tokens[..., :39].to(device), cache=cache)  # fills the cache
    last = other(tokens[..., 39:].to(device), cache=cache)  # one position, attending to the cached keys
    assert_close(reference[..., 39:, :], last, SINGLE_STEP, "the cached step's logits")
    assert_close(reference[..., :39, :], prefix, SINGLE_STEP, "the prefill's logits")


@torch.no_grad()
@pytest.mark.parametrize("device", DEVICES)
def test_joint_embedding_and_attribute_classifier(device, clips):
    from course_lib.attributes import load_tiny_attribute_classifier
    from course_lib.joint_embedding import load_tiny_joint_embedding

    cpu, other = load_tiny_joint_embedding("cpu"), load_tiny_joint_embedding(device)
    captions = ["a gentle plucked-string line at 90 BPM without drums", "loud FM-bell tune with drums"]
    assert_close(cpu.embed_audio(clips), other.embed_audio(clips.to(device)), SINGLE_STEP, "audio embeddings")
    assert_close(cpu.embed_text(captions), other.embed_text(captions), SINGLE_STEP, "text embeddings")
    cpu, other = load_tiny_attribute_classifier("cpu"), load_tiny_attribute_classifier(device)
    assert_close(cpu.embed(clips), other.embed(clips.to(device)), SINGLE_STEP, "classifier embeddings")


@torch.no_grad()
@pytest.mark.parametrize("device", DEVICES)
def test_spectrogram_ddpm_prediction(device):
    from course_lib.diffusion.pretrained import load_tiny_ddpm

    cpu, other = load_tiny_ddpm("cpu"), load_tiny_ddpm(device)
    x = torch.randn(2, *cpu.shape, generator=torch.Generator().manual_seed(0))  # (B, 1, M, F)
    t = torch.tensor([10, 700])
    assert_close(cpu.model(x, t), other.model(x.to(device), t.to(device)), SINGLE_STEP, "ε prediction")


@torch.no_grad()
@pytest.mark.parametrize("device", DEVICES)
def test_text_to_audio_vae_ddim_and_controlnet(device, clips):
    from course_lib.control import all_controls
    from course_lib.latent_diffusion import control_signal, load_controlnet, load_latent_diffusion

    cpu, other = load_latent_diffusion(device="cpu"), load_latent_diffusion(device=device)
    log_mel = log_mel_spectrogram(clips, cpu.mel_config)  # (B, M, F)
    latents = cpu.vae.encode_log_mel(log_mel)  # (B, C, H, W)
    assert_close(latents, other.vae.encode_log_mel(log_mel.to(device)), SINGLE_STEP, "VAE latents")
    assert_close(
        cpu.vae.decode_to_log_mel(latents), other.vae.decode_to_log_mel(latents.to(device)), CHAINED, "VAE decoding"
    )
    if cpu.vocoder is not None:
        assert_close(cpu.vocoder(log_mel), other.vocoder(log_mel.to(device)), CHAINED, "HiFi-GAN audio")

    cond = cpu.embedding.embed_text(["a gentle plucked-string line without drums"] * 2)  # (B, D)
    noise = torch.randn(2, *cpu.latent_shape(2.0), generator=torch.Generator().manual_seed(0))  # (B, C, H, W)
    sampled = cpu.sample_latents(cond, 2.0, steps=5, guidance=3.0, noise=noise)
    assert_close(
        sampled, other.sample_latents(cond, 2.0, steps=5, guidance=3.0, noise=noise.to(device)), CHAINED, "DDIM latents"
    )

    controls = all_controls(clips, 16_000)
    frames = cpu.latent_shape(2.0)[-1] * cpu.vae.frame_multiple
    signal = control_signal(controls, frames=frames)  # (B, channels, frames)
    controlled_cpu = load_controlnet(cpu).with_signal(signal)
    controlled_other = load_controlnet(other).with_signal(signal.to(device))
    n = torch.tensor([500, 500])
    assert_close(
        controlled_cpu(noise, n, cond),
        controlled_other(noise.to(device), n.to(device), cond.to(device)),
        SINGLE_STEP,
        "ControlNet-controlled prediction",
    )  # fmt: skip
