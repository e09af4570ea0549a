"""A decoder-only transformer over audio tokens, readable in one sitting (in the spirit of nanoGPT).

The lecture's 1-D approach: discrete acoustic tokens + a language model (a transformer decoder) that
predicts the next token from the ones before, p(x_t | x_<t). The pieces, from the bottom up:

- **Causal self-attention** (Vaswani et al. 2017, eq. 1): ``softmax(QKᵀ / √d_head) V`` with each
  position allowed to look only at itself and earlier ones, through
  ``torch.nn.functional.scaled_dot_product_attention`` (which picks a fused kernel on GPUs).
- **Positions**: rotary embeddings (RoPE, Su et al. 2021, "RoFormer", eq. 34): each pair of channels
  (2i, 2i+1) of the queries and keys at position m is rotated by the angle m·θ_i, θ_i = 10000^(-2i/d_head),
  so the score of a query at m and a key at n depends only on m − n; or ``learned`` absolute position
  vectors added to the input (GPT-2).
- **Pre-norm blocks** (GPT-2; Xiong et al. 2020): ``x + Attn(LN(x))`` then ``x + MLP(LN(x))``, and
  optionally ``x + CrossAttn(LN(x), memory)`` between them, to attend to a conditioning sequence
  (MusicGen, Copet et al. 2023, conditions on its text encoder this way).
- **A key/value cache**: at generation time the keys and values of the positions already seen are kept,
  so each new token costs one position's work instead of the whole prefix's
  (:mod:`course_lib.lm.generation`).

:class:`TokenLM` wraps the decoder for codec tokens: one or several parallel *streams* of tokens (one
per residual-VQ level for MusicGen's delay layout; their embeddings are summed at the input and each
has its own output head) and an optional conditioning vector (MusicLM's joint embedding, M_A in
training and M_T at inference) that becomes a short memory for cross-attention, or a learned null
memory when the condition is dropped (classifier-free guidance).

Notebooks: notebooks/05_audio_language_model.ipynb, 06_text_to_music.ipynb
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_lib.config import ScaledConfig
from course_lib.errors import ConfigError

POSITIONS = ("rope", "learned")


@dataclasses.dataclass
class LMConfig(ScaledConfig):
    """A :class:`TokenLM`. Defaults are the ``tiny`` preset (0.8 M parameters with 1,026 tokens per stream).

    Args:
        vocab_size: token ids per stream (codes plus the special tokens the layout adds).
        n_streams: tokens per step (1 for a flattened sequence, n_q for the delay layout).
        d_model, n_layers, n_heads: width, depth and attention heads of the decoder.
        mlp_ratio: hidden width of the MLP as a multiple of ``d_model``.
        max_seq_len: the longest sequence (prompt + generation) the model can hold.
        positions: ``"rope"`` (rotary) or ``"learned"`` (absolute vectors added to the input).
        dropout: on attention weights and residual branches (0 at the tiny scale: tiny models on
            plentiful synthetic data do not over-fit).
        condition_dim: size of a conditioning vector (e.g. the joint embedding's D); 0 = unconditional.
            With it, every block gets a cross-attention layer over ``condition_tokens`` memory vectors.
        condition_tokens: how many memory vectors the conditioning vector is projected to.
        tie_embeddings: share each stream's input embedding and output head (Press & Wolf 2017).

    Notebook: notebooks/05_audio_language_model.ipynb
    """

    vocab_size: int = 1026
    n_streams: int = 1
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    mlp_ratio: int = 4
    max_seq_len: int = 512
    positions: str = "rope"
    dropout: float = 0.0
    condition_dim: int = 0
    condition_tokens: int = 4
    tie_embeddings: bool = True
    full_overrides: ClassVar[dict] = {"d_model": 512, "n_layers": 8, "n_heads": 8, "max_seq_len": 2048, "dropout": 0.1}

    def __post_init__(self) -> None:
        if self.positions not in POSITIONS:
            raise ConfigError(f"Unknown positions {self.positions!r}: use 'rope' or 'learned'.")
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ConfigError(
                f"d_model={self.d_model} must split into n_heads={self.n_heads} heads of an even size "
                "(rotary embeddings rotate pairs of channels): e.g. d_model=128, n_heads=4."
            )
        for name in ("vocab_size", "n_streams", "n_layers", "max_seq_len", "condition_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"LMConfig.{name} must be at least 1, got {getattr(self, name)}.")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


# ------------------------------------------------------------------------------------------------ cache
class KVCache:
    """The keys and values of every position seen so far, for each layer, in preallocated buffers.

    ``keys[layer]`` and ``values[layer]`` are ``(B, H, max_len, d_head)``; positions ``[0, length)`` are
    filled. Writing into a preallocated buffer (rather than ``torch.cat`` per step) keeps each step's
    cost independent of how long the sequence already is, apart from the attention itself. The
    cross-attention keys and values of the memory never change during generation, so they are
    computed once and kept in ``memory``.

    Notebook: notebooks/05_audio_language_model.ipynb
    """

    def __init__(
        self,
        n_layers: int,
        batch: int,
        n_heads: int,
        head_dim: int,
        max_len: int,
        device: torch.device | str,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        shape = (batch, n_heads, max_len, head_dim)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layers)]  # L × (B, H, S, hd)
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layers)]
        self.memory: list[tuple[Tensor, Tensor] | None] = [None] * n_layers
        self.max_len = max_len
        self.length = 0

    def append(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store ``k, v`` (B, H, T_new, hd) after the cached positions; return all keys/values so far."""
        stop = self.length + k.shape[2]
        if stop > self.max_len:
            raise ConfigError(
                f"The cache holds {self.max_len} positions but the sequence reached {stop}: "
                "generate fewer steps or build the cache with a larger max_len."
            )
        self.keys[layer][:, :, self.length : stop] = k
        self.values[layer][:, :, self.length : stop] = v
        return self.keys[layer][:, :, :stop], self.values[layer][:, :, :stop]  # (B, H, stop, hd) each


# ------------------------------------------------------------------------------------------- positions
def rotary_angles(max_len: int, head_dim: int, base: float = 10_000.0) -> tuple[Tensor, Tensor]:
    """cos and sin of m·θ_i for positions m < ``max_len``, θ_i = base^(-2i/d_head): ``(max_len, d_head/2)`` each."""
    theta = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)  # (hd/2,)
    angles = torch.arange(max_len, dtype=torch.float64)[:, None] * theta  # (S, hd/2)
    return angles.cos().float(), angles.sin().float()


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate each channel pair (2i, 2i+1) of ``x`` (B, H, T, hd) by the angles of its position (RoFormer eq. 34).

    ``cos``/``sin`` are ``(T, hd/2)`` for the T positions of ``x``:
    (x_2i, x_2i+1) -> (x_2i cos − x_2i+1 sin, x_2i sin + x_2i+1 cos).

    Notebook: notebooks/05_audio_language_model.ipynb
    """
    even, odd = x[..., 0::2], x[..., 1::2]  # (B, H, T, hd/2) each
    rotated_even = even * cos - odd * sin  # (B, H, T, hd/2)
    rotated_odd = even * sin + odd * cos  # (B, H, T, hd/2)
    return torch.stack([rotated_even, rotated_odd], dim=-1).flatten(-2)  # (B, H, T, hd)


# ------------------------------------------------------------------------------------------- attention
class SelfAttention(nn.Module):
    """Multi-head causal self-attention with optional rotary positions and a key/value cache."""

    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        self.n_heads, self.head_dim = config.n_heads, config.head_dim
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=False)
        self.out = nn.Linear(config.d_model, config.d_model, bias=False)
        self.dropout = config.dropout

    def forward(
        self,
        x: Tensor,
        rotary: tuple[Tensor, Tensor] | None,
        cache: KVCache | None = None,
        layer: int = 0,
    ) -> Tensor:
        batch, length, width = x.shape  # (B, T, C)
        q, k, v = self.qkv(x).split(width, dim=2)  # (B, T, C) each
        q = q.view(batch, length, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, hd)
        k = k.view(batch, length, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, hd)
        v = v.view(batch, length, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, hd)
        if rotary is not None:
            q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)  # (B, H, T, hd) each
        past = 0
        if cache is not None:
            past = cache.length
            k, v = cache.append(layer, k, v)  # (B, H, past + T, hd) each
        dropout = self.dropout if self.training else 0.0
        if past == 0:  # the whole sequence at once: the fused causal kernel
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout)  # (B, H, T, hd)
        elif length == 1:  # one new position sees every cached one: no mask needed
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)  # (B, H, 1, hd)
        else:  # a block of new positions after a cached prefix: position past + i sees keys ≤ past + i
            allowed = torch.ones(length, past + length, dtype=torch.bool, device=x.device).tril(past)  # (T, past + T)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=dropout)  # (B, H, T, hd)
        y = y.transpose(1, 2).reshape(batch, length, width)  # (B, T, C)
        return self.out(y)  # (B, T, C)


class CrossAttention(nn.Module):
    """Multi-head attention from the sequence to a conditioning memory (no mask, no positions on the memory)."""

    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        self.n_heads, self.head_dim = config.n_heads, config.head_dim
        self.query = nn.Linear(config.d_model, config.d_model, bias=False)
        self.key_value = nn.Linear(config.d_model, 2 * config.d_model, bias=False)
        self.out = nn.Linear(config.d_model, config.d_model, bias=False)
        self.dropout = config.dropout

    def forward(self, x: Tensor, memory: Tensor, cache: KVCache | None = None, layer: int = 0) -> Tensor:
        batch, length, width = x.shape  # (B, T, C)
        q = self.query(x).view(batch, length, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, hd)
        kv = cache.memory[layer] if cache is not None else None
        if kv is None:
            k, v = self.key_value(memory).split(width, dim=2)  # (B, S, C) each
            k = k.view(batch, -1, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, S, hd)
            v = v.view(batch, -1, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, S, hd)
            if cache is not None:
                cache.memory[layer] = (k, v)
        else:
            k, v = kv
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)  # (B, H, T, hd)
        return self.out(y.transpose(1, 2).reshape(batch, length, width))  # (B, T, C)


class MLP(nn.Module):
    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        self.up = nn.Linear(config.d_model, config.mlp_ratio * config.d_model, bias=False)
        self.down = nn.Linear(config.mlp_ratio * config.d_model, config.d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(F.gelu(self.up(x)))  # (B, T, C)


class Block(nn.Module):
    """Pre-norm block: x + SelfAttn(LN(x)) [+ CrossAttn(LN(x), memory)] + MLP(LN(x))."""

    def __init__(self, config: LMConfig, cross_attention: bool) -> None:
        super().__init__()
        self.norm_attention = nn.LayerNorm(config.d_model)
        self.attention = SelfAttention(config)
        self.norm_cross = nn.LayerNorm(config.d_model) if cross_attention else None
        self.cross = CrossAttention(config) if cross_attention else None
        self.norm_mlp = nn.LayerNorm(config.d_model)
        self.mlp = MLP(config)
        self.drop = nn.Dropout(config.dropout)

    def forward(
        self,
        x: Tensor,
        rotary: tuple[Tensor, Tensor] | None,
        memory: Tensor | None,
        cache: KVCache | None,
        layer: int,
    ) -> Tensor:
        x = x + self.drop(self.attention(self.norm_attention(x), rotary, cache, layer))  # (B, T, C)
        if self.cross is not None:
            x = x + self.drop(self.cross(self.norm_cross(x), memory, cache, layer))  # (B, T, C)
        return x + self.drop(self.mlp(self.norm_mlp(x)))  # (B, T, C)


class Decoder(nn.Module):
    """The stack of blocks and the final LayerNorm over input vectors ``(B, T, C)``: no embeddings, no head."""

    def __init__(self, config: LMConfig, cross_attention: bool = False) -> None:
        super().__init__()
        self.config = config
        self.blocks = nn.ModuleList(Block(config, cross_attention) for _ in range(config.n_layers))
        self.norm = nn.LayerNorm(config.d_model)
        self.positions = nn.Embedding(config.max_seq_len, config.d_model) if config.positions == "learned" else None
        cos, sin = rotary_angles(config.max_seq_len, config.head_dim)
        self.register_buffer("rotary_cos", cos, persistent=False)  # (S, hd/2), rebuilt from the config
        self.register_buffer("rotary_sin", sin, persistent=False)

    def forward(self, x: Tensor, memory: Tensor | None = None, cache: KVCache | None = None) -> Tensor:
        start = cache.length if cache is not None else 0
        stop = start + x.shape[1]
        if stop > self.config.max_seq_len:
            raise ConfigError(
                f"The sequence reached {stop} positions but the model was built for max_seq_len="
                f"{self.config.max_seq_len}: generate fewer steps, or train a model with a larger max_seq_len."
            )
        rotary = None
        if self.positions is not None:
            x = x + self.positions.weight[start:stop]  # (B, T, C)
        else:
            rotary = (self.rotary_cos[start:stop].to(x.dtype), self.rotary_sin[start:stop].to(x.dtype))  # (T, hd/2)
        for layer, block in enumerate(self.blocks):
            x = block(x, rotary, memory, cache, layer)  # (B, T, C)
        if cache is not None:
            cache.length = stop
        return self.norm(x)  # (B, T, C)


# --------------------------------------------------------------------------------------------- the LM
class TokenLM(nn.Module):
    """A language model over one or several parallel streams of tokens, optionally conditioned on a vector.

    ``forward(tokens, condition=None, drop_condition=None, cache=None)``:

    - ``tokens``: ``(B, T)`` for one stream, ``(B, K, T)`` for K streams; ids in ``[0, vocab_size)``.
    - ``condition``: ``(B, condition_dim)`` conditioning vectors (MusicLM's M_A or M_T), or None.
    - ``drop_condition``: ``(B,)`` bool, True where the model gets its learned *null* memory instead
      (condition dropout in training; the unconditional half of classifier-free guidance).
    - returns logits ``(B, T, V)`` or ``(B, K, T, V)``: position t predicts the token at t + 1.

    Example::

        lm = TokenLM(LMConfig(vocab_size=1026, n_streams=4))
        logits = lm(torch.randint(0, 1026, (2, 4, 50)))   # (2, 4, 50, 1026)

    Notebooks: notebooks/05_audio_language_model.ipynb, 06_text_to_music.ipynb
    """

    def __init__(self, config: LMConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or LMConfig()
        self.embeddings = nn.ModuleList(
            nn.Embedding(config.vocab_size, config.d_model) for _ in range(config.n_streams)
        )
        conditioned = config.condition_dim > 0
        self.decoder = Decoder(config, cross_attention=conditioned)
        # Tied: each stream's output head is its input embedding (Press & Wolf 2017), stored once.
        self.heads = (
            None
            if config.tie_embeddings
            else nn.ModuleList(
                nn.Linear(config.d_model, config.vocab_size, bias=False) for _ in range(config.n_streams)
            )
        )
        if conditioned:
            self.condition_projection = nn.Linear(config.condition_dim, config.condition_tokens * config.d_model)
            self.null_memory = nn.Parameter(torch.zeros(config.condition_tokens, config.d_model))
        self.apply(self._init_weights)
        for name, parameter in self.named_parameters():  # GPT-2: residual projections shrink with depth
            if name.endswith(("attention.out.weight", "cross.out.weight", "mlp.down.weight")):
                nn.init.normal_(parameter, std=0.02 / math.sqrt(2 * config.n_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

    def output_weights(self) -> list[Tensor]:
        """Each stream's output projection ``(V, C)``: its embedding when tied, else its head."""
        layers = self.embeddings if self.heads is None else self.heads
        return [layer.weight for layer in layers]

    def num_parameters(self) -> int:
        """Parameters, counting tied embeddings once."""
        return sum(p.numel() for p in self.parameters())

    def memory(self, condition: Tensor | None, drop_condition: Tensor | None = None, batch: int = 1) -> Tensor | None:
        """The cross-attention memory ``(B, condition_tokens, C)``: the projected condition, or the null memory."""
        if self.config.condition_dim == 0:
            if condition is not None:
                raise ConfigError("This model was built without conditioning (condition_dim=0): pass condition=None.")
            return None
        null = self.null_memory.expand(batch, -1, -1)  # (B, P, C)
        if condition is None:
            return null
        if condition.ndim != 2 or condition.shape[1] != self.config.condition_dim:
            raise ConfigError(
                f"condition must be (B, {self.config.condition_dim}) vectors, got {tuple(condition.shape)}: "
                "pass the joint embedding of each clip or caption."
            )
        projected = self.condition_projection(condition).view(condition.shape[0], self.config.condition_tokens, -1)
        if drop_condition is None:
            return projected  # (B, P, C)
        return torch.where(drop_condition.view(-1, 1, 1), null, projected)  # (B, P, C)

    def forward(
        self,
        tokens: Tensor,
        condition: Tensor | None = None,
        drop_condition: Tensor | None = None,
        cache: KVCache | None = None,
    ) -> Tensor:
        streams = tokens.unsqueeze(1) if tokens.ndim == 2 else tokens  # (B, K, T)
        if streams.ndim != 3 or streams.shape[1] != self.config.n_streams:
            raise ConfigError(
                f"tokens must be (B, T) for one stream or (B, {self.config.n_streams}, T) for "
                f"{self.config.n_streams} streams, got {tuple(tokens.shape)}."
            )
        on_cpu = streams.device.type == "cpu"  # checked where it costs no device sync
        if on_cpu and streams.numel() and (streams.min() < 0 or streams.max() >= self.config.vocab_size):
            raise ConfigError(
                f"token ids must be in [0, {self.config.vocab_size}), got {int(streams.min())}..{int(streams.max())}: "
                "add the layout's offsets/special tokens, or build the model with a larger vocab_size."
            )
        x = sum(embed(streams[:, k]) for k, embed in enumerate(self.embeddings))  # (B, T, C)
        memory = None
        if self.config.condition_dim == 0 and condition is not None:
            raise ConfigError("This model was built without conditioning (condition_dim=0): pass condition=None.")
        if self.config.condition_dim > 0 and (cache is None or cache.memory[0] is None):
            memory = self.memory(condition, drop_condition, batch=streams.shape[0])  # (B, P, C)
        h = self.decoder(x, memory, cache)  # (B, T, C)
        logits = torch.stack([F.linear(h, weight) for weight in self.output_weights()], dim=1)  # (B, K, T, V)
        return logits[:, 0] if tokens.ndim == 2 else logits

    def new_cache(self, batch: int, max_len: int | None = None) -> KVCache:
        """An empty :class:`KVCache` for ``batch`` sequences on this model's device and dtype."""
        weight = self.embeddings[0].weight
        return KVCache(
            self.config.n_layers,
            batch,
            self.config.n_heads,
            self.config.head_dim,
            max_len or self.config.max_seq_len,
            weight.device,
            weight.dtype,
        )


def next_token_loss(
    model: TokenLM,
    tokens: Tensor,
    ignore_index: int = -100,
    target_mask: Tensor | None = None,
    condition: Tensor | None = None,
    drop_condition: Tensor | None = None,
) -> Tensor:
    """The language-model loss: mean cross-entropy of each next token, −log p(x_t+1 | x_≤t).

    Args:
        tokens: ``(B, T)`` or ``(B, K, T)`` whole sequences (the first position is the start token).
        target_mask: same shape as ``tokens``, True where a token is a target; False positions (a
            conditioning prefix, the delay pattern's pads) are not scored.

    Notebook: notebooks/05_audio_language_model.ipynb
    """
    logits = model(tokens[..., :-1], condition, drop_condition)  # (B, [K,] T-1, V)
    targets = tokens[..., 1:]  # (B, [K,] T-1)
    if target_mask is not None:
        targets = targets.masked_fill(~target_mask[..., 1:], ignore_index)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=ignore_index)
