"""Train the course's VQ-VAEs on SynthMusic: the recipes and the one command behind each shipped checkpoint.

    python -m course_lib.quantize.train --model vqvae --scale tiny \\
        --out course_lib/checkpoints/vqvae_tiny.safetensors
    python -m course_lib.quantize.train --model hierarchical --scale tiny \\
        --out course_lib/checkpoints/jukebox_tiny.safetensors

Both notebooks train a model for a minute to show it learning, then load the shipped weights (the same
recipe, trained longer) to listen and measure. Everything here is seeded: the same command gives the
same weights on one machine (up to the non-determinism of multi-threaded float sums).

The recipes (data, losses, optimiser) are :mod:`course_lib.quantize.recipes`'s; the held-out figures
(:func:`course_lib.quantize.evaluation.reconstruction_by_level` on
:func:`course_lib.data.splits.held_out_audio`) go into the weights' metadata.

Notebooks: notebooks/02_vq_vae.ipynb, notebooks/03_hierarchical_vqvae.ipynb
"""

from __future__ import annotations

from course_lib.data.splits import SAMPLE_RATE, held_out_audio
from course_lib.quantize.evaluation import reconstruction_by_level
from course_lib.quantize.recipes import recipe, train
from course_lib.train.command import TrainingCommand

COMMAND = TrainingCommand("course_lib.quantize.train", __doc__)
COMMAND.add_argument("--model", choices=("vqvae", "hierarchical"), required=True)


def main(argv: list[str] | None = None) -> dict:
    """Train the recipe of the command line, write its weights and print the held-out figures."""
    run = COMMAND.parse(argv)
    args = run.args
    model, history = train(
        args.model, run.scale, args.steps, run.device, args.batch_size, args.seed, **run.train_options()
    )
    figures = reconstruction_by_level(model, held_out_audio())
    metadata = run.write(
        model,
        {
            "model": args.model,
            "steps": recipe(args.model, run.scale).steps if args.steps is None else args.steps,
            "final_loss": history[-1]["loss"],
            "held_out": figures,
            "sample_rate": SAMPLE_RATE,
        },
    )
    print(f"trained {metadata['steps']} steps in {metadata['train_seconds']:.0f} s; wrote {run.out}")
    for key, values in figures.items():
        print(f"held-out {key}: " + " / ".join(f"{v:.2f}" for v in values))
    return metadata


if __name__ == "__main__":
    COMMAND.exit(main)
