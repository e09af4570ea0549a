"""ControlNet (Zhang et al. 2023) and Music ControlNet's time-varying controls (Wu et al. 2023), on the latent UNet.

**ControlNet** adds a condition (an edge map, a pose; here a melody, a loudness curve, beats) to a
trained diffusion model without touching it. The base UNet is **frozen** ("locked copy"); a
**trainable copy** of its encoder and middle block (initialised with the base's weights, so it starts
from features that already make sense) reads the noisy input plus the control, and its outputs are
added to the base's skip connections and middle block through **zero convolutions**: 1×1 convolutions
whose weights and biases start at exactly zero (ControlNet, Sec. 3.1-3.2, eqs. 1-2)::

    y_c = F(x; Θ) + Z(F(x + Z(c; Θ_z1); Θ_c); Θ_z2)

At initialisation every ``Z(·) = 0``, so ``y_c = y``: the controlled model *is* the base model, and
the first gradient steps cannot damage it with random noise (the lecture's ``y_c = y`` at ``t = 0``).
The zero convolutions' weights still receive gradients (∂Z/∂W is the input feature, not zero), so they
grow away from zero as training goes. The base UNet exposes the injection points
(:meth:`course_lib.diffusion.UNet.forward`'s ``skip_residuals`` and ``middle_residual``).

**The control signal** (Music ControlNet, Sec. 3): melody (12 pitch-class one-hot rows), dynamics
(smoothed loudness in dB, scaled to about ±1), rhythm (beat activations), on the mel frame grid
(100 frames/s). Each control comes with a **mask** row, 1 where it is given and 0 where it is not, so
one network takes any subset of controls, each for any part of the time (the rest is left free to
the model): :func:`control_signal` builds the ``(B, 17, F)`` tensor; training drops controls and time
spans at random (:func:`random_control_masks`), as Music ControlNet does. A small convolutional "hint"
network (ControlNet's ``input_hint_block``) reads the signal on the mel grid (each row repeated over
the 64 bands, plus the melody projected on the mel axis and band-position features), halves the grid
twice with strided convolutions down to the latent's, and ends in a zero convolution; its output is
added after the copy's stem.

Notebook: notebooks/09_controlnet.ipynb.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_lib.audio import MelConfig, mel_filterbank
from course_lib.config import ScaledConfig
from course_lib.control import chroma_filterbank
from course_lib.diffusion.schedules import NoiseSchedule, check_prediction_type
from course_lib.diffusion.unet import UNet, timestep_embedding
from course_lib.errors import ConfigError

CONTROLS = ("melody", "dynamics", "rhythm")
CONTROL_ROWS = {"melody": 12, "dynamics": 1, "rhythm": 1}
DYNAMICS_CENTER_DB, DYNAMICS_SPAN_DB = -25.0, 10.0  # SynthMusic's loudness lies in about -45 … -10 dB
SIGNAL_CHANNELS = sum(CONTROL_ROWS.values()) + len(CONTROLS)  # 14 control rows + 3 mask rows = 17
POSITION_FREQUENCIES = 4  # sinusoids of the latent row position fed to the hint network


def row_features(height: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """Where each latent row lies: ``y ∈ [-1, 1]`` and ``sin(kπy), cos(kπy)`` for k = 1 … 4, ``(9, height)``.

    A pitch class maps to a few frequency rows (its octaves), a bumpy function of the row; sinusoids of
    the position let the hint network's small convolutions express it.
    """
    y = torch.linspace(-1.0, 1.0, height, device=device, dtype=dtype)  # (H,)
    k = torch.arange(1, POSITION_FREQUENCIES + 1, device=device, dtype=dtype)[:, None] * torch.pi  # (K, 1)
    return torch.cat([y[None], torch.sin(k * y), torch.cos(k * y)])  # (1 + 2K, H)


def melody_to_mel_matrix(mel_config: MelConfig | None = None) -> Tensor:
    """``(n_mels, 12)``: each mel band's share of each pitch class above middle C (the melody control's high-pass).

    ``Mᵀ`` of the mel filterbank times the chroma filterbank (:func:`course_lib.control.chroma_filterbank`
    at the mel STFT size), rows normalised by the band's total weight: a one-hot melody frame ``c`` becomes
    ``M c``, the bands where that pitch class (in any octave) lives.
    """
    mel_config = mel_config or MelConfig()
    mel = mel_filterbank(mel_config)  # (K, M)
    chroma = chroma_filterbank(mel_config.sample_rate, mel_config.n_fft)  # (12, K)
    share = mel.T @ chroma.T  # (M, 12)
    return share / mel.sum(0)[:, None].clamp_min(1e-8)  # (M, 12)


def zero_conv(in_channels: int, out_channels: int) -> nn.Conv2d:
    """A 1×1 convolution with weight and bias exactly zero (ControlNet's "zero convolution")."""
    conv = nn.Conv2d(in_channels, out_channels, 1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


def control_signal(
    controls: dict[str, Tensor],
    use: Sequence[str] = CONTROLS,
    time_mask: Tensor | None = None,
    frames: int | None = None,
) -> Tensor:
    """The ControlNet input: control rows and mask rows, ``(B, 17, F)``, on the mel frame grid.

    Args:
        controls: as :func:`course_lib.control.all_controls` returns them (``melody`` (B, 12, F),
            ``loudness_db`` (B, F), ``beats`` (B, F)); only the keys of ``use`` are read.
        use: which controls to give; the others get zero rows and a zero mask.
        time_mask: ``(B, F)`` (or ``(F,)``) bool/0-1, the frames where the used controls are given;
            default everywhere. Outside it the control rows and masks are zero ("free").
        frames: crop or zero-pad the time axis to this many frames.

    Returns:
        rows ``0-11`` melody, ``12`` dynamics ((dB + 25) / 10), ``13`` beats, ``14-16`` the three masks.

    Notebook: notebooks/09_controlnet.ipynb
    """
    unknown = [name for name in use if name not in CONTROLS]
    if unknown:
        raise ConfigError(f"Unknown control(s) {unknown}: choose from {', '.join(CONTROLS)}.")
    source = {"melody": "melody", "dynamics": "loudness_db", "rhythm": "beats"}
    missing = [source[name] for name in use if source[name] not in controls]
    if missing:
        raise ConfigError(f"controls lacks {missing}: compute them with course_lib.control.all_controls(audio, 16000).")
    reference = controls[source[use[0]]] if use else next(iter(controls.values()))
    batch, length = reference.shape[0], reference.shape[-1]
    device = reference.device
    frames = frames or length
    given = torch.ones(batch, length, device=device) if time_mask is None else time_mask.to(device).float()
    given = given.expand(batch, length) if given.ndim == 1 else given  # (B, F)
    rows, masks = [], []
    for name in CONTROLS:
        if name in use:
            value = controls[source[name]].float()
            value = value if name == "melody" else value[:, None]  # (B, rows, F)
            if name == "dynamics":
                value = (value - DYNAMICS_CENTER_DB) / DYNAMICS_SPAN_DB
            rows.append(value * given[:, None])
            masks.append(given[:, None])
        else:
            rows.append(torch.zeros(batch, CONTROL_ROWS[name], length, device=device))
            masks.append(torch.zeros(batch, 1, length, device=device))
    signal = torch.cat(rows + masks, dim=1)  # (B, 17, F)
    if frames <= length:
        return signal[..., :frames]
    return F.pad(signal, (0, frames - length))  # (B, 17, frames): zero = not given


@dataclasses.dataclass
class ControlNetConfig(ScaledConfig):
    """The hint network's size. Defaults are the ``tiny`` preset.

    Attributes:
        signal_channels: rows of the control signal (:func:`control_signal`: 17).
        hint_channels: channels of the hint network's hidden layers.
        time_downsample: mel frames per latent frame (the VAE's compression, 4).
    """

    signal_channels: int = SIGNAL_CHANNELS
    hint_channels: int = 32
    time_downsample: int = 4
    full_overrides: ClassVar[dict] = {"hint_channels": 128}


class ControlNet(nn.Module):
    """The trainable copy of a UNet's encoder and middle block, fed with a control; see the module docstring.

    ``ControlNet(base)(x_t, t, signal, cond, cond_mask)`` returns the residuals for the base UNet's
    skips and middle block; :class:`ControlledUNet` adds them. The base itself is not part of this
    module (its weights are not saved with it).

    Args:
        base: the trained UNet to control; its time MLP, condition projection, encoder and middle
            block are deep-copied (so they start from the base's weights).
        config: the hint network's size.

    Notebook: notebooks/09_controlnet.ipynb
    """

    def __init__(self, base: UNet, config: ControlNetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or ControlNetConfig()
        self.unet_config = base.config
        # the trainable copy (ControlNet copies the time embedding with the blocks)
        self.time_mlp = copy.deepcopy(base.time_mlp)
        self.cond_proj = copy.deepcopy(base.cond_proj)
        self.null_cond = copy.deepcopy(base.null_cond)
        self.encoder = copy.deepcopy(base.encoder)
        self.middle = copy.deepcopy(base.middle)
        base_channels, hidden = base.config.base_channels, config.hint_channels
        inputs = config.signal_channels + 1 + 1 + 2 * POSITION_FREQUENCIES  # rows, melody on the mel axis, position
        layers: list[nn.Module] = [nn.Conv2d(inputs, hidden, 3, padding=1), nn.SiLU()]
        for _ in range(int(math.log2(config.time_downsample))):  # ControlNet's strided hint encoder: mel -> latent grid
            layers += [nn.Conv2d(hidden, hidden, 3, stride=2, padding=1), nn.SiLU()]
        self.hint = nn.Sequential(*layers, zero_conv(hidden, base_channels))
        self.register_buffer("melody_to_mel", melody_to_mel_matrix(), persistent=False)
        self.zero_convs = nn.ModuleList([zero_conv(c, c) for c in base.skip_channels])
        middle_channels = base.skip_channels[-1]
        self.middle_zero_conv = zero_conv(middle_channels, middle_channels)

    def embed(self, t: Tensor, cond: Tensor | None, cond_mask: Tensor | None) -> Tensor:
        """The copy's time + condition embedding (the same rule as :meth:`course_lib.diffusion.UNet.embed`)."""
        emb = self.time_mlp(timestep_embedding(t, self.unet_config.base_channels))  # (B, D)
        if self.cond_proj is None:
            return emb
        null = self.null_cond.expand_as(emb)  # (B, D)
        if cond is None:
            return emb + null
        projected = self.cond_proj(cond)  # (B, D)
        if cond_mask is not None:
            projected = torch.where(cond_mask[:, None], projected, null)  # (B, D)
        return emb + projected  # (B, D)

    def hint_map(self, signal: Tensor, height: int, width: int) -> Tensor:
        """Control signal ``(B, 17, F)`` → hint features ``(B, base_channels, height, width)`` (zero at init).

        The hint encoder works on the mel grid (``height · r`` bands × ``width · r`` frames) and halves it
        ``log2 r`` times with strided convolutions down to the latent grid, as ControlNet's encoder of the
        condition image does. Its input: the 17 signal rows repeated on every band, the melody projected on
        the mel axis (each band's share of the wanted pitch class, :func:`melody_to_mel_matrix`), and the
        band position features.
        """
        r = self.config.time_downsample
        frames, bands = width * r, height * r
        signal = F.pad(signal, (0, frames - signal.shape[-1])) if signal.shape[-1] < frames else signal[..., :frames]
        grid = signal[:, :, None, :].expand(-1, -1, bands, -1)  # (B, 17, M, F)  the same in every band
        melody = torch.einsum("mp,bpf->bmf", self.melody_to_mel.to(signal.dtype), signal[:, :12])  # (B, M, F)
        position = row_features(bands, signal.device, signal.dtype)  # (P, M)
        position = position[None, :, :, None].expand(signal.shape[0], -1, bands, frames)  # (B, P, M, F)
        return self.hint(torch.cat([grid, melody[:, None], position], dim=1))  # (B, base_channels, H, W)

    def forward(
        self, x: Tensor, t: Tensor, signal: Tensor, cond: Tensor | None = None, cond_mask: Tensor | None = None
    ) -> tuple[list[Tensor], Tensor]:
        """The residuals ``(skip_residuals, middle_residual)`` for the base UNet (all zero at initialisation)."""
        emb = self.embed(t, cond, cond_mask)  # (B, D)
        h = self.encoder[0](x, emb) + self.hint_map(signal, x.shape[-2], x.shape[-1])  # (B, C0, H, W)
        outputs = [h]
        for layer in self.encoder[1:]:
            h = layer(h, emb)  # (B, C_level, H_level, W_level)
            outputs.append(h)
        h = self.middle(h, emb)  # (B, C_last, H / m, W / m)
        skips = [conv(out) for conv, out in zip(self.zero_convs, outputs, strict=True)]
        return skips, self.middle_zero_conv(h)


class ControlledUNet(nn.Module):
    """The frozen base UNet plus a ControlNet: ``model(x_t, t, cond=None, cond_mask=None, signal=None)``.

    Usable by every sampler: bind the control with :meth:`with_signal` (a batch twice the signal's, as
    classifier-free guidance makes, gets the signal repeated: the control applies to both halves).
    Without a signal (``signal=None`` and none bound) it is exactly the base model.

    Args:
        base: the trained UNet; frozen here (``requires_grad_(False)``).
        controlnet: the ControlNet made from it.
        strength: a factor on the ControlNet's residuals (ControlNet's "control strength"; 1 as trained).

    Notebook: notebooks/09_controlnet.ipynb
    """

    def __init__(self, base: UNet, controlnet: ControlNet, strength: float = 1.0) -> None:
        super().__init__()
        self.base = base.requires_grad_(False)
        self.controlnet = controlnet
        self.strength = strength
        self.signal: Tensor | None = None

    def with_signal(self, signal: Tensor | None) -> ControlledUNet:
        """Bind (or clear, with None) the control signal that later calls use; returns ``self``."""
        self.signal = signal
        return self

    def forward(
        self,
        x: Tensor,
        t: Tensor | int,
        cond: Tensor | None = None,
        cond_mask: Tensor | None = None,
        signal: Tensor | None = None,
    ) -> Tensor:
        signal = self.signal if signal is None else signal
        if signal is None:
            return self.base(x, t, cond, cond_mask)
        t = torch.as_tensor(t, device=x.device)
        t = t.expand(x.shape[0]) if t.ndim == 0 else t  # (B,)
        signal = signal.to(x.device, x.dtype)
        if signal.shape[0] != x.shape[0]:
            if x.shape[0] % signal.shape[0]:
                raise ConfigError(
                    f"control signal of batch {signal.shape[0]} does not fit an input batch of {x.shape[0]}."
                )
            signal = signal.repeat(x.shape[0] // signal.shape[0], 1, 1)  # (B, 17, F)  e.g. guidance's doubled batch
        skips, middle = self.controlnet(x, t, signal, cond, cond_mask)
        if self.strength != 1.0:
            skips, middle = [self.strength * s for s in skips], self.strength * middle
        return self.base(x, t, cond, cond_mask, skip_residuals=skips, middle_residual=middle)


def random_control_masks(
    batch: int,
    frames: int,
    generator: torch.Generator | None = None,
    keep_prob: float = 0.5,
    full_time_prob: float = 0.5,
) -> tuple[list[tuple[str, ...]], Tensor]:
    """Music ControlNet's training masks: a random subset of controls per sample and a random time span.

    Each control is kept with ``keep_prob`` (at least one per sample); with ``full_time_prob`` the
    controls cover the whole clip, otherwise one random span of 25-75% of it.

    Returns:
        the controls used by each sample, and ``(B, F)`` float time masks.
    """
    keep = torch.rand(batch, len(CONTROLS), generator=generator) < keep_prob  # (B, 3)
    forced = torch.randint(len(CONTROLS), (batch,), generator=generator)  # (B,)
    keep[torch.arange(batch), forced] |= ~keep.any(1)  # nobody gets no control at all
    use = [tuple(name for name, k in zip(CONTROLS, row, strict=True) if k) for row in keep.tolist()]
    full = torch.rand(batch, generator=generator) < full_time_prob  # (B,)
    length = (frames * (0.25 + 0.5 * torch.rand(batch, generator=generator))).long()  # (B,)
    start = (torch.rand(batch, generator=generator) * (frames - length + 1)).long()  # (B,)
    position = torch.arange(frames)[None, :]  # (1, F)
    span = (position >= start[:, None]) & (position < (start + length)[:, None])  # (B, F)
    return use, (span | full[:, None]).float()


class ControlNetLoss:
    """DDPM's Algorithm 1 for the controlled model (the base frozen): a ``loss_fn(model, batch)`` for the Trainer.

    ``batch`` is a dict with ``x0`` (latents), ``cond`` (embeddings) and ``signal`` (:func:`control_signal`);
    the condition is dropped with ``cond_drop_prob`` (ControlNet drops 50% of prompts, so that the
    network learns to read the control itself). ``model`` is a :class:`ControlledUNet`.

    Notebook: notebooks/09_controlnet.ipynb
    """

    def __init__(self, schedule: NoiseSchedule, prediction_type: str = "epsilon", cond_drop_prob: float = 0.5) -> None:
        check_prediction_type(prediction_type)
        self.schedule, self.prediction_type, self.cond_drop_prob = schedule, prediction_type, cond_drop_prob

    def __call__(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, Tensor]:
        x0, cond, signal = batch["x0"], batch.get("cond"), batch["signal"]  # (B, C, H, W), (B, D), (B, 17, F)
        self.schedule = self.schedule.to(x0.device)
        t = torch.randint(0, self.schedule.num_timesteps, (x0.shape[0],), device=x0.device)  # (B,)
        noise = torch.randn_like(x0)  # (B, C, H, W)
        x_t = self.schedule.q_sample(x0, t, noise)  # (B, C, H, W)
        keep = None
        if cond is not None and self.cond_drop_prob > 0:
            keep = torch.rand(x0.shape[0], device=x0.device) >= self.cond_drop_prob  # (B,)
        prediction = model(x_t, t, cond=cond, cond_mask=keep, signal=signal)  # (B, C, H, W)
        target = self.schedule.target(x0, noise, t, self.prediction_type)  # (B, C, H, W)
        return {"loss": torch.mean((target - prediction.float()) ** 2)}
