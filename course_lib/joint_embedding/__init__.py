"""The joint audio–text embedding (MuLan / CLAP style): two towers trained contrastively on SynthMusic.

- ``tokenizer``: the word-level caption tokenizer of the text tower (no downloaded model).
- ``model``: the audio and text towers, the shared l2-normalised space, the symmetric InfoNCE loss
  with a learnt temperature, and the loaders of the shipped weights.
- ``retrieval``: text → audio retrieval accuracy, attribute retrieval, zero-shot classification by
  prompts, and the audio–text gap.
- ``train``: the recipe and the command behind ``course_lib/checkpoints/joint_embedding_tiny.safetensors``.

Notebooks: notebooks/06_text_to_music.ipynb (MusicLM's conditioning), 08_latent_diffusion.ipynb (AudioLDM's).
"""

from course_lib.joint_embedding.model import (
    JointEmbedding,
    JointEmbeddingConfig,
    contrastive_loss,
    load_joint_embedding,
    load_tiny_joint_embedding,
)
from course_lib.joint_embedding.retrieval import (
    attribute_retrieval_accuracy,
    embedding_gap,
    retrieval_accuracy,
    similarity_matrix,
    zero_shot_accuracy,
    zero_shot_predictions,
)
from course_lib.joint_embedding.tokenizer import CaptionTokenizer, caption_vocabulary

__all__ = [
    "CaptionTokenizer",
    "JointEmbedding",
    "JointEmbeddingConfig",
    "attribute_retrieval_accuracy",
    "caption_vocabulary",
    "contrastive_loss",
    "embedding_gap",
    "load_joint_embedding",
    "load_tiny_joint_embedding",
    "retrieval_accuracy",
    "similarity_matrix",
    "zero_shot_accuracy",
    "zero_shot_predictions",
]
