"""The language models' data: SynthMusic clips turned into codec codes, semantic tokens and joint embeddings, once.

A language model never sees audio: it sees the codec's codes ``(N, Q, frames)`` (chapter 04), AudioLM's
semantic tokens ``(N, S)`` and, for MusicLM, each clip's audio embedding M_A ``(N, D)`` (chapter 06).
Computing them costs a pass of the codec and of the joint embedding over every clip, so
:func:`prepare_token_data` does it in blocks and, by default, caches the result in the course's data
directory (``$COURSE_DATA/lm_tokens/``), keyed by the clips and by fingerprints of the models'
weights: the four training recipes share one pass, and a changed codec never reuses stale tokens.

Training clips come from :func:`course_lib.data.splits.training_indices` (no held-out attribute
combination, so chapter 06's unseen captions stay unseen); validation clips are new clips of the
training combinations (another seed).

:func:`random_batches` draws training batches as a function of the step only (seeded with the step),
so a run is reproducible and resumable.

Notebooks: notebooks/05_audio_language_model.ipynb, 06_text_to_music.ipynb
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors import safe_open
from torch import Tensor

from course_lib.atomic import atomic_write
from course_lib.config import data_dir
from course_lib.data import SynthMusic
from course_lib.data.batches import step_generator
from course_lib.data.splits import CLIP_SECONDS, HELD_OUT_SEED, SAMPLE_RATE, TRAINING_SEED, training_indices
from course_lib.errors import CheckpointError, ConfigError
from course_lib.train.weights import read_safetensors_metadata

SPLITS = ("training", "validation", "held_out")
CACHE_VERSION = 1


@dataclasses.dataclass
class TokenData:
    """Tokens of N clips: ``codes`` (N, Q, frames), ``semantic`` (N, S) or None, ``embeddings`` (N, D) or None.

    ``labels`` are the clips' label ints (``Clip.labels``), ``captions`` their captions, ``indices`` the
    SynthMusic indices of seed ``seed``.
    """

    codes: Tensor
    semantic: Tensor | None
    embeddings: Tensor | None
    labels: dict[str, Tensor]
    captions: list[str]
    indices: list[int]
    seed: int

    def __len__(self) -> int:
        return self.codes.shape[0]

    def subset(self, rows: Tensor | list[int]) -> TokenData:
        """The clips at ``rows`` (a list or LongTensor of row numbers)."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        pick = lambda x: None if x is None else x[rows]  # noqa: E731
        chosen = rows.tolist()
        return TokenData(
            pick(self.codes), pick(self.semantic), pick(self.embeddings),
            {name: value[rows] for name, value in self.labels.items()},
            [self.captions[i] for i in chosen], [self.indices[i] for i in chosen], self.seed,
        )  # fmt: skip


def split_indices(split: str, n_clips: int) -> tuple[int, list[int]]:
    """``(seed, indices)`` of the first ``n_clips`` clips of a split (see :mod:`course_lib.data.splits`)."""
    if split not in SPLITS:
        raise ConfigError(f"Unknown split {split!r}: use one of {', '.join(SPLITS)}.")
    if split == "training":
        return TRAINING_SEED, training_indices(n_clips, TRAINING_SEED)
    if split == "validation":
        return HELD_OUT_SEED, training_indices(n_clips, HELD_OUT_SEED)
    return HELD_OUT_SEED, training_indices(n_clips, HELD_OUT_SEED, held_out=True)


def weights_fingerprint(module: Any) -> str:
    """A short SHA-256 of a module's floating-point weights (its ``fingerprint()`` if it has one)."""
    if module is None:
        return "none"
    if hasattr(module, "fingerprint"):
        return str(module.fingerprint())
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


@torch.no_grad()
def prepare_token_data(
    n_clips: int,
    codec: Any | None,
    n_q: int,
    split: str = "training",
    tokenizer: Any | None = None,
    embedding: Any | None = None,
    block: int = 64,
    cache: bool = True,
    progress: bool = False,
) -> TokenData:
    """Render ``n_clips`` clips of ``split`` and compute their codes, semantic tokens and audio embeddings.

    Args:
        codec: ``encode(audio, n_q) -> (B, n_q, frames)`` (the course's codec), or None: no codes
            (``codes`` is then ``(N, 0, 0)``; the semantic stage needs none).
        n_q: residual levels to keep.
        tokenizer: a fitted :class:`course_lib.lm.audiolm.SemanticTokenizer`, or None (no semantic tokens).
        embedding: the joint embedding (``embed_audio``), or None (no M_A).
        block: clips rendered and encoded at once (memory: block × 32,000 floats).
        cache: read/write ``$COURSE_DATA/lm_tokens/<key>.safetensors``.

    Notebook: notebooks/05_audio_language_model.ipynb, 06_text_to_music.ipynb
    """
    seed, indices = split_indices(split, n_clips)
    key = json.dumps(
        {
            "version": CACHE_VERSION, "split": split, "n": n_clips, "n_q": n_q,
            "codec": weights_fingerprint(codec), "tokenizer": weights_fingerprint(tokenizer),
            "embedding": weights_fingerprint(embedding), "seconds": CLIP_SECONDS,
        },
        sort_keys=True,
    )  # fmt: skip
    path = data_dir() / "lm_tokens" / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.safetensors"
    if cache and path.is_file():
        return _read(path, indices, seed)
    dataset = SynthMusic(n_clips=indices[-1] + 1, seconds=CLIP_SECONDS, sample_rate=SAMPLE_RATE, seed=seed)
    codes, semantic, embeddings, captions = [], [], [], []
    labels: dict[str, list[Tensor]] = {}
    from tqdm.auto import tqdm

    for start in tqdm(range(0, len(indices), block), disable=not progress, desc="tokenizing clips", unit="block"):
        batch = SynthMusic.collate([dataset[i] for i in indices[start : start + block]])
        if codec is not None:
            codes.append(codec.encode(batch.audio.to(_device(codec)), n_q=n_q).cpu().short())  # (b, Q, frames)
        if tokenizer is not None:
            semantic.append(tokenizer.encode(batch.audio.to(_device(tokenizer))).cpu().short())  # (b, S)
        if embedding is not None:
            embeddings.append(embedding.embed_audio(batch.audio).cpu().float())  # (b, D)
        captions += batch.captions
        for name, value in batch.labels.items():
            labels.setdefault(name, []).append(value)
    tensors = {"codes": torch.cat(codes) if codes else torch.zeros(len(indices), 0, 0, dtype=torch.short)}
    if semantic:
        tensors["semantic"] = torch.cat(semantic)
    if embeddings:
        tensors["embeddings"] = torch.cat(embeddings)
    tensors.update({f"label.{name}": torch.cat(values) for name, values in labels.items()})
    if cache:
        data = safetensors.torch.save(tensors, metadata={"key": key, "captions": json.dumps(captions)})
        atomic_write(path, lambda file: file.write(data))
    return _from_tensors(tensors, captions, indices, seed)


def _read(path: Path, indices: list[int], seed: int) -> TokenData:
    fix = f"delete {path}; the next run rebuilds it"
    header = read_safetensors_metadata(path, fix, noun="token cache")  # a cut-short cache is a clear error
    if "captions" not in header:
        raise CheckpointError(f"{path} is not a token cache of prepare_token_data (no captions). Fix: {fix}.")
    captions = json.loads(header["captions"])
    with safe_open(path, framework="pt", device="cpu") as file:
        tensors = {name: file.get_tensor(name) for name in file.keys()}
    return _from_tensors(tensors, captions, indices, seed)


def _from_tensors(tensors: dict[str, Tensor], captions: list[str], indices: list[int], seed: int) -> TokenData:
    labels = {name.split(".", 1)[1]: value for name, value in tensors.items() if name.startswith("label.")}
    semantic = tensors.get("semantic")
    return TokenData(
        tensors["codes"].long(), None if semantic is None else semantic.long(), tensors.get("embeddings"),
        labels, captions, indices, seed,
    )  # fmt: skip


def _device(module: Any) -> torch.device:
    try:
        return next(module.parameters()).device
    except (AttributeError, StopIteration):
        try:
            return next(module.buffers()).device
        except (AttributeError, StopIteration):
            return torch.device("cpu")


def random_batches(
    n_items: int, batch_size: int, make: Callable[[Tensor, torch.Generator], Any], seed: int = 0
) -> Callable[[int], Any]:
    """A ``step -> batch`` function for ``Trainer.fit``: ``make(rows, generator)`` on random rows.

    The rows and every other draw ``make`` takes from the generator depend only on ``(seed, step)``.
    """

    def batch_at(step: int) -> Any:
        generator = step_generator(seed, step)
        rows = torch.randint(n_items, (batch_size,), generator=generator)  # (B,)
        return make(rows, generator)

    return batch_at
