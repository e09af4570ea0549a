"""A joint audio–text embedding in the style of MuLan and CLAP: two towers, one shared space, a contrastive loss.

MuLan (Huang et al. 2022, "MuLan: A Joint Embedding of Music Audio and Natural Language") and CLAP
(Elizalde et al. 2023, "CLAP: Learning Audio Concepts from Natural Language Supervision"; Wu et al.
2023, "Large-scale Contrastive Language-Audio Pretraining") train an **audio encoder** f and a **text
encoder** g so that a clip and its description land close together in one D-dimensional space:

    a_i = f(x_i) / ‖f(x_i)‖,   t_i = g(y_i) / ‖g(y_i)‖          (both on the unit sphere)

For a batch of B matching pairs the similarity logits are ``s_ij = exp(τ) · a_iᵀ t_j`` with a learnt
log-temperature τ (CLIP's, Radford et al. 2021), and the loss is the symmetric InfoNCE (van den Oord
et al. 2018; MuLan's eq. 1, CLAP's eq. 3): a B-way classification of the right caption for each clip
and of the right clip for each caption,

    L = ½ [ −1/B Σ_i log softmax_j(s_ij)_i  −  1/B Σ_j log softmax_i(s_ij)_j ]

Every other pair in the batch serves as a negative; that is all the supervision there is, no labels.

Why generators want it (MusicLM, AudioLDM; the lecture's trick): a model trained to generate audio
*from the audio embedding of that same audio* ``a = f(x)`` needs no captions at all, and at inference
it is given the *text* embedding ``t = g(y)`` of a caption instead; this works to the extent that
matching ``a`` and ``t`` are close. :func:`course_lib.joint_embedding.embedding_gap` measures how close.

The course's towers are small: the audio encoder reads a log-mel spectrogram (16 kHz, hop 160),
a convolutional front end down-samples it to 25 frames per second (AudioLM's semantic-token rate),
a transformer encoder relates the frames (tempo is a relation between onsets a beat apart), and the
frames are averaged; the text encoder embeds word tokens (:mod:`course_lib.joint_embedding.tokenizer`),
runs a transformer encoder and averages over the tokens. A linear projection maps each tower to D.

Notebook: notebooks/06_text_to_music.ipynb (retrieval on held-out captions); used by
notebooks/08_latent_diffusion.ipynb (AudioLDM's conditioning).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_lib.audio.io import check_audio
from course_lib.audio.spectral import MelConfig, log_mel_spectrogram
from course_lib.config import ScaledConfig, get_device
from course_lib.errors import AudioInputError, CheckpointError
from course_lib.joint_embedding.tokenizer import CaptionTokenizer, caption_vocabulary
from course_lib.train.distributed import gather_with_grad
from course_lib.train.weights import load_weights, read_weights_header, shipped_weights

TINY_JOINT_EMBEDDING = shipped_weights("joint_embedding_tiny.safetensors")
LOG_MEL_MEAN, LOG_MEL_STD = (
    -6.5,
    3.5,
)  # SynthMusic's log-mel statistics (nats): inputs to about zero mean, unit variance


@dataclasses.dataclass
class JointEmbeddingConfig(ScaledConfig):
    """Sizes of the two towers and of the shared space; defaults are the ``tiny`` preset.

    ``dim`` is D, the size of the shared space (MuLan uses 128); ``downsample`` halves the mel frame
    rate that many times (100 → 25 frames per second at 2); ``init_temperature`` is CLIP's 0.07.
    """

    sample_rate: int = 16_000
    n_mels: int = 64
    n_fft: int = 1024
    hop_length: int = 160
    audio_channels: int = 128
    audio_layers: int = 2
    downsample: int = 2
    text_channels: int = 128
    text_layers: int = 2
    heads: int = 4
    dim: int = 128
    max_tokens: int = 32
    vocab_size: int = len(caption_vocabulary())
    dropout: float = 0.1
    init_temperature: float = 0.07
    full_overrides: ClassVar[dict] = {"audio_channels": 256, "audio_layers": 4, "text_channels": 256, "text_layers": 4}

    @property
    def mel(self) -> MelConfig:
        return MelConfig(self.sample_rate, self.n_fft, self.hop_length, self.n_mels)


def sinusoidal_positions(length: int, channels: int, device: torch.device | None = None) -> Tensor:
    """The transformer's fixed position code (Vaswani et al. 2017, sec. 3.5): ``(length, channels)``.

    Fixed rather than learnt, so the audio tower takes clips of any length."""
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]  # (N, 1)
    frequency = torch.exp(torch.arange(0, channels, 2, device=device) * (-math.log(10_000.0) / channels))  # (C/2,)
    angles = position * frequency  # (N, C/2)
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)  # (N, C)


def _encoder(channels: int, layers: int, heads: int, dropout: float) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        channels, heads, 2 * channels, dropout, activation="gelu", batch_first=True, norm_first=True
    )
    return nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(channels), enable_nested_tensor=False)


class AudioTower(nn.Module):
    """Log-mel ``(B, M, F)`` → frame features ``(B, N, C)`` at ``100 / 2^downsample`` frames per second."""

    def __init__(self, config: JointEmbeddingConfig) -> None:
        super().__init__()
        c = config.audio_channels
        blocks: list[nn.Module] = []
        for i in range(config.downsample):  # each strided convolution halves the frame rate
            blocks += [
                nn.Conv1d(config.n_mels if i == 0 else c, c, 4, stride=2, padding=1),
                nn.GroupNorm(1, c),
                nn.GELU(),
            ]
        self.front_end = nn.Sequential(*blocks)
        self.transformer = _encoder(c, config.audio_layers, config.heads, config.dropout)

    def forward(self, log_mel: Tensor) -> Tensor:
        x = (log_mel - LOG_MEL_MEAN) / LOG_MEL_STD  # (B, M, F)
        x = self.front_end(x).transpose(1, 2)  # (B, N, C)
        x = x + sinusoidal_positions(x.shape[1], x.shape[2], x.device)  # (B, N, C)
        return self.transformer(x)  # (B, N, C)


class TextTower(nn.Module):
    """Token ids ``(B, L)`` and their mask → token features ``(B, L, C)``."""

    def __init__(self, config: JointEmbeddingConfig) -> None:
        super().__init__()
        c = config.text_channels
        self.tokens = nn.Embedding(config.vocab_size, c)
        self.positions = nn.Parameter(torch.randn(config.max_tokens, c) * 0.02)  # learnt: captions are short
        self.transformer = _encoder(c, config.text_layers, config.heads, config.dropout)

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        x = self.tokens(ids) + self.positions[: ids.shape[1]]  # (B, L, C)
        return self.transformer(x, src_key_padding_mask=~mask)  # (B, L, C)


class JointEmbedding(nn.Module):
    """Two towers and their projections into one l2-normalised D-dimensional space (see the module docstring).

    Example::

        model = load_tiny_joint_embedding()
        a = model.embed_audio(audio)                      # (B, T) at 16 kHz -> (B, D)
        t = model.embed_text(["a slow FM-bell melody in C major with drums"])  # (1, D)
        (a @ t.T).squeeze(1)                              # cosine similarity of each clip to the caption

    Attributes:
        dim: D, the size of the shared space.
        sample_rate: the rate ``embed_audio`` expects (16 kHz).
        frame_rate: frames per second of :meth:`audio_frames`.
    """

    def __init__(self, config: JointEmbeddingConfig | None = None) -> None:
        super().__init__()
        self.config = config or JointEmbeddingConfig()
        self.tokenizer = CaptionTokenizer(self.config.max_tokens)
        if len(self.tokenizer) != self.config.vocab_size:
            raise CheckpointError(
                f"this config has vocab_size {self.config.vocab_size} but the tokenizer has {len(self.tokenizer)} words: "
                "the caption vocabulary changed since the weights were made; retrain with "
                "python -m course_lib.joint_embedding.train."
            )
        self.audio_tower = AudioTower(self.config)
        self.text_tower = TextTower(self.config)
        self.audio_projection = nn.Linear(self.config.audio_channels, self.config.dim)
        self.text_projection = nn.Linear(self.config.text_channels, self.config.dim)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / self.config.init_temperature)))

    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.config.sample_rate / self.config.hop_length / 2**self.config.downsample

    @property
    def device(self) -> torch.device:
        return self.log_scale.device

    @property
    def logit_scale(self) -> Tensor:
        """``exp(τ)``, capped at 100 as in CLIP so the logits cannot blow up."""
        return self.log_scale.exp().clamp(max=100.0)

    # ------------------------------------------------------------------------------ training path
    def log_mel(self, audio: Tensor) -> Tensor:
        """The audio tower's input: ``(B, T)`` → ``(B, n_mels, T // hop + 1)`` log-mel (natural log)."""
        return log_mel_spectrogram(audio, self.config.mel)  # (B, M, F)

    def encode_log_mel(self, log_mel: Tensor) -> Tensor:
        """Audio embeddings ``(B, D)``, l2-normalised, from log-mel ``(B, M, F)`` (gradients flow)."""
        frames = self.audio_tower(log_mel)  # (B, N, C)
        return F.normalize(self.audio_projection(frames.mean(dim=1)), dim=-1)  # (B, D)

    def encode_tokens(self, ids: Tensor, mask: Tensor) -> Tensor:
        """Text embeddings ``(B, D)``, l2-normalised, from token ids and mask ``(B, L)`` (gradients flow)."""
        tokens = self.text_tower(ids, mask)  # (B, L, C)
        weights = mask.unsqueeze(-1).to(tokens.dtype)  # (B, L, 1)
        pooled = (tokens * weights).sum(dim=1) / weights.sum(dim=1)  # (B, C): the mean over real tokens
        return F.normalize(self.text_projection(pooled), dim=-1)  # (B, D)

    def forward(self, log_mel: Tensor, ids: Tensor, mask: Tensor) -> Tensor:
        """Similarity logits ``s_ij = exp(τ) a_iᵀ t_j`` of B clips and B captions: ``(B, B)``, clips along rows.

        In training under ``torchrun`` each process embeds its slice and the embeddings of all
        processes are gathered (:func:`course_lib.train.distributed.gather_with_grad`): the logits
        are those of the whole global batch ``(N·B, N·B)``, so every clip has the same negatives as
        in one process, and the contrastive loss does not depend on the number of GPUs.
        """
        audio = self.encode_log_mel(log_mel)  # (B, D)
        text = self.encode_tokens(ids, mask)  # (B, D)
        if self.training:
            audio, text = gather_with_grad(audio), gather_with_grad(text)  # (N·B, D) under torchrun
        return self.logit_scale * audio @ text.T  # (B, B)

    # ----------------------------------------------------------------------------- inference path
    @torch.no_grad()
    def embed_audio(self, audio: Tensor, batch_size: int = 64) -> Tensor:
        """``(B, T)`` (or ``(T,)``, ``(B, 1, T)``) float audio at 16 kHz → ``(B, D)`` l2-normalised embeddings.

        Runs without gradients, in batches of ``batch_size`` clips, on the model's device; clips of any
        length of at least 1,024 samples (the frames are averaged). This is MusicLM's ``M_A`` and
        AudioLDM's ``E^x``: what a generator is trained on.
        """
        return torch.cat([self.encode_log_mel(self.log_mel(chunk)) for chunk in self._audio_chunks(audio, batch_size)])

    @torch.no_grad()
    def audio_frames(self, audio: Tensor, batch_size: int = 64) -> Tensor:
        """The audio tower's frame features before pooling: ``(B, T)`` → ``(B, N, C)`` at :attr:`frame_rate` Hz.

        Features trained to carry what captions describe (instrument, tempo, drums, dynamics), not
        to reconstruct the waveform: candidates for AudioLM-style semantic tokens (k-means over them).
        """
        return torch.cat([self.audio_tower(self.log_mel(chunk)) for chunk in self._audio_chunks(audio, batch_size)])

    @torch.no_grad()
    def embed_text(self, captions: Sequence[str] | str) -> Tensor:
        """Captions → ``(B, D)`` l2-normalised embeddings (MusicLM's ``M_T``, AudioLDM's ``E^y``).

        Any text works: unknown words become ``[UNK]`` (see :mod:`course_lib.joint_embedding.tokenizer`);
        a single string is a batch of one.
        """
        ids, mask = self.tokenizer(captions, self.device)  # (B, L), (B, L)
        return self.encode_tokens(ids, mask)  # (B, D)

    def _audio_chunks(self, audio: Tensor, batch_size: int) -> list[Tensor]:
        check_audio(audio)
        if audio.dim() == 3 and audio.shape[1] == 1:
            audio = audio[:, 0]  # (B, T)
        if audio.dim() == 1:
            audio = audio[None]  # (1, T)
        if audio.dim() != 2:
            raise AudioInputError(
                f"embed_audio takes mono clips as (B, T) (or (T,), (B, 1, T)), got shape {tuple(audio.shape)}: "
                "mix stereo down with course_lib.audio.to_mono and stack clips of one length."
            )
        if audio.shape[-1] < self.config.n_fft:
            raise AudioInputError(
                f"clips of {audio.shape[-1]} samples are too short for the audio tower: it needs at least "
                f"{self.config.n_fft} samples ({self.config.n_fft / self.sample_rate:.3f} s at {self.sample_rate} Hz)."
            )
        audio = audio.to(self.device, torch.float32)
        return list(audio.split(batch_size))


def contrastive_loss(logits: Tensor) -> Tensor:
    """The symmetric InfoNCE loss of a ``(B, B)`` similarity matrix whose diagonal holds the matching pairs.

    ``½ (CE(s, I) + CE(sᵀ, I))``: clip → caption and caption → clip classification (MuLan eq. 1;
    CLAP eq. 3; CLIP's pseudo-code). Its value for random embeddings is about ``log B``.
    """
    targets = torch.arange(logits.shape[0], device=logits.device)  # (B,)
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))


def load_joint_embedding(path: str | Path, device: str | torch.device | None = None) -> JointEmbedding:
    """Load weights written by :mod:`course_lib.joint_embedding.train`, in eval mode, on ``device``.

    Raises:
        CheckpointError: missing, cut-short or corrupt file, or another model's weights.
    """
    model = JointEmbedding(JointEmbeddingConfig(**read_config(path)))
    model.metadata = load_weights(path, model)  # the training figures stored with the weights
    return model.to(get_device(device)).eval()


def read_config(path: str | Path) -> dict:
    """The model config stored in the header of a joint embedding's weights file."""
    fix = (
        f"re-create it with `python -m course_lib.joint_embedding.train --scale tiny --out {path}` "
        "(see README.md, 'Shipped checkpoints')"
    )
    return dict(read_weights_header(path, "JointEmbedding", fix=fix).config or {})


def load_tiny_joint_embedding(device: str | torch.device | None = None) -> JointEmbedding:
    """The shipped tiny joint embedding (``course_lib/checkpoints/joint_embedding_tiny.safetensors``), in eval mode.

    Trained by ``python -m course_lib.joint_embedding.train --scale tiny`` on
    :func:`course_lib.data.splits.training_clips` (no held-out combination); its metadata (``.metadata``)
    holds the retrieval figures it reached on held-out clips.

    Args:
        device: where to put it (default :func:`course_lib.config.get_device`).

    Notebooks: notebooks/05_audio_language_model.ipynb, 06_text_to_music.ipynb, 08_latent_diffusion.ipynb
    """
    return load_joint_embedding(TINY_JOINT_EMBEDDING, device)
