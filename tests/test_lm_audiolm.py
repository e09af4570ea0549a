"""AudioLM's chain on a stand-in codec and encoder: semantic tokens by k-means, three stages, prompts kept, cache exact.

The real codec and joint embedding are exercised by the shipped-checkpoint tests
(``tests/test_lm_shipped.py``); here a deterministic stand-in keeps the tests fast and independent.
"""

from __future__ import annotations

import pytest
import torch
from lm_stand_ins import K, StandInCodec, frame_features
from lm_stand_ins import tones as clips

from course_lib.errors import ConfigError
from course_lib.lm.audiolm import (
    AudioLM,
    SamplingOptions,
    SemanticTokenizer,
    SemanticTokenizerConfig,
    tokens_per_second,
)
from course_lib.lm.sequences import CoarseSequence, FineSequence, SemanticSequence
from course_lib.lm.transformer import LMConfig, TokenLM


def small_lm(vocab: int, condition_dim: int = 0) -> TokenLM:
    torch.manual_seed(vocab)
    return TokenLM(
        LMConfig(vocab_size=vocab, d_model=32, n_layers=2, n_heads=2, max_seq_len=256, condition_dim=condition_dim)
    ).eval()


def test_semantic_tokens_are_kmeans_over_standardised_frames():
    audio = clips(8)
    tokenizer = SemanticTokenizer(SemanticTokenizerConfig(n_clusters=5, feature_dim=8), frame_features)
    with pytest.raises(ConfigError, match="not fitted"):
        tokenizer.encode(audio)
    tokenizer.fit(audio)
    tokens = tokenizer.encode(audio)
    assert tokens.shape == (8, 25) and tokens.dtype == torch.long and int(tokens.max()) < 5
    assert len(tokens.unique()) >= 4  # the clusters are used
    x = (tokenizer.frame_features(audio) - tokenizer.mean) / tokenizer.std  # (8, 25, 8)
    by_hand = ((x[..., None, :] - tokenizer.centers) ** 2).sum(-1).argmin(-1)  # nearest centre
    assert torch.equal(tokens, by_hand)
    assert torch.allclose(x.reshape(-1, 8).mean(0), torch.zeros(8), atol=1e-4)  # standardised
    fast = SemanticTokenizer(SemanticTokenizerConfig(n_clusters=5, feature_dim=8, token_rate=12.5), frame_features)
    assert fast.fit(audio).encode(audio).shape == (8, 12)  # frames averaged down to the token rate
    with pytest.raises(ConfigError, match="feature_dim"):
        SemanticTokenizer(SemanticTokenizerConfig(feature_dim=7), frame_features).fit(audio)


def chain(condition_dim: int = 0) -> AudioLM:
    semantic, coarse, fine = SemanticSequence(5), CoarseSequence(5, 2, K), FineSequence(2, 2, K, chunk_frames=20)
    tokenizer = SemanticTokenizer(SemanticTokenizerConfig(n_clusters=5, feature_dim=8), frame_features).fit(clips(8))
    return AudioLM(
        small_lm(semantic.vocab_size, condition_dim), small_lm(coarse.vocab_size, condition_dim),
        small_lm(fine.vocab_size), tokenizer, StandInCodec(), semantic, coarse, fine,
    )  # fmt: skip


def test_the_chain_generates_decodable_codes_and_keeps_the_prompt():
    model = chain()
    options = SamplingOptions(temperature=1.0, top_k=8)
    out = model.sample(2, seconds=1.0, generator=torch.Generator().manual_seed(0), coarse_options=options)
    assert out.audio.shape == (2, 16_000) and out.semantic.shape == (2, 25) and out.codes.shape == (2, 4, 50)
    assert int(out.codes.min()) >= 0 and int(out.codes.max()) < K and int(out.semantic.max()) < 5
    assert set(out.seconds) == {"semantic", "coarse", "fine"}
    prompt = clips(2)[:, :6_400]  # 0.4 s: 10 semantic tokens, 20 frames (exactly one fine chunk)
    continued = model.sample(seconds=1.0, prompt_audio=prompt, generator=torch.Generator().manual_seed(1))
    assert torch.equal(continued.semantic[:, :10], model.tokenizer.encode(prompt))
    assert torch.equal(continued.codes[:, :, :20], StandInCodec().encode(prompt, n_q=4))
    partial = model.sample(seconds=1.0, prompt_audio=prompt[:, :4_800], generator=torch.Generator().manual_seed(1))
    assert torch.equal(partial.codes[:, :, :15], StandInCodec().encode(prompt[:, :4_800], n_q=4))  # mid-chunk
    with pytest.raises(ConfigError, match="shorter"):
        model.sample(seconds=0.2, prompt_audio=prompt)


def test_the_chain_with_and_without_cache_is_identical_and_conditioning_matters():
    model = chain(condition_dim=3)
    condition = torch.randn(2, 3)
    runs = [
        model.sample(
            2, 1.0, condition=condition, guidance_scale=2.0, generator=torch.Generator().manual_seed(0), use_cache=c
        )
        for c in (True, False)
    ]
    assert torch.equal(runs[0].codes, runs[1].codes) and torch.equal(runs[0].semantic, runs[1].semantic)
    for stage in (model.semantic_model, model.coarse_model):
        torch.nn.init.normal_(stage.null_memory, std=2.0)
    other = model.sample(2, 1.0, condition=-condition, guidance_scale=2.0, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(other.codes, runs[0].codes)


def test_token_rates():
    assert tokens_per_second(50, 12, 25) == 625  # MusicLM: 600 acoustic + 25 semantic
    assert tokens_per_second(50, 4) == 200
