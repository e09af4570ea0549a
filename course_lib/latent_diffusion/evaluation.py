"""How the latent-diffusion chapter measures its models: the Mel VAE against a no-learning baseline, the vocoder
against Griffin-Lim, text-to-audio by the caption adherence of generations from held-out captions.

Notebooks: notebooks/08_latent_diffusion.ipynb.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from course_lib.audio import MelConfig, log_mel_spectrogram
from course_lib.data.splits import held_out_clips
from course_lib.errors import CourseError
from course_lib.latent_diffusion.mel_vae import MelVAE, pad_frames
from course_lib.latent_diffusion.model import TextToAudio
from course_lib.latent_diffusion.vocoder import HiFiGAN, griffin_lim_vocoder


def vae_baseline(x: Tensor, compression: int, latent_channels: int) -> Tensor:
    """The no-learning baseline with as many numbers as the VAE's latent: average-pool, then nearest up-sample.

    The latent has ``C · (M / r) · (F / r)`` numbers for ``M · F`` inputs, a reduction by ``ρ = r² / C``;
    pooling blocks of ``a × b = ρ`` values keeps the same count: ``k × k`` when ρ is a square (tiny: r = 4,
    C = 4, 2 × 2), else the most nearly square pair, mel × time (full: C = 8, ρ = 2, 2 × 1). ρ ≤ 1: no
    reduction, returns ``x``.

    Notebook: notebooks/08_latent_diffusion.ipynb
    """
    reduction = max(1, round(compression**2 / latent_channels))
    if reduction == 1:
        return x
    short = next(a for a in range(math.isqrt(reduction), 0, -1) if reduction % a == 0)
    block = (reduction // short, short)  # (mel, time): the longer side along the mel axis
    return F.interpolate(F.avg_pool2d(x, block), scale_factor=(float(block[0]), float(block[1])), mode="nearest")


@torch.no_grad()
def evaluate_vae(vae: MelVAE, log_mels: Tensor) -> dict[str, float]:
    """Mean absolute log-mel error (nats) of the VAE (posterior mean) and of :func:`vae_baseline` on ``log_mels`` ``(N, M, F)``.

    Notebook: notebooks/08_latent_diffusion.ipynb
    """
    vae = vae.eval()
    device = next(vae.parameters()).device
    x = pad_frames(vae.scaling.to_model(log_mels).unsqueeze(1), vae.frame_multiple).to(device)  # (N, 1, M, F')
    frames = log_mels.shape[-1]
    recon = vae.scaling.to_log_mel(vae.decode(vae.encode(x).mean))[..., :frames].squeeze(1).cpu()  # (N, M, F)
    base = vae.scaling.to_log_mel(vae_baseline(x, vae.config.compression, vae.config.latent_channels))
    base = base[..., :frames].squeeze(1).cpu()
    return {
        "vae_l1_nats": (recon - log_mels).abs().mean().item(),
        "baseline_l1_nats": (base - log_mels).abs().mean().item(),
    }


@torch.no_grad()
def evaluate_vocoder(vocoder: HiFiGAN, audio: Tensor, n_iter: int = 64) -> dict[str, float]:
    """Log-mel L1 distance (nats) of HiFi-GAN and of Griffin-Lim (``n_iter`` iterations) to the original ``audio`` ``(N, T)``."""
    mel_config = MelConfig()
    log_mel = log_mel_spectrogram(audio, mel_config)  # (N, M, F)
    device = next(vocoder.parameters()).device
    hifigan = vocoder.eval().vocode(log_mel.to(device), audio.shape[-1]).cpu()  # (N, T)
    griffin_lim = griffin_lim_vocoder(log_mel, mel_config, n_iter=n_iter, length=audio.shape[-1])  # (N, T)
    distance = lambda y: (log_mel_spectrogram(y, mel_config) - log_mel).abs().mean().item()  # noqa: E731
    return {"hifigan_mel_l1": distance(hifigan), "griffin_lim_mel_l1": distance(griffin_lim)}


@torch.no_grad()
def evaluate_text_to_audio(
    pipeline: TextToAudio, n: int, steps: int, guidance: float, seed: int = 0
) -> dict[str, float]:
    """Generate from ``n`` held-out captions (combinations never trained on) and score them with the attribute classifier.

    Returns the caption adherence per attribute (the classifier's accuracy on what the captions ask for)
    and the same for real held-out clips (the classifier's own ceiling); empty when the classifier is missing.
    """
    try:
        from course_lib.attributes import load_tiny_attribute_classifier
        from course_lib.metrics import caption_adherence

        classifier = load_tiny_attribute_classifier(pipeline.device)
    except (ImportError, CourseError):
        return {}
    real = held_out_clips(n)
    audio = pipeline.generate(
        real.captions, 2.0, steps, guidance, torch.Generator().manual_seed(seed), vocoder="griffin_lim"
    )
    generated = caption_adherence(classifier, audio, real.captions)
    ceiling = caption_adherence(classifier, real.audio, real.captions)
    flat = {f"adherence_{k}": float(v) for k, v in generated.items() if isinstance(v, (int, float))}
    flat.update({f"real_adherence_{k}": float(v) for k, v in ceiling.items() if isinstance(v, (int, float))})
    return flat
