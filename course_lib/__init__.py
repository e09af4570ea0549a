"""course_lib: the companion library of the course "Audio-Level Music Generation".

The sub-packages follow the lecture, chapter by chapter (README.md, "Chapters in the library"):

- ``audio`` (00): audio I/O, STFT and (log-)mel spectrograms, Griffin-Lim, players.
- ``data`` (00, every chapter): SynthMusic, its splits, random crops and batches, real data sets.
- ``control`` (00, 09): melody, dynamics and rhythm computed from audio (Music ControlNet's controls).
- ``quantize`` (01-03): k-means, the VQ-VAE quantizer, a VQ-VAE for audio, Jukebox's hierarchy.
- ``codec`` (04): residual VQ, SEANet, the SoundStream-style codec, its ``.codes`` files, baselines.
- ``adversarial`` (04, 08): discriminators, GAN losses, the discriminator's step in the training loop.
- ``lm`` (05, 06): the token transformer, layouts, generation with a KV cache, AudioLM, MusicLM.
- ``joint_embedding`` (06): the MuLan-style audio-text embedding and its retrieval figures.
- ``attributes`` (06, 08, 09): the SynthMusic attribute classifier, the fixed judge of generations.
- ``metrics`` (01-10): measures only: reconstruction distances, Fréchet distances (FAD, FAD∞, FMD),
  IS and caption adherence, control adherence.
- ``diffusion`` (07, 10): noise schedules, samplers (DDPM, DDIM), the UNet, mel patches, distillation
  and consistency models.
- ``latent_diffusion`` (08, 09): the Mel VAE, the vocoders, AudioLDM's text-to-audio, ControlNet.
- ``train`` (every chapter): the one training loop, checkpoints and weights, the commands' skeleton.
- ``widgets``, ``viz``, ``notebook``: the notebooks' widgets, plots and set-up cell.

Run ``python -m course_lib doctor`` to check an installation.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("course-lib")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"
