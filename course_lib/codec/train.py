"""Train the course's neural codec: the command behind the shipped checkpoint.

    python -m course_lib.codec.train --scale tiny --out course_lib/checkpoints/codec_tiny.safetensors

One CPU thread by default (``--threads``), seeded: a rerun on one machine gives the same weights. The
recipe (data, SoundStream's losses, the discriminator step, the codebooks' initialisation) is
:mod:`course_lib.codec.recipes`. After training, the held-out figures
(:func:`course_lib.codec.evaluation.evaluate`: multi-scale mel distance and SI-SDR for 1 ... 12 levels)
are stored in the weights' metadata with the run facts (:meth:`course_lib.train.command.Run.facts`).

Notebook: notebooks/04_neural_codec.ipynb loads the result (:func:`course_lib.codec.load_tiny_codec`).
"""

from __future__ import annotations

import dataclasses

from course_lib.codec.evaluation import evaluate
from course_lib.codec.model import CodecConfig
from course_lib.codec.recipes import recipe, train_codec
from course_lib.data.splits import held_out_audio
from course_lib.errors import ConfigError
from course_lib.train.command import TrainingCommand, positive_float, positive_int

COMMAND = TrainingCommand("course_lib.codec.train", __doc__)
COMMAND.add_argument("--adversarial-start", type=int, help="reconstruction-only steps before the GAN terms")
COMMAND.add_argument("--lr", type=positive_float)
COMMAND.add_argument("--clips", type=positive_int, help="SynthMusic training clips to synthesize")


def main(argv: list[str] | None = None) -> dict:
    """Train the codec recipe of the command line, write its weights and print the held-out figures."""
    run = COMMAND.parse(argv)
    args = run.args
    plan = recipe(
        run.scale,
        steps=args.steps,
        adversarial_start=args.adversarial_start,
        batch_size=args.batch_size,
        lr=args.lr,
        train_clips=args.clips,
        seed=args.seed,
    )
    if plan.init_clips > plan.train_clips:
        raise ConfigError(f"--clips must be at least {plan.init_clips} (the k-means initialisation uses that many).")
    config = CodecConfig.for_scale(run.scale)
    codec, history, _, _ = train_codec(config, plan, run.device, **run.train_options())
    codec.cpu()
    figures = evaluate(codec, held_out_audio(8))
    metadata = run.write(
        codec,
        {
            "recipe": dataclasses.asdict(plan),
            "final_terms": history[-1] if history else {},
            "held_out": {str(n_q): values for n_q, values in figures.items()},
            "sample_rate": config.sample_rate,
            "frame_rate": codec.frame_rate,
        },
    )
    print(f"trained {plan.steps} steps in {metadata['train_seconds']:.0f} s; wrote {run.out}")
    for n_q, values in figures.items():
        print(
            f"  {n_q:>2} levels, {values['kbps']:.1f} kbps: mel distance {values['mel_distance']:.3f}, "
            f"SI-SDR {values['si_sdr_db']:.1f} dB"
        )
    return metadata


if __name__ == "__main__":
    COMMAND.exit(main)
