"""AudioLM's hierarchy: semantic tokens for long-term structure, then coarse and fine acoustic tokens.

AudioLM (Borsos et al. 2023) splits generation in three language models:

1. **semantic modelling** p(z_t | z_<t): tokens at a low rate (25 Hz) that say *what* is played;
2. **coarse acoustic modelling** p(y_t^q | z, y_<t^≤Q', y_t^<q), q ≤ Q': the first Q' residual-VQ
   levels of the codec, given *all* the semantic tokens;
3. **fine acoustic modelling** p(y_t^q | y^≤Q', y_<t^>Q', y_t^<q), q > Q': the remaining levels,
   given all the coarse ones (in short chunks), which only add detail.

**The semantic tokens** (:class:`SemanticTokenizer`) are k-means cluster ids of frame features of an
audio encoder that was trained for *meaning* rather than reconstruction. AudioLM takes an
intermediate layer of w2v-BERT (a self-supervised speech/music model) at 25 Hz. The course's
counterpart is the **audio tower of the joint audio–text embedding** (chapter 06,
:meth:`course_lib.joint_embedding.JointEmbedding.audio_frames`): 25 frames per second, each a
128-dimensional vector after its transformer layers, trained contrastively to carry what captions
describe (instrument, tempo, drums, dynamics, key) and nothing it does not need for that — the
opposite of the codec's features, which must keep every detail to rebuild the waveform. So two
clips that "say the same thing" share semantic tokens even when their waveforms differ, and the
first stage can plan the music without spending capacity on acoustic detail. The tokens are
k-means (:class:`course_lib.quantize.KMeans`) over the standardised features (AudioLM: 1,024
clusters of w2v-BERT features; here 64 clusters are plenty for SynthMusic's few attributes).

:class:`AudioLM` holds the three models, the tokenizer and the codec, and :meth:`AudioLM.sample` runs
the chain (optionally continuing a prompt, optionally conditioned on MusicLM's joint embedding, see
:mod:`course_lib.lm.musiclm`) and decodes the codes to audio.

Notebooks: notebooks/05_audio_language_model.ipynb, 06_text_to_music.ipynb
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_lib.config import ScaledConfig
from course_lib.errors import ConfigError
from course_lib.lm.generation import generate
from course_lib.lm.layouts import merge_coarse_fine
from course_lib.lm.sequences import CoarseSequence, FineSequence, SemanticSequence
from course_lib.lm.transformer import TokenLM
from course_lib.quantize import KMeans

FrameFeatures = Callable[[Tensor], Tensor]  # audio (B, T) -> features (B, N, D)


# ------------------------------------------------------------------------------------- semantic tokens
@dataclasses.dataclass
class SemanticTokenizerConfig(ScaledConfig):
    """k-means over encoder frame features: ``n_clusters`` ids at ``token_rate`` per second, of ``feature_dim`` features."""

    n_clusters: int = 64
    feature_dim: int = 128
    token_rate: float = 25.0
    kmeans_iterations: int = 50
    seed: int = 0
    full_overrides: ClassVar[dict] = {"n_clusters": 256}


class SemanticTokenizer(nn.Module):
    """Semantic tokens: standardise an encoder's frame features, then the index of the nearest k-means centre.

    ``features`` is a function ``audio (B, T) -> (B, N, D)`` (the joint embedding's ``audio_frames``);
    it is not part of this module's weights (only the statistics and the centres are). Frames are
    averaged down to ``token_rate`` per second if the encoder runs faster.

    Example::

        embedding = load_tiny_joint_embedding()
        tokenizer = SemanticTokenizer(SemanticTokenizerConfig(), embedding.audio_frames).fit(audio)
        tokens = tokenizer.encode(audio)          # (B, 50) for 2-second clips, ids in [0, 64)

    Notebook: notebooks/05_audio_language_model.ipynb
    """

    def __init__(self, config: SemanticTokenizerConfig | None = None, features: FrameFeatures | None = None) -> None:
        super().__init__()
        self.config = config = config or SemanticTokenizerConfig()
        self.features = features
        self.register_buffer("mean", torch.zeros(config.feature_dim))  # (D,)
        self.register_buffer("std", torch.ones(config.feature_dim))  # (D,)
        self.register_buffer("centers", torch.zeros(config.n_clusters, config.feature_dim))  # (K, D)
        self.register_buffer("fitted", torch.tensor(False))

    def frame_features(self, audio: Tensor, sample_rate: int = 16_000) -> Tensor:
        """Standardised features at ``token_rate``: ``(B, T) -> (B, S, D)``, S = round(T / sample_rate · token_rate)."""
        if self.features is None:
            raise ConfigError(
                "This SemanticTokenizer has no feature encoder: build it with features=embedding.audio_frames "
                "(or load it with course_lib.lm.pretrained.load_tiny_semantic_tokenizer)."
            )
        frames = self.features(audio)  # (B, N, D)
        if frames.shape[-1] != self.config.feature_dim:
            raise ConfigError(
                f"The encoder gives {frames.shape[-1]}-dimensional frames but the tokenizer expects "
                f"{self.config.feature_dim}: set SemanticTokenizerConfig(feature_dim={frames.shape[-1]})."
            )
        tokens = max(1, round(audio.shape[-1] / sample_rate * self.config.token_rate))
        if frames.shape[1] != tokens:
            frames = F.adaptive_avg_pool1d(frames.transpose(1, 2), tokens).transpose(1, 2)  # (B, S, D)
        return frames.to(self.mean.device)  # (B, S, D)

    @torch.no_grad()
    def fit(self, audio: Tensor) -> SemanticTokenizer:
        """Fit the standardisation and k-means on the frames of ``audio`` (B, T); returns ``self``."""
        frames = self.frame_features(audio).reshape(-1, self.config.feature_dim).float()  # (B·S, D)
        self.mean.copy_(frames.mean(0))
        self.std.copy_(frames.std(0).clamp_min(1e-6))
        kmeans = KMeans(self.config.n_clusters, max_iter=self.config.kmeans_iterations, seed=self.config.seed)
        kmeans.fit((frames - self.mean) / self.std)
        self.centers.copy_(kmeans.centers)
        self.fitted.fill_(True)
        self.inertia_ = kmeans.inertia_ / len(frames)
        return self

    @torch.no_grad()
    def encode(self, audio: Tensor) -> Tensor:
        """Semantic tokens of ``audio`` (B, T) at 16 kHz: LongTensor ``(B, S)``."""
        if not bool(self.fitted):
            raise ConfigError("This SemanticTokenizer is not fitted: call .fit(audio) first, or load the shipped one.")
        x = (self.frame_features(audio) - self.mean) / self.std  # (B, S, D)
        distances = torch.cdist(x, self.centers.expand(x.shape[0], -1, -1))  # (B, S, K)
        return distances.argmin(-1)  # (B, S)

    def extra_repr(self) -> str:
        return (
            f"{self.config.n_clusters} clusters of {self.config.feature_dim}-d frames at {self.config.token_rate:g} Hz"
        )


# --------------------------------------------------------------------------------------------- the chain
@dataclasses.dataclass
class AudioLMSample:
    """What :meth:`AudioLM.sample` returns: audio ``(B, T)``, semantic tokens ``(B, S)``, codes ``(B, Q, frames)``."""

    audio: Tensor
    semantic: Tensor
    codes: Tensor
    seconds: dict[str, float]


@dataclasses.dataclass
class SamplingOptions:
    """Sampling settings of one stage: temperature, top-k, top-p (AudioLM samples each stage with its own).

    Notebooks: notebooks/05_audio_language_model.ipynb, 06_text_to_music.ipynb
    """

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None


@dataclasses.dataclass
class AudioLM:
    """AudioLM's three models, its semantic tokenizer and the codec whose tokens it generates.

    Attributes:
        semantic_model, coarse_model, fine_model: the three :class:`~course_lib.lm.transformer.TokenLM`.
            The first two may be conditioned (``condition_dim > 0``, MusicLM); without a condition they
            get their null memory, i.e. they are unconditional AudioLM stages.
        tokenizer: the :class:`SemanticTokenizer` (with its encoder).
        codec: an object with ``encode(audio, n_q) -> (B, n_q, frames)``, ``decode(codes, length) -> (B, T)``,
            ``frame_rate`` and ``sample_rate`` (the course's :class:`course_lib.codec.Codec`).
        semantic, coarse, fine: the sequence layouts (:mod:`course_lib.lm.sequences`).

    Notebook: notebooks/05_audio_language_model.ipynb, 06_text_to_music.ipynb
    """

    semantic_model: TokenLM
    coarse_model: TokenLM
    fine_model: TokenLM
    tokenizer: SemanticTokenizer
    codec: Any
    semantic: SemanticSequence
    coarse: CoarseSequence
    fine: FineSequence

    @property
    def n_q(self) -> int:
        return self.coarse.n_coarse + self.fine.n_fine

    def frames(self, seconds: float) -> int:
        return round(seconds * self.codec.frame_rate)

    def semantic_tokens(self, seconds: float) -> int:
        return max(1, round(seconds * self.tokenizer.config.token_rate))

    @torch.no_grad()
    def sample(
        self,
        batch: int = 1,
        seconds: float = 2.0,
        prompt_audio: Tensor | None = None,
        condition: Tensor | None = None,
        guidance_scale: float = 1.0,
        semantic_options: SamplingOptions | None = None,
        coarse_options: SamplingOptions | None = None,
        fine_options: SamplingOptions | None = None,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
        progress: bool = False,
    ) -> AudioLMSample:
        """Run semantic → coarse → fine and decode: ``seconds`` of audio for each of ``batch`` sequences.

        Args:
            prompt_audio: ``(B, T0)`` audio to continue (its semantic tokens and codes are kept and the
                models continue them); None starts from nothing.
            condition: ``(B, D)`` joint embeddings for conditioned stages (MusicLM: M_T of a caption).
            guidance_scale: classifier-free guidance on the conditioned stages' logits.
            semantic_options, coarse_options, fine_options: each stage's sampling settings.
        """
        semantic_options = semantic_options or SamplingOptions()
        coarse_options = coarse_options or SamplingOptions()
        fine_options = fine_options or SamplingOptions()
        n_frames, n_semantic = self.frames(seconds), self.semantic_tokens(seconds)
        prompt_semantic = prompt_codes = None
        if prompt_audio is not None:
            batch = prompt_audio.shape[0]
            prompt_seconds = prompt_audio.shape[-1] / self.codec.sample_rate
            if prompt_seconds >= seconds:
                raise ConfigError(
                    f"The prompt ({prompt_seconds:.2f} s) must be shorter than the {seconds} s to generate."
                )
            prompt_semantic = self.tokenizer.encode(prompt_audio)[:, : self.semantic_tokens(prompt_seconds)]  # (B, S0)
            codes = self.codec.encode(prompt_audio.to(_module_device(self.codec)), n_q=self.n_q)  # (B, Q, frames)
            prompt_codes = codes[:, :, : self.frames(prompt_seconds)].cpu()  # (B, Q, T0)
        if condition is not None and condition.shape[0] != batch:
            raise ConfigError(f"condition has {condition.shape[0]} rows for a batch of {batch}: pass one per sequence.")
        timings = {}

        # 1. semantic tokens: p(z_t | z_<t [, M])
        started = time.perf_counter()
        prompt = self.semantic.prompt(prompt_semantic, batch)  # (B, 1 + S0)
        out = generate(
            self.semantic_model, prompt, n_semantic + 1 - prompt.shape[1], condition=condition,
            guidance_scale=guidance_scale, generator=generator, use_cache=use_cache,
            logits_processor=self.semantic.processor(n_semantic), progress=progress,
            **dataclasses.asdict(semantic_options),
        )  # fmt: skip
        semantic = self.semantic.tokens(out).cpu()  # (B, S)
        timings["semantic"] = time.perf_counter() - started

        # 2. coarse acoustic tokens: p(y_t^q | z, y_<t^≤Q', y_t^<q [, M])
        started = time.perf_counter()
        coarse_prompt = None if prompt_codes is None else prompt_codes[:, : self.coarse.n_coarse]
        prompt = self.coarse.prompt(semantic, coarse_prompt)  # (B, 2 + S + Q'·T0)
        total = n_semantic + 2 + self.coarse.n_coarse * n_frames
        out = generate(
            self.coarse_model, prompt, total - prompt.shape[1], condition=condition,
            guidance_scale=guidance_scale, generator=generator, use_cache=use_cache,
            logits_processor=self.coarse.processor(n_semantic, n_frames), progress=progress,
            **dataclasses.asdict(coarse_options),
        )  # fmt: skip
        coarse = self.coarse.codes(out.cpu(), n_semantic)  # (B, Q', T)
        timings["coarse"] = time.perf_counter() - started

        # 3. fine acoustic tokens, chunk by chunk: p(y_t^q | y^≤Q', y_<t^>Q', y_t^<q)
        started = time.perf_counter()
        fine_parts = []
        for start, stop in self.fine.chunks(n_frames):
            frames = stop - start
            known = 0 if prompt_codes is None else max(0, min(prompt_codes.shape[2], stop) - start)
            fine_known = None if not known else prompt_codes[:, self.coarse.n_coarse :, start : start + known]
            if known == frames:  # the whole chunk is the prompt's
                fine_parts.append(fine_known)
                continue
            prompt = self.fine.prompt(coarse[:, :, start:stop], fine_known)  # (B, 2 + Q'·frames [+ Qf·known])
            out = generate(
                self.fine_model, prompt, self.fine.n_fine * (frames - known), generator=generator,
                use_cache=use_cache, logits_processor=self.fine.processor(frames), progress=progress,
                **dataclasses.asdict(fine_options),
            )  # fmt: skip
            fine_parts.append(self.fine.codes(out.cpu(), frames))  # (B, Qf, frames)
        fine = torch.cat(fine_parts, dim=2)  # (B, Qf, T)
        timings["fine"] = time.perf_counter() - started

        codes = merge_coarse_fine(coarse, fine)  # (B, Q, T)
        device = _module_device(self.codec)
        audio = self.codec.decode(codes.to(device), length=round(seconds * self.codec.sample_rate)).cpu()  # (B, T)
        return AudioLMSample(audio, semantic, codes, timings)


def _module_device(module: Any) -> torch.device:
    try:
        return next(module.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


def tokens_per_second(frame_rate: float, n_q: int, semantic_rate: float = 0.0) -> float:
    """Tokens a model generates per second of audio: ``frame_rate · n_q`` acoustic + ``semantic_rate`` semantic.

    MusicLM: 50 Hz × 12 levels + 25 semantic = 625 tokens/s (the lecture's "slow inference" figure).

    Notebook: notebooks/05_audio_language_model.ipynb
    """
    if frame_rate <= 0 or n_q < 0 or semantic_rate < 0 or not math.isfinite(frame_rate):
        raise ConfigError("frame_rate must be positive and n_q, semantic_rate non-negative.")
    return frame_rate * n_q + semantic_rate
