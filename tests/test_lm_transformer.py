"""The decoder: rotary positions by hand, causality, the key/value cache, cross-attention conditioning, the loss."""

from __future__ import annotations

import math

import pytest
import torch

from course_lib.errors import ConfigError
from course_lib.lm.transformer import LMConfig, TokenLM, apply_rotary, next_token_loss, rotary_angles


def small(**changes) -> LMConfig:
    return LMConfig(**{"vocab_size": 37, "d_model": 32, "n_layers": 2, "n_heads": 2, "max_seq_len": 64, **changes})


def test_rotary_rotates_each_pair_by_position_times_frequency():
    cos, sin = rotary_angles(8, 4)  # θ_0 = 1, θ_1 = 10000^(-1/2) = 0.01
    x = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 1, 4).expand(1, 1, 8, 4)  # same vector at 8 positions
    rotated = apply_rotary(x, cos, sin)
    m = 5
    for pair, theta in ((0, 1.0), (1, 0.01)):
        a, b = x[0, 0, m, 2 * pair].item(), x[0, 0, m, 2 * pair + 1].item()
        angle = m * theta
        expected = (a * math.cos(angle) - b * math.sin(angle), a * math.sin(angle) + b * math.cos(angle))
        assert rotated[0, 0, m, 2 * pair : 2 * pair + 2].tolist() == pytest.approx(expected, abs=1e-6)
    assert torch.allclose(rotated.norm(dim=-1), x.norm(dim=-1))  # a rotation keeps lengths


def test_rotary_scores_depend_only_on_the_offset():
    cos, sin = rotary_angles(32, 8)
    q, k = torch.randn(1, 1, 1, 8).expand(1, 1, 32, 8), torch.randn(1, 1, 1, 8).expand(1, 1, 32, 8)
    rq, rk = apply_rotary(q, cos, sin)[0, 0], apply_rotary(k, cos, sin)[0, 0]  # (32, 8)
    assert torch.allclose(rq[10] @ rk[7], rq[25] @ rk[22], atol=1e-5)  # both offset 3
    assert not torch.allclose(rq[10] @ rk[7], rq[10] @ rk[2], atol=1e-3)


@pytest.mark.parametrize("positions", ["rope", "learned"])
def test_the_future_does_not_change_the_past(positions):
    torch.manual_seed(0)
    model = TokenLM(small(positions=positions)).eval()
    tokens = torch.randint(0, 37, (2, 20))
    changed = tokens.clone()
    changed[:, 12:] = (changed[:, 12:] + 1) % 37
    a, b = model(tokens), model(changed)
    assert torch.allclose(a[:, :12], b[:, :12], atol=1e-6)
    assert not torch.allclose(a[:, 12:], b[:, 12:], atol=1e-3)


@pytest.mark.parametrize(
    "changes",
    [{}, {"positions": "learned"}, {"n_streams": 3}, {"condition_dim": 6, "n_streams": 2}],
)
def test_cached_logits_equal_the_whole_sequence_at_once(changes):
    torch.manual_seed(0)
    model = TokenLM(small(**changes)).eval()
    streams = model.config.n_streams
    tokens = torch.randint(0, 37, (2, streams, 30)) if streams > 1 else torch.randint(0, 37, (2, 30))
    condition = torch.randn(2, 6) if model.config.condition_dim else None
    with torch.no_grad():
        full = model(tokens, condition)  # (2, [K,] 30, V)
        cache = model.new_cache(2)
        parts = [model(tokens[..., :7], condition, cache=cache)]  # a prompt, then a block of 5, then one by one
        parts.append(model(tokens[..., 7:12], cache=cache))
        parts += [model(tokens[..., t : t + 1], cache=cache) for t in range(12, 30)]
    assert cache.length == 30
    assert torch.allclose(torch.cat(parts, dim=-2), full, atol=1e-5)


def test_condition_enters_through_cross_attention_and_can_be_dropped():
    torch.manual_seed(0)
    model = TokenLM(small(condition_dim=6)).eval()
    torch.nn.init.normal_(model.null_memory)
    tokens = torch.randint(0, 37, (2, 10))
    a, b = torch.randn(2, 6), torch.randn(2, 6)
    assert not torch.allclose(model(tokens, a), model(tokens, b), atol=1e-4)
    dropped = model(tokens, a, drop_condition=torch.tensor([True, False]))
    assert torch.allclose(dropped[0], model(tokens)[0], atol=1e-6)  # row 0: the null memory = no condition
    assert torch.allclose(dropped[1], model(tokens, a)[1], atol=1e-6)
    with pytest.raises(ConfigError, match="condition_dim"):
        TokenLM(small())(tokens, a)


def test_loss_is_the_next_token_cross_entropy_and_ignores_masked_targets():
    torch.manual_seed(0)
    model = TokenLM(small())
    tokens = torch.randint(0, 37, (3, 12))
    logits = model(tokens[:, :-1])
    by_hand = -logits.log_softmax(-1).gather(-1, tokens[:, 1:, None]).mean()
    assert torch.allclose(next_token_loss(model, tokens), by_hand, atol=1e-6)
    assert next_token_loss(model, tokens).item() == pytest.approx(math.log(37), rel=0.05)  # untrained: uniform
    mask = torch.zeros_like(tokens, dtype=torch.bool)
    mask[:, 6:] = True  # only the second half is scored
    by_hand_half = -logits[:, 5:].log_softmax(-1).gather(-1, tokens[:, 6:, None]).mean()
    assert torch.allclose(next_token_loss(model, tokens, target_mask=mask), by_hand_half, atol=1e-6)


def test_tied_embeddings_and_parameter_count():
    model = TokenLM(small(n_streams=2))
    assert model.output_weights()[1] is model.embeddings[1].weight
    assert not any(name.startswith("heads") for name in model.state_dict())  # stored once
    untied = TokenLM(small(n_streams=2, tie_embeddings=False))
    assert untied.num_parameters() - model.num_parameters() == 2 * 37 * 32


def test_bad_inputs_get_course_errors():
    model = TokenLM(small(n_streams=2))
    with pytest.raises(ConfigError, match="streams"):
        model(torch.zeros(1, 3, 5, dtype=torch.long))
    with pytest.raises(ConfigError, match=r"\[0, 37\)"):
        model(torch.full((1, 2, 5), 37))
    with pytest.raises(ConfigError, match="max_seq_len"):
        model(torch.zeros(1, 2, 65, dtype=torch.long))
    with pytest.raises(ConfigError, match="even size"):
        LMConfig(d_model=30, n_heads=4)
    with pytest.raises(ConfigError, match="positions"):
        LMConfig(positions="alibi")
