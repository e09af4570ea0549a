"""ControlNet: zero convolutions give exactly the base model at initialisation; the control signal, its masks, training."""

from __future__ import annotations

import pytest
import torch

from course_lib.diffusion import ClassifierFreeGuidance, NoiseSchedule, UNet, UNetConfig
from course_lib.errors import ConfigError
from course_lib.latent_diffusion import (
    CONTROLS,
    ControlledUNet,
    ControlNet,
    ControlNetLoss,
    control_signal,
    random_control_masks,
    zero_conv,
)

CONFIG = UNetConfig(in_channels=4, cond_dim=8, base_channels=8, attention_levels=(2,), norm_groups=4)


def trained_looking_base() -> UNet:
    """A UNet with every weight non-zero (a fresh one has zero-initialised pieces that could hide a bug)."""
    torch.manual_seed(0)
    base = UNet(CONFIG).eval()
    with torch.no_grad():
        for p in base.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return base


def controls(batch: int = 2, frames: int = 64) -> dict[str, torch.Tensor]:
    melody = torch.nn.functional.one_hot(torch.randint(12, (batch, frames)), 12).movedim(-1, 1).float()
    return {
        "melody": melody,
        "loudness_db": torch.linspace(-40, -10, frames).expand(batch, -1),
        "beats": (torch.arange(frames) % 16 == 0).float().expand(batch, -1),
    }


def test_zero_conv_is_exactly_zero():
    conv = zero_conv(3, 5)
    assert torch.equal(conv.weight, torch.zeros_like(conv.weight)) and torch.equal(conv.bias, torch.zeros(5))
    assert torch.equal(conv(torch.randn(2, 3, 4, 4)), torch.zeros(2, 5, 4, 4))


def test_controlled_model_equals_the_base_exactly_at_initialisation():
    """The lecture's y_c = y at t = 0: the difference is exactly zero (torch.equal, not allclose)."""
    base = trained_looking_base()
    model = ControlledUNet(base, ControlNet(base)).eval()
    x, t = torch.randn(2, 4, 16, 16), torch.tensor([3, 700])
    cond = torch.randn(2, 8)
    signal = control_signal(controls(2, 64))
    with torch.no_grad():
        assert torch.equal(model(x, t, cond=cond, signal=signal), base(x, t, cond))
        assert torch.equal(model(x, t, signal=signal), base(x, t))  # the null condition too
        guided = ClassifierFreeGuidance(model.with_signal(signal), 3.0)(x, t, cond)  # doubled batch, signal repeated
        assert torch.equal(guided, ClassifierFreeGuidance(base, 3.0)(x, t, cond))
        skips, middle = model.controlnet(x, t, signal, cond)
    assert all(torch.equal(s, torch.zeros_like(s)) for s in skips) and torch.equal(middle, torch.zeros_like(middle))


def test_only_the_copy_trains_and_the_zero_convs_grow():
    base = trained_looking_base()
    before = {name: p.clone() for name, p in base.state_dict().items()}
    controlnet = ControlNet(base)
    model = ControlledUNet(base, controlnet)
    assert all(not p.requires_grad for p in base.parameters())
    loss_fn = ControlNetLoss(NoiseSchedule.scaled_linear(), cond_drop_prob=0.5)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    batch = {"x0": torch.randn(4, 4, 16, 16), "cond": torch.randn(4, 8), "signal": control_signal(controls(4, 64))}
    torch.manual_seed(1)
    for _ in range(2):  # step 1 moves the zero convs off zero; step 2 reaches the rest of the copy through them
        optimizer.zero_grad()
        loss_fn(model, batch)["loss"].backward()
        optimizer.step()
    assert all(torch.equal(before[name], p) for name, p in base.state_dict().items())  # the base is locked
    assert controlnet.middle_zero_conv.weight.abs().sum() > 0  # gradients reach zero-initialised weights
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in controlnet.encoder.parameters())
    x, t = torch.randn(1, 4, 16, 16), torch.tensor([10])
    with torch.no_grad():
        assert not torch.equal(model(x, t, signal=batch["signal"][:1]), base(x, t))


def test_control_signal_rows_masks_and_partial_time():
    c = controls(2, 64)
    full = control_signal(c)
    assert full.shape == (2, 17, 64)
    assert torch.equal(full[:, :12], c["melody"])
    torch.testing.assert_close(full[:, 12], (c["loudness_db"] + 25) / 10)
    assert torch.equal(full[:, 13], c["beats"]) and torch.equal(full[:, 14:], torch.ones(2, 3, 64))
    only_melody = control_signal(c, use=("melody",))
    assert only_melody[:, 12:14].abs().sum() == 0 and torch.equal(
        only_melody[:, 14:], torch.tensor([1.0, 0, 0])[None, :, None].expand(2, 3, 64)
    )
    first_half = torch.arange(64) < 32
    partial = control_signal(c, time_mask=first_half)
    assert partial[..., 32:].abs().sum() == 0  # the rest is free: no control, mask 0
    assert torch.equal(partial[..., :32], full[..., :32])
    assert control_signal(c, frames=80).shape == (2, 17, 80)
    with pytest.raises(ConfigError, match="Unknown control"):
        control_signal(c, use=("harmony",))
    with pytest.raises(ConfigError, match="all_controls"):
        control_signal({"melody": c["melody"]}, use=("dynamics",))


def test_random_masks_keep_a_control_and_a_span():
    use, mask = random_control_masks(500, 200, torch.Generator().manual_seed(0))
    assert all(len(u) >= 1 and set(u) <= set(CONTROLS) for u in use)
    covered = mask.mean(1)
    partial = covered[covered < 1]
    assert 0.3 < (covered == 1).float().mean() < 0.7  # about half the time the whole clip
    assert ((partial >= 0.24) & (partial <= 0.76)).all()
    singles = sum(len(u) == 1 for u in use) / len(use)
    assert 0.2 < singles < 0.6


def test_shipped_controlnet_follows_a_melody_better_than_no_control():
    """The issue's check: with the melody of one clip and the caption of another, the controlled generation
    follows the melody measurably better than the uncontrolled one (same caption, same noise)."""
    from course_lib.control import all_controls
    from course_lib.data.splits import validation_clips
    from course_lib.latent_diffusion import load_controlnet, load_latent_diffusion
    from course_lib.latent_diffusion.model import TINY_CONTROLNET
    from course_lib.metrics import control_adherence

    assert TINY_CONTROLNET.stat().st_size < 5e6
    pipeline = load_latent_diffusion(device="cpu", vocoder_path=None)
    controlled = load_controlnet(pipeline)
    clips = validation_clips(5)
    controls = all_controls(clips.audio[:4], 16_000)
    signal = control_signal(controls, use=("melody",), frames=208)
    scores = {}
    for name, model in (("none", None), ("melody", controlled.with_signal(signal))):
        audio = pipeline.generate(clips.captions[1:5], 2.0, steps=20, guidance=3.0, vocoder="griffin_lim",
                                  generator=torch.Generator().manual_seed(0), model=model)  # fmt: skip
        scores[name] = control_adherence(audio, {"melody": controls["melody"]})["melody_accuracy"]
    assert scores["melody"] > scores["none"] + 0.1, scores
