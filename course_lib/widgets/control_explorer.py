"""Music ControlNet, interactively: the controls of one clip, the caption of another, generate, compare.

Pick a clip to take the controls from (Wu et al. 2023's melody, dynamics and rhythm, computed by
:func:`course_lib.control.all_controls`), which of the three to give, and a caption; *generate* runs
the latent diffusion pipeline (chapter 08) with the ControlNet (chapter 09) and shows the result's
spectrogram with the melody control drawn over it (the mel bands of its pitch class), the dynamics
control against the result's loudness, and the three adherence measures of
:func:`course_lib.metrics.control_adherence`.

Notebook: notebooks/09_controlnet.ipynb.
"""

from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch

from course_lib.audio import log_mel_spectrogram
from course_lib.control import all_controls, loudness_db
from course_lib.data import midi_to_hz
from course_lib.latent_diffusion.controlnet import CONTROLS, control_signal
from course_lib.metrics.control_adherence import control_adherence
from course_lib.viz import mel_axis_position, plot_spectrogram
from course_lib.widgets.panel import Panel

LABELS = {"melody_accuracy": "melody accuracy", "dynamics_correlation": "dynamics r", "beat_f1": "beat F1"}


def control_explorer(
    pipeline,
    controlnet,
    audio: torch.Tensor,
    captions: Sequence[str],
    tempi: Sequence[float] | None = None,
    steps: int = 25,
    guidance: float = 3.0,
    seed: int = 0,
) -> Panel:
    """Controls from one of ``audio``'s clips, a caption from ``captions``, a *generate* button.

    Args:
        pipeline: a :class:`course_lib.latent_diffusion.TextToAudio` (``load_latent_diffusion()``).
        controlnet: its :class:`course_lib.latent_diffusion.ControlledUNet` (``load_controlnet(pipeline)``).
        audio: ``(N, T)`` 2-second clips at 16 kHz to take controls from.
        captions: the captions to choose from.
        tempi: each clip's BPM for the beat grid (estimated from the audio when None).
        steps, guidance, seed: DDIM steps, classifier-free guidance scale and noise seed of every generation.

    Notebook: notebooks/09_controlnet.ipynb
    """
    sample_rate = pipeline.mel_config.sample_rate
    seconds = audio.shape[-1] / sample_rate
    controls = all_controls(
        audio, sample_rate, tempo=None if tempi is None else torch.tensor(tempi, dtype=torch.float32)
    )
    source = widgets.Dropdown(
        options=[(f"clip {i}", i) for i in range(audio.shape[0])], value=0, description="controls of"
    )
    caption = widgets.Dropdown(
        options=list(captions), value=captions[0], description="caption", layout=widgets.Layout(width="420px")
    )
    given = widgets.SelectMultiple(options=list(CONTROLS), value=("melody",), description="give", rows=3)
    button = widgets.Button(description="generate", button_style="primary")

    def draw():
        i, use = source.value, tuple(given.value)
        mine = {key: value[i : i + 1] for key, value in controls.items() if key != "beat_times"}
        mine["beat_times"] = [controls["beat_times"][i]]
        frames = pipeline.latent_shape(seconds)[-1] * pipeline.vae.frame_multiple  # the mel frames the latents cover
        model = controlnet.with_signal(control_signal(mine, use=use, frames=frames)) if use else None
        generated = pipeline.generate([caption.value], seconds, steps=steps, guidance=guidance,
                                      generator=torch.Generator().manual_seed(seed), model=model)[0]  # fmt: skip
        asked = {"melody": "melody", "dynamics": "loudness_db", "rhythm": "beat_times"}
        scores = control_adherence(generated[None], {asked[name]: mine[asked[name]] for name in use}) if use else {}
        figure, axes = plt.subplots(1, 2, figsize=(10, 2.6), gridspec_kw={"width_ratios": [1.5, 1]})
        config = pipeline.mel_config
        f_max = config.f_max or sample_rate / 2
        _ = plot_spectrogram(log_mel_spectrogram(generated, config), sample_rate, config.hop_length, ax=axes[0],
                             frequency_scale="mel", f_max=f_max, title="generated; cyan: the melody control")  # fmt: skip
        pitch_class = mine["melody"][0].argmax(0).numpy()  # (F,) the asked pitch class per frame
        times = np.arange(pitch_class.shape[0]) * config.hop_length / sample_rate
        if "melody" in use:  # drawn at its pitch in the octave above middle C
            y = mel_axis_position(midi_to_hz(60 + pitch_class), config.n_mels, f_max, config.f_min)
            _ = axes[0].plot(times, y, ".", color="cyan", markersize=2)
        _ = axes[1].plot(times, mine["loudness_db"][0].numpy(), label="control (clip)")
        _ = axes[1].plot(times, loudness_db(generated, sample_rate, config.hop_length).numpy(), label="generated")
        axes[1].set(title="dynamics (dB)", xlabel="time (s)")
        _ = axes[1].legend(fontsize=8)
        figure.tight_layout()
        measured = ", ".join(f"{LABELS[name]} {value:.2f}" for name, value in scores.items()) or "no control given"
        readout = f"controls {', '.join(use) or 'none'} of clip {i}; caption “{caption.value}”: {measured}"
        return readout, figure, {f"controls: clip {i}": audio[i], "generated": generated}, sample_rate

    return Panel([source, given, caption], draw, button=button)
