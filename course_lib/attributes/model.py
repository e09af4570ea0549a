"""A classifier of SynthMusic's attributes, the judge behind the course's FAD embedding, Inception Score and caption adherence.

**The classifier.** A small VGG-style CNN over the log-mel spectrogram (Simonyan & Zisserman 2015;
the shape of VGGish, Hershey et al. 2017): 3×3 convolutions with batch norm, each of stride 2 in
place of VGG's max pooling (an all-convolutional net, Springenberg et al. 2015: three times faster
on a CPU here), the remaining frequency bands folded into channels, a mean and max over time, one
hidden layer, and one linear head per attribute of :attr:`course_lib.data.Clip.labels`:
instrument, drums, dynamics, mode and key. It trains on :func:`course_lib.data.splits.training_clips`
only and is tested on the held-out combinations.

**Why tempo has its own head.** Trained on the training combinations, a tempo head on the CNN's
features learns a shortcut: in training an FM bell with drums is never slow, so "FM bell + drums"
means "not slow", and on the held-out combinations (slow FM bell with drums, ...) such a head was
right only 42% of the time (99% on new clips of seen combinations). A judge of generations from
held-out captions must not have that prior. So the tempo head sees nothing but rhythm: the
autocorrelation of the onset envelope (:func:`onset_autocorrelation`), which cannot tell the
instruments apart; it reaches 94% on the held-out combinations (98% on seen ones). Mode is the
weak head (about 62%, chance 50%): a 64-band mel spectrogram blurs the semitones that separate
major from minor below 1 kHz; the key (12 classes) still reaches about 87%.

**FAD embedding.** FAD needs an audio embedding that reflects what listeners care about; MusicLM uses
VGGish, others PANN: both are the penultimate layer of a classifier of real audio. The course's
counterpart is this classifier's penultimate layer (:meth:`AttributeClassifier.embed`: the CNN's
hidden layer and the tempo head's, 96 + 32 = 128 values), trained on the attributes the captions
talk about. It is a different network from the joint embedding that conditions the generators, so
a generator is not judged by the features it was trained on.

It is the judge of the course's generators: :mod:`course_lib.metrics.classifier_scores` reads the
Inception Score and caption adherence off its outputs, :mod:`course_lib.metrics.frechet` FAD off its
embedding. The command that trains it is :mod:`course_lib.attributes.train`.

Notebooks: notebooks/06_text_to_music.ipynb, notebooks/08_latent_diffusion.ipynb.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_lib.audio.io import check_audio
from course_lib.audio.spectral import MelConfig, log_mel_spectrogram
from course_lib.config import ScaledConfig, get_device
from course_lib.data.music_theory import MODES, NOTE_NAMES, TEMPO_CLASSES
from course_lib.data.timbres import INSTRUMENTS
from course_lib.errors import AudioInputError, ConfigError
from course_lib.train.weights import load_weights, read_weights_header, shipped_weights

TINY_ATTRIBUTE_CLASSIFIER = shipped_weights("attribute_classifier_tiny.safetensors")
LOG_MEL_MEAN, LOG_MEL_STD = -6.5, 3.5  # SynthMusic's log-mel statistics (nats)
ATTRIBUTE_CLASSES: dict[str, tuple[str, ...]] = {
    "instrument": INSTRUMENTS,
    "tempo_class": TEMPO_CLASSES,
    "drums": ("without", "with"),
    "dynamics": ("soft", "medium", "loud"),
    "mode": MODES,
    "key": NOTE_NAMES,
}
"""The classifier's heads: attribute → class names, in the label order of ``Clip.labels``."""


@dataclasses.dataclass
class AttributeClassifierConfig(ScaledConfig):
    """Sizes of the classifier; defaults are the ``tiny`` preset.

    ``channels`` per CNN block (each halves time and frequency); ``embedding_dim`` is the CNN's hidden
    layer, ``tempo_dim`` the tempo head's (the FAD embedding is both: ``embedding_dim + tempo_dim``);
    ``tempo_lags`` the first and last lag, in frames of 10 ms, of the onset autocorrelation (0.1 to
    1.1 s: eighth notes at 160 BPM up to a beat at 55 BPM).
    """

    sample_rate: int = 16_000
    n_mels: int = 64
    n_fft: int = 1024
    hop_length: int = 160
    channels: tuple[int, ...] = (16, 32, 64, 128)
    embedding_dim: int = 96
    tempo_dim: int = 32
    tempo_lags: tuple[int, int] = (10, 110)
    dropout: float = 0.2
    attributes: tuple[str, ...] = tuple(ATTRIBUTE_CLASSES)
    full_overrides: ClassVar[dict] = {"channels": (32, 64, 128, 256), "embedding_dim": 192, "tempo_dim": 64}

    @property
    def mel(self) -> MelConfig:
        return MelConfig(self.sample_rate, self.n_fft, self.hop_length, self.n_mels)


def onset_autocorrelation(log_mel: Tensor, lags: tuple[int, int] = (10, 110)) -> Tensor:
    """How periodic the onsets are: the autocorrelation of the spectral-flux onset envelope at lags ``lags[0] … lags[1]``.

    The onset envelope is the half-wave rectified frame-to-frame rise of the log-mel spectrogram,
    averaged over bands (spectral flux; Bello et al. 2005), standardised per clip; its autocorrelation
    ``r(l) = mean_t o(t) o(t + l)`` peaks at the beat period and its multiples, the classic
    tempo feature (Ellis 2007, "Beat tracking by dynamic programming"; Percival & Tzanetakis 2014).
    Computed with a zero-padded FFT (Wiener–Khinchin), so all lags cost one transform.

    Args:
        log_mel: ``(B, M, F)`` log-mel spectrograms.
        lags: first and last lag in frames (inclusive).

    Returns:
        ``(B, lags[1] − lags[0] + 1)``; lags longer than the clip read 0.
    """
    onset = (log_mel[..., 1:] - log_mel[..., :-1]).clamp_min(0).mean(dim=-2).float()  # (B, F-1)
    onset = onset - onset.mean(dim=-1, keepdim=True)
    onset = onset / onset.std(dim=-1, keepdim=True).clamp_min(1e-6)  # (B, n) zero mean, unit variance
    n = onset.shape[-1]
    power = torch.fft.rfft(onset, n=2 * n).abs().pow(2)  # (B, n + 1): zero padding makes it linear, not circular
    sums = torch.fft.irfft(power, n=2 * n)[..., :n]  # (B, n): Σ_t o(t) o(t + l) for l = 0 … n − 1
    acf = sums / (n - torch.arange(n, device=onset.device))  # (B, n): the mean over the overlap
    if n <= lags[1]:
        acf = F.pad(acf, (0, lags[1] + 1 - n))  # (B, lags[1] + 1)
    return acf[..., lags[0] : lags[1] + 1]  # (B, L)


class AttributeClassifier(nn.Module):
    """Log-mel CNN with one head per SynthMusic attribute, and a tempo head on onset periodicity (module docstring).

    Example::

        clf = load_tiny_attribute_classifier()
        clf.predict(audio)        # {"instrument": (B,), "tempo_class": (B,), ...} label ints
        clf.probabilities(audio)  # {"instrument": (B, 3), ...}
        clf.embed(audio)          # (B, E): the FAD embedding
    """

    def __init__(self, config: AttributeClassifierConfig | None = None) -> None:
        super().__init__()
        self.config = config or AttributeClassifierConfig()
        unknown = [name for name in self.config.attributes if name not in ATTRIBUTE_CLASSES]
        if unknown:
            raise ConfigError(f"unknown attribute(s) {unknown}: choose from {', '.join(ATTRIBUTE_CLASSES)}.")
        blocks: list[nn.Module] = []
        previous = 1
        for channels in self.config.channels:
            blocks += [nn.Conv2d(previous, channels, 3, stride=2, padding=1), nn.BatchNorm2d(channels), nn.ReLU()]
            previous = channels
        self.features = nn.Sequential(*blocks)
        bands = self.config.n_mels
        for _ in self.config.channels:
            bands = (bands - 1) // 2 + 1  # what a stride-2, padding-1, 3x3 convolution leaves
        self.embedding = nn.Sequential(nn.Linear(2 * previous * bands, self.config.embedding_dim), nn.ReLU())
        n_lags = self.config.tempo_lags[1] - self.config.tempo_lags[0] + 1
        self.tempo_embedding = nn.Sequential(nn.Linear(n_lags, self.config.tempo_dim), nn.ReLU())
        self.dropout = nn.Dropout(self.config.dropout)
        self.heads = nn.ModuleDict(
            {
                name: nn.Linear(
                    self.config.tempo_dim if name == "tempo_class" else self.config.embedding_dim,
                    len(ATTRIBUTE_CLASSES[name]),
                )
                for name in self.config.attributes
            }
        )

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def log_mel(self, audio: Tensor) -> Tensor:
        """``(B, T)`` → ``(B, n_mels, frames)`` natural-log mel spectrogram (the classifier's input)."""
        return log_mel_spectrogram(audio, self.config.mel)

    def hidden(self, log_mel: Tensor) -> tuple[Tensor, Tensor]:
        """The two hidden layers from log-mel ``(B, M, F)``: the CNN's ``(B, embedding_dim)`` and the tempo head's ``(B, tempo_dim)``."""
        x = ((log_mel - LOG_MEL_MEAN) / LOG_MEL_STD).unsqueeze(1)  # (B, 1, M, F)
        x = self.features(x)  # (B, C, M', F')
        x = x.flatten(1, 2)  # (B, C·M', F'): frequency bands become channels
        pooled = torch.cat([x.mean(dim=-1), x.amax(dim=-1)], dim=1)  # (B, 2·C·M')
        rhythm = onset_autocorrelation(log_mel, self.config.tempo_lags).to(pooled.dtype)  # (B, L)
        return self.embedding(pooled), self.tempo_embedding(rhythm)  # (B, E1), (B, E2)

    def embed_log_mel(self, log_mel: Tensor) -> Tensor:
        """The penultimate layer ``(B, embedding_dim + tempo_dim)`` from log-mel ``(B, M, F)`` (gradients flow)."""
        return torch.cat(self.hidden(log_mel), dim=1)  # (B, E)

    def forward(self, log_mel: Tensor) -> dict[str, Tensor]:
        """Logits per attribute, ``{name: (B, K)}``, from log-mel ``(B, M, F)``; tempo from the tempo head only."""
        timbre, rhythm = self.hidden(log_mel)  # (B, E1), (B, E2)
        timbre, rhythm = self.dropout(timbre), self.dropout(rhythm)
        return {name: head(rhythm if name == "tempo_class" else timbre) for name, head in self.heads.items()}

    @torch.no_grad()
    def embed(self, audio: Tensor, batch_size: int = 64) -> Tensor:
        """The FAD embedding: ``(B, T)`` audio at 16 kHz → ``(B, E)`` penultimate-layer features (on the CPU)."""
        return torch.cat([self.embed_log_mel(self.log_mel(chunk)).cpu() for chunk in self._chunks(audio, batch_size)])

    @torch.no_grad()
    def probabilities(self, audio: Tensor, batch_size: int = 64) -> dict[str, Tensor]:
        """``p(y | x)`` per attribute: ``{name: (B, K)}`` softmax probabilities (on the CPU)."""
        parts = [self(self.log_mel(chunk)) for chunk in self._chunks(audio, batch_size)]
        return {name: torch.cat([p[name] for p in parts]).softmax(dim=-1).cpu() for name in self.heads}

    def predict(self, audio: Tensor, batch_size: int = 64) -> dict[str, Tensor]:
        """The most likely class per attribute: ``{name: (B,)}`` label ints, as in ``Clip.labels``."""
        return {name: p.argmax(dim=-1) for name, p in self.probabilities(audio, batch_size).items()}

    def accuracy(self, audio: Tensor, labels: dict[str, Tensor]) -> dict[str, float]:
        """Accuracy per attribute on clips with known labels (``ClipBatch.labels``)."""
        predicted = self.predict(audio)
        return {name: (predicted[name] == labels[name].cpu()).float().mean().item() for name in predicted}

    def _chunks(self, audio: Tensor, batch_size: int) -> list[Tensor]:
        if self.training:
            raise ConfigError("call classifier.eval() before measuring with it (batch norm must use its statistics).")
        check_audio(audio)
        if audio.dim() == 3 and audio.shape[1] == 1:
            audio = audio[:, 0]  # (B, T)
        if audio.dim() == 1:
            audio = audio[None]  # (1, T)
        if audio.dim() != 2 or audio.shape[-1] < self.config.n_fft:
            raise AudioInputError(
                f"the attribute classifier takes mono clips (B, T) of at least {self.config.n_fft} "
                f"samples at {self.sample_rate} Hz, got shape {tuple(audio.shape)}."
            )
        return list(audio.to(self.device, torch.float32).split(batch_size))


def load_attribute_classifier(path: str | Path, device: str | torch.device | None = None) -> AttributeClassifier:
    """Load weights written by :mod:`course_lib.attributes.train`, in eval mode, on ``device``.

    Raises:
        CheckpointError: missing, cut-short or corrupt file, or another model's weights.
    """
    fix = (
        f"re-create it with `python -m course_lib.attributes.train --scale tiny --out {path}` "
        "(see README.md, 'Shipped checkpoints')"
    )
    config = read_weights_header(path, "AttributeClassifier", fix=fix).config or {}
    config = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
    model = AttributeClassifier(AttributeClassifierConfig(**config))
    model.metadata = load_weights(path, model)  # the training figures stored with the weights
    return model.to(get_device(device)).eval()


def load_tiny_attribute_classifier(device: str | torch.device | None = None) -> AttributeClassifier:
    """The shipped tiny attribute classifier (``course_lib/checkpoints/attribute_classifier_tiny.safetensors``), in eval mode.

    Its ``.metadata`` holds its accuracy per attribute on held-out and validation clips.

    Notebooks: notebooks/06_text_to_music.ipynb, 08_latent_diffusion.ipynb
    """
    return load_attribute_classifier(TINY_ATTRIBUTE_CLASSIFIER, device)
