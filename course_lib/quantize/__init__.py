"""Codebooks: k-means, the VQ-VAE quantizer, a VQ-VAE for audio and Jukebox's hierarchy of VQ-VAEs.

Lecture sections "Audio Discretization Using K-means", "VQ-VAE" and "JukeBox".
Notebooks: notebooks/01_kmeans_vq.ipynb, 02_vq_vae.ipynb, 03_hierarchical_vqvae.ipynb.

The functional ``kmeans(x, k)`` stays in ``course_lib.quantize.kmeans`` (re-exported here it would
hide the module of the same name).
"""

from course_lib.quantize.hierarchical_vq_vae import (
    HierarchicalOutput,
    HierarchicalVQVAE,
    HierarchicalVQVAEConfig,
    token_rate,
)
from course_lib.quantize.kmeans import KMeans, kmeans_plus_plus, nearest_centers
from course_lib.quantize.vector_quantizer import QuantizerOutput, VectorQuantizer
from course_lib.quantize.vq_vae import VQVAE, VQVAEConfig, VQVAEOutput

__all__ = [
    "HierarchicalOutput",
    "HierarchicalVQVAE",
    "HierarchicalVQVAEConfig",
    "KMeans",
    "QuantizerOutput",
    "VQVAE",
    "VQVAEConfig",
    "VQVAEOutput",
    "VectorQuantizer",
    "kmeans_plus_plus",
    "nearest_centers",
    "token_rate",
]
