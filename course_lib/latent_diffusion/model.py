"""AudioLDM, small: a diffusion model on the Mel VAE's latents, conditioned on the joint audio–text embedding.

Latent diffusion (Rombach et al. 2022) runs DDPM in the latent space of an autoencoder instead of on
the spectrogram: the latent is 4× smaller along each axis, closer to a Gaussian, and free of detail
the ear does not need, so the denoiser is cheaper and its job simpler. AudioLDM (Liu et al. 2023,
"AudioLDM: Text-to-Audio Generation with Latent Diffusion Models", Sec. 2) adds text:

- **Training** uses no text at all. The condition is the joint embedding of the clip's *own audio*,
  ``E^x`` (CLAP's audio tower; here :func:`course_lib.joint_embedding.load_tiny_joint_embedding`'s
  ``embed_audio``), and the loss is Algorithm 1 on latents ``z_0 = s · E(x)``, AudioLDM's eq. 5::

      L(θ) = E_{z_0, ε, n} ‖ε - ε_θ(z_n, n, E^x)‖²

  with the condition replaced by a learned null embedding 10% of the time (condition dropout), so one
  network is both conditional and unconditional (classifier-free guidance, Ho & Salimans 2022).
- **Sampling** starts from the *text* embedding ``E^y`` of a caption: because the two towers were
  trained to put a clip and its description at the same place, the model cannot tell the
  difference (AudioLDM's eq. 6, ``p_θ(z_{n-1} | z_n, E^y)``). DDIM in latent space, guidance mixing the
  conditional and unconditional predictions, then the VAE decoder gives a log-mel spectrogram and the
  vocoder a waveform: :meth:`TextToAudio.generate`, or :func:`text_to_audio` with the shipped models.

The denoiser is :class:`course_lib.diffusion.UNet` with ``in_channels`` = the VAE's latent channels and
``cond_dim`` = the embedding size; the condition is projected and added to the time embedding, which
every residual block turns into a per-channel scale and shift (AdaGN): the FiLM conditioning AudioLDM
uses. The schedule is AudioLDM's "scaled linear" β from 0.0015 to 0.0195 over 1,000 steps, and the
network predicts ε, as in AudioLDM.

Notebook: notebooks/08_latent_diffusion.ipynb (and 09_controlnet.ipynb builds on it).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from course_lib.audio import MelConfig
from course_lib.config import get_device, get_scale
from course_lib.diffusion.samplers import ClassifierFreeGuidance, ddim_sample
from course_lib.diffusion.schedules import NoiseSchedule
from course_lib.diffusion.unet import UNet, UNetConfig
from course_lib.errors import CheckpointError, ConfigError
from course_lib.joint_embedding.model import TINY_JOINT_EMBEDDING
from course_lib.latent_diffusion.controlnet import ControlledUNet, ControlNet, ControlNetConfig
from course_lib.latent_diffusion.mel_vae import MelVAE, MelVAEConfig
from course_lib.latent_diffusion.vocoder import HiFiGAN, HiFiGANConfig, griffin_lim_vocoder
from course_lib.train import load_weights
from course_lib.train.weights import read_weights_header, shipped_weights

TINY_VAE = shipped_weights("mel_vae_tiny.safetensors")
TINY_VOCODER = shipped_weights("hifigan_tiny.safetensors")
TINY_LDM = shipped_weights("latent_diffusion_tiny.safetensors")
TINY_CONTROLNET = shipped_weights("controlnet_music_tiny.safetensors")
TRAIN_COMMAND = "python -m course_lib.latent_diffusion.train --stage {stage} --scale tiny --out {path}"
STAGE_OF = {
    TINY_VAE.name: "vae",
    TINY_VOCODER.name: "vocoder",
    TINY_LDM.name: "ldm",
    TINY_CONTROLNET.name: "controlnet",
}


def latent_unet_config(latent_channels: int, cond_dim: int, scale: str | None = None) -> UNetConfig:
    """The denoiser of the latents: the course UNet with the VAE's channels in and out and a condition input.

    ``tiny``: 24 base channels, levels (1, 2, 2), attention at the two lower resolutions (0.7 M parameters);
    ``full``: ``UNetConfig.full()`` (43.6 M).

    Notebook: notebooks/08_latent_diffusion.ipynb
    """
    return UNetConfig.for_scale(
        scale,
        in_channels=latent_channels,
        cond_dim=cond_dim,
        **({} if get_scale(scale) == "full" else {"base_channels": 24, "attention_levels": (1, 2)}),
    )


def _load(path: Path, model: nn.Module) -> dict[str, Any]:
    if not path.is_file():
        stage = STAGE_OF.get(path.name, "vae")
        raise CheckpointError(
            f"No weights file at {path}: re-create it with `{TRAIN_COMMAND.format(stage=stage, path=path)}` "
            "(see README.md, 'Shipped checkpoints')."
        )
    return load_weights(path, model)


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file (the models a checkpoint was trained on are recorded by it)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def check_trained_on(metadata: dict[str, Any], key: str, path: Path, what: str, stage: str) -> None:
    """Warn when the file at ``path`` is not the one this model was trained with (its hash is in ``metadata[key]``)."""
    recorded = metadata.get(key)
    if recorded and path.is_file() and file_sha256(path) != recorded:
        warnings.warn(
            f"{path.name} is not the {what} this model was trained with (its weights changed since): its outputs "
            f"will not match. Retrain with `{TRAIN_COMMAND.format(stage=stage, path='<out>')}`.",
            stacklevel=3,
        )


def _config(path: Path, expected: str, stage: str) -> dict[str, Any]:
    """The config in the header of ``path``, after checking it holds an ``expected`` of ``stage``."""
    fix = f"re-create it with `{TRAIN_COMMAND.format(stage=STAGE_OF.get(path.name, stage), path=path)}` "
    header = read_weights_header(
        path, expected, stage=stage, what=f"course_lib {expected} (latent_diffusion.train --stage {stage})",
        fix=fix + "(see README.md, 'Shipped checkpoints')",
    )  # fmt: skip
    return dict(header.config or {})


def load_mel_vae(path: str | Path = TINY_VAE, device: str | torch.device | None = None) -> MelVAE:
    """The shipped (or any saved) Mel VAE, in eval mode, with its latent scale factor.

    Notebook: notebooks/08_latent_diffusion.ipynb
    """
    path = Path(path)
    vae = MelVAE(MelVAEConfig(**_config(path, "MelVAE", "vae")))
    vae.metadata = _load(path, vae)
    return vae.to(get_device(device)).eval()


def load_hifigan(path: str | Path = TINY_VOCODER, device: str | torch.device | None = None) -> HiFiGAN:
    """The shipped (or any saved) HiFi-GAN generator, in eval mode.

    Notebook: notebooks/08_latent_diffusion.ipynb
    """
    path = Path(path)
    vocoder = HiFiGAN(HiFiGANConfig(**_config(path, "HiFiGAN", "vocoder")))
    vocoder.metadata = _load(path, vocoder)
    return vocoder.to(get_device(device)).eval()


def latent_frames(seconds: float, vae: MelVAE, unet: UNet, mel_config: MelConfig | None = None) -> tuple[int, int]:
    """``(mel frames, latent frames)`` of a clip: ``seconds · 100 + 1`` mel frames; the latent rounded up to the UNet's multiple."""
    mel_config = mel_config or MelConfig()
    if not seconds or seconds <= 0 or not math.isfinite(seconds):
        raise ConfigError(f"seconds must be a positive number, got {seconds!r}: pass e.g. seconds=2.0.")
    frames = round(seconds * mel_config.sample_rate) // mel_config.hop_length + 1
    multiple = unet.size_multiple
    latent = math.ceil(math.ceil(frames / vae.frame_multiple) / multiple) * multiple
    return frames, latent


@dataclasses.dataclass
class TextToAudio:
    """Everything text-to-audio needs: text → embedding → DDIM on latents → VAE decoder → vocoder.

    Attributes:
        unet: the latent denoiser ``unet(z_n, n, cond, cond_mask)`` (eval mode).
        vae: the Mel VAE (its ``latent_scale`` maps between VAE and diffusion units).
        embedding: the joint embedding (``embed_text`` at inference, ``embed_audio`` in training).
        vocoder: the HiFi-GAN generator, or None (then Griffin-Lim).
        schedule, prediction_type: the diffusion model's noise schedule and what it predicts.
        metadata: what the latent diffusion training run stored.
    """

    unet: UNet
    vae: MelVAE
    embedding: Any
    vocoder: HiFiGAN | None
    schedule: NoiseSchedule
    prediction_type: str = "epsilon"
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    mel_config: MelConfig = dataclasses.field(default_factory=MelConfig)

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    def latent_shape(self, seconds: float) -> tuple[int, int, int]:
        """``(C, n_mels / 4, latent frames)`` of a clip of ``seconds``."""
        _, width = latent_frames(seconds, self.vae, self.unet, self.mel_config)
        c, h, _ = self.vae.latent_shape(width * self.vae.frame_multiple)
        return (c, h, width)

    @torch.no_grad()
    def sample_latents(
        self,
        cond: Tensor | None,
        seconds: float = 2.0,
        steps: int = 50,
        guidance: float = 3.0,
        n: int | None = None,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
        model: nn.Module | None = None,
        progress: bool = False,
    ) -> Tensor:
        """DDIM (η = 0) from noise to latents ``(B, C, H, W)``, guided towards ``cond`` ``(B, D)`` (None: unconditional).

        ``guidance`` is the w of :class:`course_lib.diffusion.ClassifierFreeGuidance` (1: no guidance,
        just the conditional model). ``model`` replaces the UNet (e.g. a ControlNet-controlled one).
        """
        model = model or self.unet
        batch = cond.shape[0] if cond is not None else (n or 1)
        guided = ClassifierFreeGuidance(model, guidance) if cond is not None and guidance != 1.0 else model
        shape = (batch, *self.latent_shape(seconds))
        return ddim_sample(
            guided, self.schedule, shape, num_steps=steps, cond=None if cond is None else cond.to(self.device),
            prediction_type=self.prediction_type, generator=generator, noise=noise, device=self.device,
            progress=progress,
        )  # fmt: skip

    @torch.no_grad()
    def latents_to_log_mel(self, latents: Tensor, seconds: float = 2.0) -> Tensor:
        """Scaled latents → log-mel ``(B, n_mels, frames)`` in nats, cropped to ``seconds``."""
        frames, _ = latent_frames(seconds, self.vae, self.unet, self.mel_config)
        return self.vae.decode_to_log_mel(latents.to(self.device), frames).float().cpu()

    @property
    def best_vocoder(self) -> str:
        """``"hifigan"`` if the loaded HiFi-GAN measured closer to held-out originals than Griffin-Lim when it
        was trained (its metadata), else ``"griffin_lim"`` (the tiny one, after 1,400 CPU steps, is not yet)."""
        if self.vocoder is None:
            return "griffin_lim"
        meta = getattr(self.vocoder, "metadata", {})
        better = meta.get("hifigan_mel_l1", 0.0) <= meta.get("griffin_lim_mel_l1", float("inf"))
        return "hifigan" if better else "griffin_lim"

    @torch.no_grad()
    def vocode(self, log_mel: Tensor, seconds: float = 2.0, vocoder: str = "auto") -> Tensor:
        """Log-mel → audio ``(B, seconds · 16000)`` with ``"hifigan"``, ``"griffin_lim"`` or ``"auto"`` (:attr:`best_vocoder`)."""
        length = round(seconds * self.mel_config.sample_rate)
        if vocoder not in ("hifigan", "griffin_lim", "auto"):
            raise ConfigError(f"Unknown vocoder {vocoder!r}: use 'hifigan', 'griffin_lim' or 'auto'.")
        vocoder = self.best_vocoder if vocoder == "auto" else vocoder
        if vocoder == "griffin_lim" or self.vocoder is None:
            return griffin_lim_vocoder(log_mel, self.mel_config, length=length)
        return self.vocoder.vocode(log_mel, length).cpu()

    @torch.no_grad()
    def generate(
        self,
        captions: str | Sequence[str],
        seconds: float = 2.0,
        steps: int = 50,
        guidance: float = 3.0,
        generator: torch.Generator | None = None,
        vocoder: str = "auto",
        return_log_mel: bool = False,
        model: nn.Module | None = None,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Text → audio ``(B, seconds · 16000)`` at 16 kHz (and the log-mel ``(B, 64, frames)`` with ``return_log_mel``).

        ``vocoder``: ``"auto"`` (:attr:`best_vocoder`), ``"hifigan"`` or ``"griffin_lim"``.
        """
        captions = [captions] if isinstance(captions, str) else list(captions)
        if not captions or not all(isinstance(c, str) for c in captions):
            raise ConfigError("captions must be a string or a non-empty list of strings.")
        cond = self.embedding.embed_text(captions).to(self.device)  # (B, D)  E^y
        latents = self.sample_latents(cond, seconds, steps, guidance, generator=generator, model=model)
        log_mel = self.latents_to_log_mel(latents, seconds)  # (B, M, F)
        audio = self.vocode(log_mel, seconds, vocoder)  # (B, T)
        return (audio, log_mel) if return_log_mel else audio


def load_latent_diffusion(
    path: str | Path = TINY_LDM,
    device: str | torch.device | None = None,
    vae_path: str | Path = TINY_VAE,
    vocoder_path: str | Path | None = TINY_VOCODER,
    embedding: Any = None,
) -> TextToAudio:
    """The text-to-audio pipeline from saved weights (default: the shipped tiny models), in eval mode.

    Args:
        vocoder_path: None uses Griffin-Lim.
        embedding: a joint embedding to use (default: the shipped one, ``load_tiny_joint_embedding``).

    Notebooks: notebooks/08_latent_diffusion.ipynb, 09_controlnet.ipynb
    """
    from course_lib.joint_embedding import load_tiny_joint_embedding

    device = get_device(device)
    path = Path(path)
    config = _config(path, "UNet", "ldm")
    for name in ("channel_mults", "attention_levels"):
        config[name] = tuple(config[name])
    unet = UNet(UNetConfig(**config))
    metadata = _load(path, unet)
    if embedding is None:
        check_trained_on(metadata, "embedding_sha256", TINY_JOINT_EMBEDDING, "joint embedding", "ldm")
    check_trained_on(metadata, "vae_sha256", Path(vae_path), "VAE", "ldm")
    schedule = NoiseSchedule.from_name(metadata["schedule"], metadata["num_timesteps"], device=device)
    return TextToAudio(
        unet=unet.to(device).eval(),
        vae=load_mel_vae(vae_path, device),
        embedding=embedding if embedding is not None else load_tiny_joint_embedding(device),
        vocoder=load_hifigan(vocoder_path, device) if vocoder_path is not None else None,
        schedule=schedule,
        prediction_type=metadata["prediction_type"],
        metadata=metadata,
    )


def load_controlnet(
    pipeline: TextToAudio, path: str | Path = TINY_CONTROLNET, strength: float = 1.0, base_path: str | Path = TINY_LDM
) -> ControlledUNet:
    """The shipped (or a saved) ControlNet on ``pipeline``'s UNet: a :class:`ControlledUNet` in eval mode.

    Pass it as ``model=`` to :meth:`TextToAudio.generate` after binding a signal with ``with_signal``.
    ``base_path`` is the file of ``pipeline``'s latent diffusion model (default: the shipped tiny one): a
    warning says when it is not the one the ControlNet was trained on.

    Notebook: notebooks/09_controlnet.ipynb
    """
    path = Path(path)
    config = _config(path, "ControlNet", "controlnet")
    controlnet = ControlNet(pipeline.unet, ControlNetConfig(**config))
    controlnet.metadata = _load(path, controlnet)
    check_trained_on(controlnet.metadata, "base_sha256", Path(base_path), "latent diffusion model", "controlnet")
    return ControlledUNet(pipeline.unet, controlnet.to(pipeline.device).eval(), strength).eval()


@functools.lru_cache(maxsize=2)
def _shipped_pipeline(device: str) -> TextToAudio:
    return load_latent_diffusion(device=device)


def text_to_audio(
    caption: str | Sequence[str],
    seconds: float = 2.0,
    steps: int = 50,
    guidance: float = 3.0,
    generator: torch.Generator | None = None,
    device: str | torch.device | None = None,
    vocoder: str = "auto",
) -> Tensor:
    """AudioLDM end to end with the shipped tiny models: caption(s) → ``(B, seconds · 16000)`` audio at 16 kHz.

    text → ``E^y`` (joint embedding) → ``steps`` DDIM steps in latent space with classifier-free guidance
    ``guidance`` → VAE decoder → vocoder (``"auto"``: HiFi-GAN when it measured better than Griffin-Lim,
    which the tiny one does not yet; or ``"hifigan"``, ``"griffin_lim"``). The models are loaded once and kept.

    Example::

        audio = text_to_audio("a fast FM-bell melody in C major with drums", seconds=2.0, steps=50, guidance=3.0)
    """
    return _shipped_pipeline(str(get_device(device))).generate(caption, seconds, steps, guidance, generator, vocoder)
