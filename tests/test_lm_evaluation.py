"""The bag-of-tokens probe: histograms by hand, and a nearest class-mean that separates what can be separated."""

from __future__ import annotations

import pytest
import torch

from course_lib.errors import ConfigError
from course_lib.lm.evaluation import TokenHistogramProbe, token_histograms


def test_histograms_by_hand():
    h = token_histograms(torch.tensor([[0, 0, 2, 3], [1, 1, 1, 1]]), 4)
    assert h.tolist() == [[0.5, 0.0, 0.25, 0.25], [0.0, 1.0, 0.0, 0.0]]
    with pytest.raises(ConfigError):
        token_histograms(torch.zeros(3, dtype=torch.long), 4)


def test_probe_reads_the_class_from_which_tokens_occur():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(60) % 3  # (60,)
    tokens = labels[:, None] * 5 + torch.randint(0, 5, (60, 20), generator=g)  # class c uses ids 5c..5c+4
    probe = TokenHistogramProbe(15).fit(tokens[:30], labels[:30])
    assert probe.accuracy(tokens[30:], labels[30:]) == 1.0
    noise = torch.randint(0, 15, (30, 20), generator=g)  # tokens that say nothing about the label
    assert probe.accuracy(noise, labels[30:]) < 0.7
    with pytest.raises(ConfigError, match="not fitted"):
        TokenHistogramProbe(15).predict(tokens)
