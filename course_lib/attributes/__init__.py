"""The attribute classifier: the course's judge of generated SynthMusic, a trained model like the joint embedding.

- ``model``: the log-mel CNN with one head per attribute and a tempo head on onset periodicity, its
  FAD embedding (the penultimate layer), and the loaders of the shipped weights.
- ``train``: the recipe and the command behind ``course_lib/checkpoints/attribute_classifier_tiny.safetensors``
  (``python -m course_lib.attributes.train``).

The measures built on it live in :mod:`course_lib.metrics`: FAD and FAD∞ (``frechet``), the Inception
Score and caption adherence (``classifier_scores``).

Notebooks: notebooks/06_text_to_music.ipynb, 08_latent_diffusion.ipynb.
"""

from course_lib.attributes.model import (
    ATTRIBUTE_CLASSES,
    TINY_ATTRIBUTE_CLASSIFIER,
    AttributeClassifier,
    AttributeClassifierConfig,
    load_attribute_classifier,
    load_tiny_attribute_classifier,
    onset_autocorrelation,
)

__all__ = [
    "ATTRIBUTE_CLASSES",
    "TINY_ATTRIBUTE_CLASSIFIER",
    "AttributeClassifier",
    "AttributeClassifierConfig",
    "load_attribute_classifier",
    "load_tiny_attribute_classifier",
    "onset_autocorrelation",
]
