"""The GAN losses (course_lib.adversarial.losses), the codec's reconstruction losses (course_lib.codec.losses) and
HiFi-GAN's mel loss, each against a hand computation of its formula."""

import math

import pytest
import torch

from course_lib.adversarial.losses import (
    feature_matching_loss,
    hinge_discriminator_loss,
    hinge_generator_loss,
    least_squares_discriminator_loss,
    least_squares_generator_loss,
)
from course_lib.codec.losses import (
    SOUNDSTREAM_WINDOWS,
    generator_loss,
    multi_scale_spectral_loss,
    soundstream_mel_spectrogram,
)
from course_lib.errors import ConfigError
from course_lib.latent_diffusion.vocoder import mel_l1_loss

# Two sub-discriminators with output maps of different shapes (K = 2, T_1 = 3, T_2 = 2 x 2).
REAL = [torch.tensor([[[2.0, 0.5, -1.0]]]), torch.tensor([[[[1.0, 3.0], [0.0, -0.5]]]])]
FAKE = [torch.tensor([[[-2.0, 0.0, 1.0]]]), torch.tensor([[[[-1.0, -3.0], [0.5, 2.0]]]])]


def test_hinge_discriminator_loss_by_hand():
    # k = 1: real max(0, 1 - D) = 0, 0.5, 2 -> 2.5 / 3; fake max(0, 1 + D) = 0, 1, 2 -> 1.
    # k = 2: real 0, 0, 1, 1.5 -> 2.5 / 4; fake 0, 0, 1.5, 3 -> 4.5 / 4.
    k1 = 2.5 / 3 + 1.0
    k2 = 2.5 / 4 + 4.5 / 4
    assert hinge_discriminator_loss(REAL, FAKE).item() == pytest.approx((k1 + k2) / 2)
    assert hinge_discriminator_loss(REAL, FAKE, reduction="sum").item() == pytest.approx(k1 + k2)
    # Saturation: logits beyond the margins cost nothing (the hinge stops pushing).
    assert hinge_discriminator_loss([torch.full((2, 1, 5), 1.5)], [torch.full((2, 1, 5), -1.0)]).item() == 0.0


def test_hinge_generator_loss_by_hand():
    # max(0, 1 - D(G(x))): k = 1: 3, 1, 0 -> 4 / 3; k = 2: 2, 4, 0.5, 0 -> 6.5 / 4.
    assert hinge_generator_loss(FAKE).item() == pytest.approx((4 / 3 + 6.5 / 4) / 2)


def test_feature_matching_loss_by_hand_and_only_trains_the_generator():
    real = [
        [torch.tensor([[1.0, 2.0]]), torch.tensor([[[0.0, 0.0, 3.0]]])],
        [torch.tensor([[4.0]]), torch.tensor([[1.0]])],
    ]
    fake = [
        [torch.tensor([[0.0, 2.0]]), torch.tensor([[[1.0, -1.0, 3.0]]])],
        [torch.tensor([[2.0]], requires_grad=True), torch.tensor([[1.0]])],
    ]
    # Layer means of |real - fake|: 0.5, 2/3 (first D), 2, 0 (second D); K L = 4.
    expected = (0.5 + 2 / 3 + 2.0 + 0.0) / 4
    loss = feature_matching_loss(real, fake)
    assert loss.item() == pytest.approx(expected)
    assert feature_matching_loss(real, fake, reduction="sum").item() == pytest.approx(4 * expected)
    real[1][0].requires_grad_(True)
    loss = feature_matching_loss(real, fake)
    loss.backward()
    assert real[1][0].grad is None  # the real features are targets
    assert fake[1][0].grad.item() == pytest.approx(-1 / 4)  # d/dfake (|4 - fake| / 4) at fake = 2


def test_least_squares_losses_by_hand():
    # HiFi-GAN eq. 1: mean (D(x) - 1)^2 + mean D(G(s))^2, summed over k.
    k1 = (1 + 0.25 + 4) / 3 + (4 + 0 + 1) / 3
    k2 = (0 + 4 + 1 + 2.25) / 4 + (1 + 9 + 0.25 + 4) / 4
    assert least_squares_discriminator_loss(REAL, FAKE).item() == pytest.approx(k1 + k2)
    # eq. 2: mean (D(G(s)) - 1)^2.
    g = (9 + 1 + 0) / 3 + (4 + 16 + 0.25 + 1) / 4
    assert least_squares_generator_loss(FAKE).item() == pytest.approx(g)
    assert least_squares_generator_loss(FAKE, reduction="mean").item() == pytest.approx(g / 2)


def test_losses_reject_mismatched_or_unknown_inputs():
    with pytest.raises(ConfigError, match="same discriminator"):
        hinge_discriminator_loss(REAL, FAKE[:1])
    with pytest.raises(ConfigError, match="reduction"):
        hinge_generator_loss(FAKE, reduction="max")
    with pytest.raises(ConfigError, match="shape"):
        multi_scale_spectral_loss(torch.zeros(1, 100), torch.zeros(1, 90), windows=(64,))


def test_generator_loss_is_the_weighted_sum():
    adv, feat, rec = torch.tensor(0.5), torch.tensor(0.02), torch.tensor(30.0)
    assert generator_loss(adv, feat, rec).item() == pytest.approx(0.5 + 100 * 0.02 + 30.0)  # SoundStream's weights
    assert generator_loss(adv, feat, rec, 2.0, 0.0, 0.1).item() == pytest.approx(1.0 + 3.0)


def naive_mel(audio: torch.Tensor, window: int, n_mels: int, sample_rate: int) -> torch.Tensor:
    """S^s by hand: reflect-pad, cut frames with hop s/4, Hann window, |DFT| by a matrix, then the mel matrix."""
    import torchaudio.functional as AF

    padded = torch.nn.functional.pad(audio[None], (window // 2, window // 2), mode="reflect")[0].double()
    hop = window // 4
    n = torch.arange(window, dtype=torch.float64)
    hann = 0.5 - 0.5 * torch.cos(2 * math.pi * n / window)  # the periodic Hann window
    k = torch.arange(window // 2 + 1, dtype=torch.float64)
    dft = torch.exp(-2j * math.pi * k[:, None] * n[None] / window)  # (F, s)
    frames = torch.stack([padded[i : i + window] for i in range(0, padded.numel() - window + 1, hop)])  # (N, s)
    magnitude = (dft @ (frames * hann).T.to(torch.complex128)).abs()  # (F, N)
    bank = AF.melscale_fbanks(window // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate, "slaney", "slaney")
    return bank.double().T @ magnitude  # (M, N)


@pytest.mark.filterwarnings("ignore:At least one mel filterbank")
def test_soundstream_mel_spectrogram_matches_a_hand_computation():
    torch.manual_seed(0)
    audio = torch.randn(1, 700)
    for window in (64, 256):
        fast = soundstream_mel_spectrogram(audio, window, 16_000, 64)[0].double()
        assert fast.shape == (64, 700 // (window // 4) + 1)
        torch.testing.assert_close(fast, naive_mel(audio[0], window, 64, 16_000), rtol=1e-4, atol=1e-5)


def test_multi_scale_spectral_loss_by_hand_on_a_scaled_signal():
    # For G(x) = c x every mel magnitude is multiplied by c, so by the formula
    #   Σ_t ||S_t(x) - c S_t(x)||_1 = (c - 1) Σ_{t,m} S_{t,m}(x)
    #   α_s Σ_t ||log S_t(x) - log c S_t(x)||_2 = sqrt(s/2) · N_frames · sqrt(M') · log c
    # with M' the mel bands that hold at least one STFT bin (the others are 0 for both signals).
    torch.manual_seed(1)
    x, c, windows = torch.randn(2, 2048), 1.5, (64, 512)
    expected = 0.0
    for s in windows:
        mel = soundstream_mel_spectrogram(x, s)  # (B, 64, N)
        bands = int((mel[0].sum(dim=-1) > 0).sum())
        frames = mel.shape[-1]
        expected += (c - 1) * mel.sum(dim=(1, 2)).mean().item() + math.sqrt(s / 2) * frames * math.sqrt(
            bands
        ) * math.log(c)
    got = multi_scale_spectral_loss(x, c * x, windows=windows, eps=1e-12).item()
    assert got == pytest.approx(expected, rel=1e-4)
    assert bands == 64 and int((soundstream_mel_spectrogram(x, 64)[0].sum(-1) > 0).sum()) < 64  # empty bands at s = 64


def test_multi_scale_spectral_loss_defaults_zero_for_identical_audio_and_finite_gradients():
    assert SOUNDSTREAM_WINDOWS == (64, 128, 256, 512, 1024, 2048)
    x = torch.randn(2, 4096)
    assert multi_scale_spectral_loss(x, x.clone()).item() == 0.0
    y = (x + 0.1 * torch.randn_like(x)).requires_grad_()
    loss = multi_scale_spectral_loss(x, y)
    loss.backward()
    assert loss.item() > 0 and torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0
    # Zero input where the estimate equals it exactly frame by frame: the l2 norms' gradient stays finite.
    silent = torch.zeros(1, 2048)
    z = silent.clone().requires_grad_()
    multi_scale_spectral_loss(silent, z).backward()
    assert torch.isfinite(z.grad).all()


def test_mel_l1_loss_is_the_mean_absolute_log_mel_difference():
    from course_lib.audio import log_mel_spectrogram

    x, y = torch.randn(2, 3200), torch.randn(2, 3200)
    expected = (log_mel_spectrogram(x) - log_mel_spectrogram(y)).abs().mean()
    assert mel_l1_loss(x, y).item() == pytest.approx(expected.item())
    assert mel_l1_loss(x, x).item() == 0.0
