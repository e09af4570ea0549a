"""Benchmark: text-to-audio speed of the tiny AudioLDM against pixel-space diffusion, and the adherence of the tiny models.

Two measurements, each side by side with its reference in one process:

- ``measure_text_to_audio``: seconds of audio generated per second of compute by the shipped pipeline
  (caption → joint embedding → DDIM in latent space with classifier-free guidance → VAE decoder →
  HiFi-GAN), stage by stage, against the pixel-space DDPM of notebook 07 (``load_tiny_ddpm``) sampling a
  log-mel spectrogram of the same length with the same number of DDIM steps (and Griffin-Lim). On the
  CPU by default, on one thread; ``--device cuda`` times it on a GPU.
- ``measure_adherence``: on held-out SynthMusic clips (``course_lib.data.splits.validation_clips``), the
  controls of one clip and the caption of another: Music ControlNet's three metrics
  (:mod:`course_lib.metrics.control_adherence`) of the ControlNet-controlled generation against the
  uncontrolled one (same caption, same noise), and the caption adherence of generations from held-out
  captions (attribute classifier) against chance.

    python benchmarks/bench_text_to_audio.py            # 8 clips, 50 DDIM steps
    python benchmarks/bench_text_to_audio.py --quick    # 2 clips, 10 steps (a smoke test)

Notebooks: notebooks/08_latent_diffusion.ipynb (speed), 09_controlnet.ipynb (adherence).
"""

from __future__ import annotations

import argparse
import time

import torch

from course_lib.config import get_device
from course_lib.control import all_controls
from course_lib.data.splits import held_out_clips, validation_clips
from course_lib.diffusion import ddim_sample, load_tiny_ddpm
from course_lib.latent_diffusion import control_signal, load_controlnet, load_latent_diffusion
from course_lib.metrics.control_adherence import control_adherence

SECONDS = 2.0


def _timed(function, device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    out = function()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - started


def measure_text_to_audio(
    quick: bool = False, device: str | None = "cpu", threads: int | None = 1, seed: int = 0
) -> dict:
    """Time each stage of text-to-audio and the pixel-space reference; seconds are per batch of ``n`` clips.

    Returns:
        ``n``, ``steps``, the stage times (``embed_s``, ``ddim_s``, ``decode_s``, ``hifigan_s``,
        ``griffin_lim_s``), ``pixel_ddim_s`` (notebook 07's UNet on a 64 × 208 spectrogram), and
        ``audio_per_compute`` (seconds of audio per second of compute, HiFi-GAN), ``latent_speedup``
        (pixel DDIM time / latent DDIM time).
    """
    n, steps = (2, 10) if quick else (8, 50)
    device = get_device(device)
    previous = torch.get_num_threads()
    if threads and device.type == "cpu":
        torch.set_num_threads(threads)
    try:
        pipeline = load_latent_diffusion(device=device)
        captions = held_out_clips(n).captions
        generator = torch.Generator().manual_seed(seed)
        pipeline.generate(captions[:1], 0.5, 2, 3.0)  # warm-up
        cond, embed_s = _timed(lambda: pipeline.embedding.embed_text(captions), device)
        latents, ddim_s = _timed(
            lambda: pipeline.sample_latents(cond, SECONDS, steps, 3.0, generator=generator), device
        )
        log_mel, decode_s = _timed(lambda: pipeline.latents_to_log_mel(latents, SECONDS), device)
        audio, hifigan_s = _timed(lambda: pipeline.vocode(log_mel, SECONDS, "hifigan"), device)
        _, griffin_lim_s = _timed(lambda: pipeline.vocode(log_mel, SECONDS, "griffin_lim"), device)
        ddpm = load_tiny_ddpm(device)
        shape = (n, 1, 64, 208)  # the same 2.08 s as a log-mel image
        _, pixel_ddim_s = _timed(
            lambda: ddim_sample(ddpm.model, ddpm.schedule, shape, num_steps=steps, prediction_type=ddpm.prediction_type,
                                generator=torch.Generator().manual_seed(seed), device=device, progress=False),
            device,
        )  # fmt: skip
    finally:
        torch.set_num_threads(previous)
    total = embed_s + ddim_s + decode_s + hifigan_s
    return {
        "n": n, "steps": steps, "device": str(device), "threads": threads, "embed_s": embed_s, "ddim_s": ddim_s,
        "decode_s": decode_s, "hifigan_s": hifigan_s, "griffin_lim_s": griffin_lim_s, "pixel_ddim_s": pixel_ddim_s,
        "audio_per_compute": n * SECONDS / total, "latent_speedup": pixel_ddim_s / ddim_s,
        "audio_shape": tuple(audio.shape),
    }  # fmt: skip


def measure_adherence(quick: bool = False, device: str | None = "cpu", seed: int = 0) -> dict:
    """Control adherence with and without the ControlNet, and caption adherence of held-out captions.

    The controls come from clip i of ``validation_clips``, the caption from clip i + 1 (music the model
    has heard described, but not these clips). Both generations use the same noise and guidance 3.
    """
    from course_lib.attributes import load_tiny_attribute_classifier
    from course_lib.metrics import caption_adherence

    n, steps = (2, 10) if quick else (8, 50)
    device = get_device(device)
    pipeline = load_latent_diffusion(device=device)
    controlled = load_controlnet(pipeline)
    clips = validation_clips(n + 1)
    audio = clips.audio[:n]
    tempo = torch.tensor([c.tempo for c in clips.clips[:n]])
    controls = all_controls(audio, 16_000, tempo=tempo)
    captions = clips.captions[1 : n + 1]
    frames = pipeline.latent_shape(SECONDS)[-1] * pipeline.vae.frame_multiple
    signal = control_signal(controls, frames=frames)
    results = {}
    for name, model in (("uncontrolled", None), ("controlled", controlled.with_signal(signal))):
        generated = pipeline.generate(captions, SECONDS, steps, 3.0, torch.Generator().manual_seed(seed), model=model)
        results[name] = control_adherence(generated, controls)  # beats tracked without being told the tempo
    held_out = held_out_clips(n)
    generated = pipeline.generate(held_out.captions, SECONDS, steps, 3.0, torch.Generator().manual_seed(seed))
    results["caption_adherence"] = caption_adherence(
        load_tiny_attribute_classifier(device), generated, held_out.captions
    )
    results.update(n=n, steps=steps)
    return results


def ratio_rows(quick: bool = False) -> list[dict]:
    """The suite's rows: latent vs pixel sampling time; controlled vs uncontrolled melody accuracy."""
    speed = measure_text_to_audio(quick)
    adherence = measure_adherence(quick)
    melody = {k: adherence[k]["melody_accuracy"] for k in ("uncontrolled", "controlled")}
    before, after = adherence["uncontrolled"], adherence["controlled"]
    caption = adherence["caption_adherence"]
    others = [
        {
            "benchmark": f"{label}, ControlNet-controlled vs uncontrolled (held-out clips)",
            "ratio": after[key] / max(before[key], 1e-6),
            "goal": "> 1×",
            "met": after[key] > before[key],
            "detail": f"{after[key]:.2f} vs {before[key]:.2f} (Music ControlNet {paper})",
        }
        for key, label, paper in (
            ("dynamics_correlation", "dynamics correlation", "0.908"),
            ("beat_f1", "beat F1", "0.708"),
        )
    ]
    chance = {"instrument": 1 / 3, "tempo_class": 1 / 3, "drums": 1 / 2}
    mean_chance = sum(chance.values()) / len(chance)
    others.append(
        {
            "benchmark": "caption adherence of text-to-audio from held-out captions / chance",
            "ratio": caption["mean"] / mean_chance,
            "goal": "> 1×",
            "met": caption["mean"] > mean_chance,
            "detail": ", ".join(f"{name} {caption[name]:.0%}" for name in chance if name in caption)
            + f" (chance {', '.join(f'{v:.0%}' for v in chance.values())}); {adherence['n']} clips, guidance 3",
        }
    )
    return [
        {
            "benchmark": f"latent (4×16×52) vs pixel (1×64×208) DDIM-{speed['steps']} sampling time, 2 s of audio",
            "ratio": speed["latent_speedup"],
            "goal": "> 1× (latent diffusion is cheaper)",
            "met": speed["latent_speedup"] > 1,
            "detail": f"{speed['ddim_s']:.2f} s vs {speed['pixel_ddim_s']:.2f} s for {speed['n']} clips; "
            f"text-to-audio {speed['audio_per_compute']:.1f} s of audio per s of compute ({speed['threads']} thread)",
        },
        {
            "benchmark": "melody accuracy, ControlNet-controlled vs uncontrolled (held-out clips)",
            "ratio": melody["controlled"] / max(melody["uncontrolled"], 1e-6),
            "goal": "> 1× (follows the melody measurably better)",
            "met": melody["controlled"] > melody["uncontrolled"],
            "detail": f"{melody['controlled']:.1%} vs {melody['uncontrolled']:.1%} (chance 8.3%; Music ControlNet 58.7%)",
        },
        *others,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 clips, 10 DDIM steps")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on the CPU")
    args = parser.parse_args()
    s = measure_text_to_audio(args.quick, args.device, args.threads)
    print(
        f"text-to-audio, {s['n']} clips of {SECONDS:.0f} s, DDIM {s['steps']} steps, guidance 3, {s['device']}, {s['threads']} thread(s)"
    )
    for stage in ("embed", "ddim", "decode", "hifigan", "griffin_lim"):
        print(f"  {stage:>12}: {s[stage + '_s']:7.2f} s")
    print(f"  {s['audio_per_compute']:.1f} s of audio per second of compute (embedding + DDIM + VAE + HiFi-GAN)")
    print(
        f"  pixel-space DDIM on the same 2 s: {s['pixel_ddim_s']:.2f} s -> latent sampling is {s['latent_speedup']:.1f}x faster"
    )
    print(f"  HiFi-GAN is {s['griffin_lim_s'] / s['hifigan_s']:.1f}x faster than 64 Griffin-Lim iterations")
    a = measure_adherence(args.quick, args.device)
    print(f"adherence on {a['n']} held-out clips (controls of one clip, caption of another), DDIM {a['steps']} steps")
    for name in ("uncontrolled", "controlled"):
        r = a[name]
        print(f"  {name:>12}: melody accuracy {r['melody_accuracy']:.1%}, dynamics correlation "
              f"{r['dynamics_correlation']:.2f}, beat F1 {r['beat_f1']:.2f}")  # fmt: skip
    print("  Music ControlNet (paper, its data): 58.7%, 0.91, 0.71")
    print(
        "  caption adherence of held-out captions: "
        + ", ".join(f"{k} {v:.0%}" for k, v in a["caption_adherence"].items() if isinstance(v, float))
    )


if __name__ == "__main__":
    main()
