"""ResidualVQ: the residual recursion by hand, straight-through gradients, quantizer dropout, bitrate."""

import math

import pytest
import torch

from course_lib.codec.residual_vq import ResidualVQ
from course_lib.errors import AudioInputError, ConfigError


def fixed_rvq(n_q: int = 3, dim: int = 2, size: int = 4, use_ema: bool = False) -> ResidualVQ:
    torch.manual_seed(0)
    rvq = ResidualVQ(dim, size, n_q, use_ema=use_ema)
    with torch.no_grad():  # level i: codes at scale 2^-i, so each level refines the previous one
        for i, level in enumerate(rvq.levels):
            level.codebook.copy_(torch.randn(size, dim) * 2.0**-i)
    return rvq.eval()


def test_codes_follow_the_residual_recursion_by_hand():
    rvq = fixed_rvq()
    z = torch.randn(2, 2, 5)  # (B, D, T)
    codes = rvq.encode(z)
    assert codes.shape == (2, 3, 5) and codes.dtype == torch.long
    residual, total = z.clone(), torch.zeros_like(z)
    for i, level in enumerate(rvq.levels):
        flat = residual.movedim(1, -1)  # (B, T, D)
        expected = torch.cdist(flat, level.codebook[None].expand(2, -1, -1)).argmin(-1)  # nearest code, (B, T)
        assert torch.equal(codes[:, i], expected)
        chosen = level.codebook[expected].movedim(-1, 1)  # (B, D, T)
        total, residual = total + chosen, residual - chosen
    torch.testing.assert_close(rvq.decode(codes), total)
    out = rvq(z)
    assert torch.equal(out.codes, codes) and torch.equal(out.quantized, total)  # forward's value is exactly Σ codes


def test_more_levels_reduce_the_error():
    torch.manual_seed(0)
    rvq = ResidualVQ(dim=4, codebook_size=16, n_q=6, kmeans_init=True, use_ema=True)
    z = torch.randn(8, 4, 64)
    rvq.train()
    rvq(z, n_q=6)  # k-means initialisation of every level, each on the residual of the ones before
    rvq.eval()
    errors = [(rvq.decode(rvq.encode(z, n_q=n)) - z).pow(2).mean().item() for n in range(1, 7)]
    assert all(later < earlier for earlier, later in zip(errors, errors[1:], strict=False)), errors
    assert errors[-1] < 0.2 * errors[0]


def test_straight_through_gradient_is_the_identity_over_all_stages():
    rvq = fixed_rvq()
    z = torch.randn(1, 2, 7, requires_grad=True)
    out = rvq(z)
    weights = torch.randn_like(out.quantized)
    (grad,) = torch.autograd.grad((out.quantized * weights).sum(), z)
    torch.testing.assert_close(grad, weights)  # d z_q / d z = I, not n_q · I


def test_every_level_commitment_loss_reaches_the_encoder():
    rvq = fixed_rvq()
    z = torch.randn(1, 2, 7, requires_grad=True)
    out = rvq(z)
    # Σ_i β mean ||r_i - sg[e_i]||² with r_i = z - Σ_{j<i} sg[e_j]: compute it by hand.
    residual, expected = z, 0.0
    for i, level in enumerate(rvq.levels):
        chosen = level.codebook[out.codes[0, i]].T[None]  # (1, D, T)
        expected = expected + 0.25 * (residual - chosen).pow(2).mean()
        residual = residual - chosen
    torch.testing.assert_close(out.commitment_loss, expected)
    (grad,) = torch.autograd.grad(out.commitment_loss, z)
    (grad_expected,) = torch.autograd.grad(expected, z)
    torch.testing.assert_close(grad, grad_expected)


def test_quantizer_dropout_draws_a_number_of_levels_per_batch():
    torch.manual_seed(0)
    rvq = ResidualVQ(2, 4, n_q=8, quantizer_dropout=1.0).train()
    seen = {rvq(torch.randn(1, 2, 3)).n_q for _ in range(60)}
    assert seen == set(range(1, 9))  # uniform over 1..N_q
    rvq.eval()
    assert rvq(torch.randn(1, 2, 3)).n_q == 8  # evaluation uses every level
    no_dropout = ResidualVQ(2, 4, n_q=8, quantizer_dropout=0.0).train()
    assert {no_dropout(torch.randn(1, 2, 3)).n_q for _ in range(10)} == {8}


def test_bitrate_is_frames_times_levels_times_bits():
    rvq = ResidualVQ(8, 1024, n_q=32)
    # EnCodec at 24 kHz: 75 frames/s, 1,024 codes: 2 / 4 / 8 / 16 / 32 levels = 1.5 / 3 / 6 / 12 / 24 kbps.
    assert [rvq.bitrate(75, n) for n in (2, 4, 8, 16, 32)] == [1500, 3000, 6000, 12000, 24000]
    assert rvq.bits_per_frame == math.log2(1024) == 10
    with pytest.raises(ConfigError, match="between 1 and 32"):
        rvq.bitrate(75, 33)


def test_decode_rejects_bad_codes_with_course_errors():
    rvq = fixed_rvq()
    with pytest.raises(AudioInputError, match=r"\(B, n_q, T\)"):
        rvq.decode(torch.zeros(3, 5, dtype=torch.long))
    with pytest.raises(AudioInputError, match="integers"):
        rvq.decode(torch.zeros(1, 2, 5))
    with pytest.raises(AudioInputError, match="another model"):
        rvq.decode(torch.full((1, 2, 5), 7))
