"""Audio language models: a transformer over codec tokens, token layouts, AudioLM's hierarchy, MusicLM's conditioning.

Lecture sections "Overview of Audio Generation AI Models" (the 1-D approach), "AudioLM", "MusicLM" and
"Challenges in Audio language model".

- ``transformer``: the decoder (causal self-attention, rotary or learned positions, pre-norm blocks,
  optional cross-attention), the key/value cache, :class:`TokenLM` and the next-token loss.
- ``generation``: temperature, top-k and top-p filters, seeded sampling, guidance on logits, and
  :func:`generate` with or without the cache.
- ``layouts``: flatten, MusicGen's delay pattern, AudioLM's coarse/fine split, steps per second.
- ``sequences``: each model's vocabulary, training sequences and generation constraints.
- ``audiolm``: semantic tokens (k-means over the joint embedding's frames) and the three-stage chain.
- ``musiclm``: conditioning on M_A in training and M_T at inference, condition dropout.
- ``data``, ``train``, ``pretrained``: token data, the recipes behind the shipped checkpoints, loaders.

Notebooks: notebooks/05_audio_language_model.ipynb, 06_text_to_music.ipynb.
"""

from course_lib.lm.audiolm import AudioLM, AudioLMSample, SamplingOptions, SemanticTokenizer, SemanticTokenizerConfig
from course_lib.lm.generation import (
    apply_temperature,
    generate,
    guided_logits,
    sample_from_logits,
    top_k_filter,
    top_p_filter,
)
from course_lib.lm.layouts import (
    delay_pattern,
    flatten_codes,
    merge_coarse_fine,
    split_coarse_fine,
    steps_per_second,
    undelay,
    unflatten_codes,
)
from course_lib.lm.sequences import CoarseSequence, DelaySequence, FineSequence, SemanticSequence
from course_lib.lm.transformer import KVCache, LMConfig, TokenLM, next_token_loss

__all__ = [
    "AudioLM",
    "AudioLMSample",
    "CoarseSequence",
    "DelaySequence",
    "FineSequence",
    "KVCache",
    "LMConfig",
    "SamplingOptions",
    "SemanticSequence",
    "SemanticTokenizer",
    "SemanticTokenizerConfig",
    "TokenLM",
    "apply_temperature",
    "delay_pattern",
    "flatten_codes",
    "generate",
    "guided_logits",
    "merge_coarse_fine",
    "next_token_loss",
    "sample_from_logits",
    "split_coarse_fine",
    "steps_per_second",
    "top_k_filter",
    "top_p_filter",
    "undelay",
    "unflatten_codes",
]
