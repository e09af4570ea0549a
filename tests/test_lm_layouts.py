"""Token layouts of residual-VQ codes: each builds and reverts exactly, and matches a hand-made example."""

from __future__ import annotations

import pytest
import torch

from course_lib.errors import ConfigError
from course_lib.lm.layouts import (
    delay_pad_mask,
    delay_pattern,
    flatten_codes,
    merge_coarse_fine,
    offset_levels,
    remove_level_offsets,
    split_coarse_fine,
    steps_per_second,
    undelay,
    unflatten_codes,
)

PAD = 99


def hand_codes() -> torch.Tensor:
    # level q, frame t holds 10 * (q + 1) + t: a0..a3 = 10..13, b = 20.., c = 30..
    return torch.tensor([[[10, 11, 12, 13], [20, 21, 22, 23], [30, 31, 32, 33]]])  # (1, 3, 4)


def test_delay_pattern_by_hand():
    expected = torch.tensor(
        [[[10, 11, 12, 13, PAD, PAD], [PAD, 20, 21, 22, 23, PAD], [PAD, PAD, 30, 31, 32, 33]]]
    )  # level q shifted right by q steps
    delayed = delay_pattern(hand_codes(), PAD)
    assert torch.equal(delayed, expected)
    assert torch.equal(undelay(delayed), hand_codes())
    assert torch.equal(delay_pad_mask(3, 6, n_frames=4), expected[0] == PAD)
    assert torch.equal(
        delay_pad_mask(3, 6), torch.tensor([[0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0]]).bool()
    )


@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 4, 100), (3, 8, 7), (2, 12, 3)])
def test_every_layout_round_trips(shape):
    codes = torch.randint(0, 1024, shape, generator=torch.Generator().manual_seed(sum(shape)))
    batch, levels, frames = shape
    delayed = delay_pattern(codes, 1024)
    assert delayed.shape == (batch, levels, frames + levels - 1)
    assert torch.equal(undelay(delayed), codes)
    flat = flatten_codes(codes)
    assert flat.shape == (batch, levels * frames)
    assert torch.equal(unflatten_codes(flat, levels), codes)
    offset = offset_levels(codes, 1024, first_level=1, base=5)
    assert int(offset.min()) >= 5 + 1024 and int(offset.max()) < 5 + (levels + 1) * 1024
    assert torch.equal(remove_level_offsets(offset, 1024, first_level=1, base=5), codes)
    if levels > 1:
        coarse, fine = split_coarse_fine(codes, 1)
        assert coarse.shape[1] == 1 and fine.shape[1] == levels - 1
        assert torch.equal(merge_coarse_fine(coarse, fine), codes)


def test_flatten_is_frame_major():
    assert flatten_codes(hand_codes()).tolist() == [[10, 20, 30, 11, 21, 31, 12, 22, 32, 13, 23, 33]]
    assert offset_levels(hand_codes(), 100)[0, :, 0].tolist() == [10, 120, 230]  # level q adds q * K


def test_steps_per_second_of_each_layout():
    # MusicGen (sec. 2.2): 4 levels at 50 Hz, 30 s: 1,500 (+3) steps delayed against 6,000 flattened
    assert steps_per_second("flatten", 50, 4, seconds=30) * 30 == 6000
    assert steps_per_second("delay", 50, 4, seconds=30) * 30 == 1503
    assert steps_per_second("coarse_fine", 50, 12) == 600  # MusicLM's 600 acoustic tokens per second
    with pytest.raises(ConfigError, match="Unknown layout"):
        steps_per_second("zigzag", 50, 4)


def test_bad_inputs_get_course_errors():
    with pytest.raises(ConfigError, match=r"\(B, Q, T\)"):
        delay_pattern(torch.zeros(4, 10, dtype=torch.long), PAD)
    with pytest.raises(ConfigError, match="integer"):
        flatten_codes(torch.zeros(1, 4, 10))
    with pytest.raises(ConfigError, match="n_coarse"):
        split_coarse_fine(torch.zeros(1, 4, 10, dtype=torch.long), 4)
    with pytest.raises(ConfigError, match="at most"):
        undelay(torch.zeros(1, 4, 5, dtype=torch.long), n_frames=3)
    with pytest.raises(ConfigError, match="divisible"):
        unflatten_codes(torch.zeros(1, 10, dtype=torch.long), 4)
