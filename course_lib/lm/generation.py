"""Autoregressive generation: a key/value cache, temperature, top-k and top-p sampling, guidance on the logits.

A language model gives p(x_t | x_<t); generating means drawing x_t, appending it, and asking again.

- **The key/value cache.** Without it every step runs the model over the whole sequence so far, to
  use only the last position's output: step t costs t positions, T steps cost about T²/2. With it, the
  keys and values that each layer computed for earlier positions are kept (they never change: a
  causal model's position i only depends on positions ≤ i), so each step runs the model on *one* new
  position, which attends to the cached keys. Same logits, same tokens; :func:`generate` does both
  (``use_cache=True`` / ``False``), and the tests check they give identical tokens.
- **Sampling filters** (small pure functions on logits, applied in this order):
  temperature τ divides the logits (softmax(z/τ): τ < 1 sharpens, τ > 1 flattens, τ = 0 is greedy);
  top-k keeps the k largest logits (Fan et al. 2018); top-p keeps the smallest set of most likely
  tokens whose probability adds up to at least p ("nucleus sampling", Holtzman et al. 2020).
- **Seeded draws.** A token is drawn by inverting the cumulative distribution at a uniform number
  from a ``torch.Generator``: each step uses exactly one uniform number per token, so the same seed
  gives the same tokens with and without the cache.
- **Classifier-free guidance on the logits** (Ho & Salimans 2022, applied to token logits as in
  MusicGen): ``ℓ̃ = ℓ(x | ∅) + w · (ℓ(x | c) − ℓ(x | ∅))``, the conditional and unconditional logits
  from one forward pass over a doubled batch.

Notebooks: notebooks/05_audio_language_model.ipynb, 06_text_to_music.ipynb
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from course_lib.errors import ConfigError
from course_lib.lm.transformer import TokenLM

LogitsProcessor = Callable[[int, Tensor], Tensor]


# ---------------------------------------------------------------------------------------------- filters
def apply_temperature(logits: Tensor, temperature: float) -> Tensor:
    """``logits / temperature`` (τ > 0). τ → 0 approaches greedy decoding (use ``temperature=0`` for argmax).

    Notebook: notebooks/05_audio_language_model.ipynb
    """
    if temperature <= 0:
        raise ConfigError(
            f"temperature must be > 0 here (got {temperature}); use temperature=0 in sample_from_logits for greedy."
        )
    return logits / temperature


def top_k_filter(logits: Tensor, k: int | None) -> Tensor:
    """Keep the ``k`` largest logits of each row (last dimension), set the others to −∞.

    ``k=None`` or ``k ≥ V`` keeps everything. Ties at the k-th value are all kept.

    Example: ``top_k_filter(tensor([1., 3., 2.]), 2) -> tensor([-inf, 3., 2.])``.

    Notebook: notebooks/05_audio_language_model.ipynb
    """
    if k is None or k >= logits.shape[-1]:
        return logits
    if k < 1:
        raise ConfigError(f"top_k must be at least 1 (or None for no filter), got {k}.")
    kth_largest = logits.topk(k, dim=-1).values[..., -1:]  # (..., 1)
    return logits.masked_fill(logits < kth_largest, float("-inf"))  # (..., V)


def top_p_filter(logits: Tensor, p: float | None) -> Tensor:
    """Nucleus filter: keep the smallest set of most likely tokens whose probabilities sum to at least ``p``.

    Sorted by probability, token i is kept when the tokens before it hold less than ``p``
    (so the most likely token is always kept); the others are set to −∞. ``p=None`` or ``p ≥ 1``
    keeps everything.

    Example: probabilities (0.5, 0.3, 0.2) with p = 0.7 keep the first two (0.5 < 0.7, 0.8 ≥ 0.7).

    Notebook: notebooks/05_audio_language_model.ipynb
    """
    if p is None or p >= 1.0:
        return logits
    if p <= 0:
        raise ConfigError(f"top_p must be in (0, 1] (or None for no filter), got {p}.")
    sorted_logits, order = logits.sort(dim=-1, descending=True)  # (..., V) each
    probs = sorted_logits.softmax(dim=-1)  # (..., V)
    mass_before = probs.cumsum(dim=-1) - probs  # (..., V) probability of the more likely tokens
    remove_sorted = mass_before >= p  # (..., V)
    remove = remove_sorted.scatter(-1, order, remove_sorted)  # (..., V) back in vocabulary order
    return logits.masked_fill(remove, float("-inf"))


def sample_from_logits(
    logits: Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Draw one token per row of ``logits`` (..., V) -> LongTensor (...): temperature, then top-k, then top-p.

    ``temperature=0`` returns the argmax (greedy). The draw inverts the cumulative distribution at
    one uniform number per row from ``generator`` (a CPU or same-device generator).

    Notebook: notebooks/05_audio_language_model.ipynb
    """
    if temperature == 0:
        return logits.argmax(dim=-1)
    filtered = top_p_filter(top_k_filter(apply_temperature(logits.float(), temperature), top_k), top_p)
    probs = filtered.softmax(dim=-1)  # (..., V)
    cdf = probs.cumsum(dim=-1)  # (..., V)
    device = generator.device if generator is not None else logits.device
    uniform = torch.rand(cdf.shape[:-1], generator=generator, device=device).to(cdf.device)  # (...,)
    threshold = (uniform * cdf[..., -1]).unsqueeze(-1)  # (..., 1) in [0, total mass)
    index = torch.searchsorted(cdf.contiguous(), threshold, right=True).squeeze(-1)  # (...,) first cdf > u
    return index.clamp_(max=logits.shape[-1] - 1)


def guided_logits(conditional: Tensor, unconditional: Tensor, guidance_scale: float) -> Tensor:
    """Classifier-free guidance on logits: ``ℓ(∅) + w · (ℓ(c) − ℓ(∅))``; w = 1 is the conditional model.

    Notebook: notebooks/06_text_to_music.ipynb
    """
    return unconditional + guidance_scale * (conditional - unconditional)


# -------------------------------------------------------------------------------------------- generate
def steps_for(steps: int | None, seconds: float | None, steps_per_second: float | None) -> int:
    """How many steps to generate: ``steps``, or ``ceil(seconds · steps_per_second)`` for a length of audio."""
    if steps is not None:
        if steps < 0:
            raise ConfigError(f"steps must be ≥ 0, got {steps}.")
        return steps
    if seconds is None or steps_per_second is None:
        raise ConfigError(
            "Say how long to generate: steps=N, or seconds=S with steps_per_second=R (the layout's rate)."
        )
    return math.ceil(seconds * steps_per_second)


@torch.no_grad()
def generate(
    model: TokenLM,
    prompt: Tensor,
    steps: int | None = None,
    *,
    seconds: float | None = None,
    steps_per_second: float | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    condition: Tensor | None = None,
    guidance_scale: float = 1.0,
    use_cache: bool = True,
    logits_processor: LogitsProcessor | None = None,
    max_wall_seconds: float | None = None,
    progress: bool = False,
) -> Tensor:
    """Continue ``prompt`` by ``steps`` sampled steps (or ``seconds`` of audio at ``steps_per_second``).

    Args:
        prompt: ``(B, T0)`` or ``(B, K, T0)`` token ids, T0 ≥ 1 (at least the start token).
        temperature, top_k, top_p, generator: see :func:`sample_from_logits`.
        condition: ``(B, D)`` conditioning vectors for a conditioned model (MusicLM's M_T), or None
            (a conditioned model then uses its null memory: unconditional generation).
        guidance_scale: classifier-free guidance weight w on the logits (1: plain conditional sampling).
        use_cache: keep keys/values (one position per step) or recompute the whole prefix each step.
        logits_processor: ``f(position, logits) -> logits`` applied before sampling the token that
            will sit at ``position`` of the sequence (e.g. to force the delay pattern's pads, or keep a
            level's tokens in its id range); logits are ``(B, V)`` or ``(B, K, V)``.
        max_wall_seconds: stop early (returning what is generated) once this much wall time passed.
        progress: show a progress bar.

    Returns:
        ``(B, [K,] T0 + steps)``: the prompt followed by the generated tokens.

    Notebook: notebooks/05_audio_language_model.ipynb
    """
    steps = steps_for(steps, seconds, steps_per_second)
    if prompt.ndim not in (2, 3) or prompt.shape[-1] < 1:
        raise ConfigError(
            f"prompt must be (B, T0) or (B, K, T0) token ids with T0 ≥ 1, got {tuple(prompt.shape)}: "
            "start from the layout's start token at least."
        )
    guided = condition is not None and guidance_scale != 1.0
    batch = prompt.shape[0]
    device = next(model.parameters()).device
    sequence = prompt.to(device)
    drop = None
    if guided:  # conditional half first, unconditional (null memory) half second
        condition = torch.cat([condition, condition]).to(device)  # (2B, D)
        drop = torch.arange(2 * batch, device=device) >= batch  # (2B,)
    elif condition is not None:
        condition = condition.to(device)

    def doubled(x: Tensor) -> Tensor:
        return torch.cat([x, x]) if guided else x

    def last_logits(output: Tensor) -> Tensor:
        logits = output[..., -1, :]  # (B', [K,] V)
        if guided:
            conditional, unconditional = logits.chunk(2)
            logits = guided_logits(conditional, unconditional, guidance_scale)
        return logits  # (B, [K,] V)

    was_training = model.training
    model.eval()
    cache = model.new_cache(2 * batch if guided else batch, max_len=sequence.shape[-1] + steps) if use_cache else None
    started = time.perf_counter()
    generated = [sequence]
    try:
        if steps and use_cache:
            logits = last_logits(model(doubled(sequence), condition, drop, cache))  # prefill the prompt
        for _ in tqdm(range(steps), disable=not progress, desc="generating", unit="step"):
            position = sequence.shape[-1] + len(generated) - 1
            if not use_cache:
                full = torch.cat(generated, dim=-1)  # (B, [K,] t)
                logits = last_logits(model(doubled(full), condition, drop))  # the whole prefix, again
            if logits_processor is not None:
                logits = logits_processor(position, logits)
            token = sample_from_logits(logits, temperature, top_k, top_p, generator).unsqueeze(-1)  # (B, [K,] 1)
            generated.append(token)
            if max_wall_seconds is not None and time.perf_counter() - started > max_wall_seconds:
                break
            if use_cache and len(generated) <= steps:
                logits = last_logits(model(doubled(token), cache=cache))  # one new position
    finally:
        model.train(was_training)
    return torch.cat(generated, dim=-1)  # (B, [K,] T0 + steps)
