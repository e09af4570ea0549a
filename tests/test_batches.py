"""The one random-crop helper and the two ways training draws batches (course_lib.data.batches)."""

import pytest
import torch

from course_lib.data.batches import GeneratorBatches, StepBatches, random_crops, step_generator
from course_lib.errors import ConfigError


def test_crops_are_contiguous_windows_of_one_clip_drawn_clip_then_start():
    audio = torch.arange(4 * 100, dtype=torch.float32).reshape(4, 100)  # clip i holds 100 i ... 100 i + 99
    crops = random_crops(audio, 3, 10, torch.Generator().manual_seed(5))
    assert crops.shape == (3, 10)
    assert torch.equal(crops[:, 1:] - crops[:, :-1], torch.ones(3, 9))  # contiguous samples
    generator = torch.Generator().manual_seed(5)  # by hand: the clips first, then the starts
    clips, starts = torch.randint(4, (3,), generator=generator), torch.randint(91, (3,), generator=generator)
    assert torch.equal(crops[:, 0], clips * 100.0 + starts)


def test_crops_of_spectrograms_keep_every_band_and_start_on_the_hop_grid():
    mels = torch.arange(2 * 3 * 50, dtype=torch.float32).reshape(2, 3, 50)
    crops = random_crops(mels, 6, 8, torch.Generator().manual_seed(0), hop=4)
    assert crops.shape == (6, 3, 8)
    starts = crops[:, 0, 0] % 50
    assert torch.all(starts % 4 == 0)
    assert torch.equal(crops[:, 1] - crops[:, 0], torch.full((6, 8), 50.0))  # band 1 is band 0 shifted by 50
    with pytest.raises(ConfigError, match="longer than the clips"):
        random_crops(mels, 1, 51)


def test_step_batches_depend_only_on_the_step_and_generator_batches_on_the_run():
    audio = torch.randn(4, 100)
    batches = StepBatches(lambda g: random_crops(audio, 3, 10, g), seed=2)
    assert torch.equal(batches(7), batches(7)) and not torch.equal(batches(7), batches(8))
    assert torch.equal(batches(7), random_crops(audio, 3, 10, step_generator(2, 7)))
    drawn = GeneratorBatches(lambda g: random_crops(audio, 3, 10, g), torch.Generator().manual_seed(0))
    assert not torch.equal(drawn(0), drawn(0))  # one generator: every call draws anew
