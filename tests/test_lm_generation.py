"""Generation: the sampling filters by hand, seeded draws that follow the distribution, and a cache that is exact.

The central check: generating with the key/value cache gives exactly the same tokens as recomputing the
whole prefix at every step, for one stream, several streams, a conditioned model with guidance, and a
logits processor.
"""

from __future__ import annotations

import math

import pytest
import torch

from course_lib.errors import ConfigError
from course_lib.lm.generation import (
    generate,
    guided_logits,
    sample_from_logits,
    steps_for,
    top_k_filter,
    top_p_filter,
)
from course_lib.lm.transformer import LMConfig, TokenLM

NEG = float("-inf")


def test_top_k_by_hand():
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.5], [0.0, -1.0, 4.0, 4.0]])
    assert top_k_filter(logits, 2).tolist() == [[NEG, 3.0, 2.0, NEG], [NEG, NEG, 4.0, 4.0]]
    assert top_k_filter(logits, 1)[0].tolist() == [NEG, 3.0, NEG, NEG]
    assert torch.equal(top_k_filter(logits, None), logits) and torch.equal(top_k_filter(logits, 10), logits)
    with pytest.raises(ConfigError):
        top_k_filter(logits, 0)


def test_top_p_by_hand():
    logits = torch.tensor([0.5, 0.3, 0.2]).log()  # probabilities 0.5, 0.3, 0.2
    assert torch.isinf(top_p_filter(logits, 0.7)).tolist() == [False, False, True]  # 0.5 < 0.7 ≤ 0.8
    assert torch.isinf(top_p_filter(logits, 0.5)).tolist() == [False, True, True]  # 0.5 alone reaches 0.5
    assert torch.isinf(top_p_filter(logits, 0.81)).tolist() == [False, False, False]
    assert torch.isinf(top_p_filter(logits, 0.01)).tolist() == [False, True, True]  # the top token always stays
    shuffled = torch.tensor([0.2, 0.5, 0.3]).log()  # the filter works in vocabulary order, not sorted order
    assert torch.isinf(top_p_filter(shuffled, 0.7)).tolist() == [True, False, False]


def test_draws_follow_the_filtered_distribution():
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0]).expand(40_000, 4)
    draws = sample_from_logits(logits, temperature=0.5, generator=torch.Generator().manual_seed(0))
    expected = (torch.tensor([2.0, 1.0, 0.0, -1.0]) / 0.5).softmax(0)
    frequencies = torch.bincount(draws, minlength=4) / len(draws)
    assert torch.allclose(frequencies, expected, atol=0.01)  # 4 binomial standard errors at n = 40,000
    top2 = sample_from_logits(logits, top_k=2, generator=torch.Generator().manual_seed(1))
    assert set(top2.tolist()) == {0, 1}
    assert (torch.bincount(top2) / len(top2))[0].item() == pytest.approx(1 / (1 + math.exp(-1)), abs=0.01)
    greedy = sample_from_logits(torch.tensor([[0.1, 0.9, 0.3]]), temperature=0)
    assert greedy.tolist() == [1]
    a = sample_from_logits(logits[:50], generator=torch.Generator().manual_seed(3))
    b = sample_from_logits(logits[:50], generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)  # a seed fixes the draws


def test_guidance_formula():
    conditional, unconditional = torch.tensor([1.0, 3.0]), torch.tensor([2.0, 2.0])
    assert guided_logits(conditional, unconditional, 1.0).tolist() == [1.0, 3.0]
    assert guided_logits(conditional, unconditional, 0.0).tolist() == [2.0, 2.0]
    assert guided_logits(conditional, unconditional, 3.0).tolist() == [-1.0, 5.0]  # pushed away from ∅


def model_for(**changes) -> TokenLM:
    torch.manual_seed(0)
    config = LMConfig(**{"vocab_size": 41, "d_model": 32, "n_layers": 2, "n_heads": 2, "max_seq_len": 96, **changes})
    return TokenLM(config).eval()


@pytest.mark.parametrize(
    ("changes", "options"),
    [
        ({}, {"top_k": 10}),
        ({"positions": "learned"}, {"top_p": 0.9, "temperature": 1.3}),
        ({"n_streams": 3}, {"top_k": 20, "top_p": 0.95}),
        ({"condition_dim": 5, "n_streams": 2}, {"guidance_scale": 3.0}),
        ({"condition_dim": 5}, {"guidance_scale": 1.0}),
    ],
)
def test_cached_generation_gives_exactly_the_tokens_of_recomputing_the_prefix(changes, options):
    model = model_for(**changes)
    streams = model.config.n_streams
    prompt = torch.randint(0, 41, (3, streams, 4) if streams > 1 else (3, 4))
    condition = torch.randn(3, 5) if model.config.condition_dim else None
    runs = {
        use_cache: generate(
            model,
            prompt,
            60,
            generator=torch.Generator().manual_seed(7),
            condition=condition,
            use_cache=use_cache,
            **options,
        )  # fmt: skip
        for use_cache in (True, False)
    }
    assert runs[True].shape[-1] == 64 and torch.equal(runs[True][..., :4], prompt)
    assert torch.equal(runs[True], runs[False])
    again = generate(model, prompt, 60, generator=torch.Generator().manual_seed(8), condition=condition, **options)
    assert not torch.equal(again, runs[True])  # another seed, other tokens


def test_guidance_changes_what_is_generated():
    model = model_for(condition_dim=5)
    torch.nn.init.normal_(model.null_memory, std=1.0)
    prompt, condition = torch.zeros(2, 1, dtype=torch.long), torch.randn(2, 5)
    plain = generate(model, prompt, 30, generator=torch.Generator().manual_seed(0), condition=condition)
    guided = generate(
        model, prompt, 30, generator=torch.Generator().manual_seed(0), condition=condition, guidance_scale=4.0
    )
    assert not torch.equal(plain, guided)


def test_logits_processor_sees_positions_and_constrains_tokens():
    model = model_for()
    seen = []

    def only_even(position, logits):
        seen.append(position)
        odd = torch.arange(logits.shape[-1]) % 2 == 1
        return logits.masked_fill(odd, float("-inf"))

    out = generate(model, torch.zeros(2, 3, dtype=torch.long), 10, logits_processor=only_even, top_k=5)
    assert seen == list(range(3, 13)) and bool((out[:, 3:] % 2 == 0).all())


def test_length_from_seconds_and_early_stop():
    assert steps_for(None, 2.0, 53.0) == 106
    assert steps_for(12, None, None) == 12
    with pytest.raises(ConfigError, match="how long"):
        steps_for(None, 2.0, None)
    model = model_for()
    out = generate(model, torch.zeros(1, 1, dtype=torch.long), seconds=0.5, steps_per_second=40)
    assert out.shape == (1, 21)
    short = generate(model, torch.zeros(1, 1, dtype=torch.long), 50, max_wall_seconds=0.0)
    assert short.shape == (1, 2)  # stopped after the first token
    with pytest.raises(ConfigError, match="max_seq_len"):
        generate(model, torch.zeros(1, 90, dtype=torch.long), 10)
