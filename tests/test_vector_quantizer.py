"""VectorQuantizer: straight-through gradient, loss terms, EMA, dead codes, k-means init, cosine, shapes, errors."""

import pytest
import torch
import torch.nn.functional as F

from course_lib.config import seed_everything
from course_lib.errors import AudioInputError, ConfigError
from course_lib.quantize.vector_quantizer import VectorQuantizer

cuda_only = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA GPU on this machine; run `make gpu-check` on one"
)


def z_e(*shape: int, seed: int = 0, requires_grad: bool = False) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).requires_grad_(requires_grad)


def test_straight_through_gradient_equals_the_gradient_at_z_q():
    vq = VectorQuantizer(dim=4, codebook_size=16)
    x = z_e(2, 4, 10, requires_grad=True)  # (B, D, T)
    target = z_e(2, 4, 10, seed=1)
    out = vq(x)
    ((out.quantized - target) ** 3).sum().backward()  # a loss on z_q only, no VQ terms
    z_q = vq.decode(out.indices).detach().requires_grad_()
    ((z_q - target) ** 3).sum().backward()
    assert torch.equal(out.quantized, z_q)  # the value is z_q exactly
    assert torch.equal(x.grad, z_q.grad)  # the gradient is copied to z_e unchanged


def test_loss_terms_equal_their_formulas_and_send_gradients_where_the_paper_says():
    vq = VectorQuantizer(dim=4, codebook_size=16, beta=0.25)
    x = z_e(3, 4, 7, requires_grad=True)
    out = vq(x)
    e = vq.codebook[out.indices].movedim(-1, 1)  # (B, D, T) chosen codes
    expected = ((x - e) ** 2).mean()
    torch.testing.assert_close(out.codebook_loss, expected)  # ||sg[z_e] - e||²
    torch.testing.assert_close(out.commitment_loss, 0.25 * expected)  # β ||z_e - sg[e]||²
    torch.testing.assert_close(out.loss, 1.25 * expected)
    out.codebook_loss.backward(retain_graph=True)  # moves only the codes...
    assert x.grad is None and vq.codebook.grad.abs().sum() > 0
    vq.codebook.grad = None
    out.commitment_loss.backward()  # ...and commitment only the encoder output
    assert vq.codebook.grad is None and x.grad.abs().sum() > 0


def test_ema_step_equals_the_hand_computed_update():
    vq = VectorQuantizer(dim=2, codebook_size=3, use_ema=True, decay=0.9, eps=1e-5)
    codebook = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    vq.codebook.copy_(codebook)
    vq.embed_sum.copy_(codebook)
    x = torch.tensor([[[1.0, 2.0, 9.0], [0.0, 1.0, 1.0]]])  # (1, 2, 3): vectors (1,0) (2,1) (9,1)
    out = vq.train()(x)
    assert out.indices.tolist() == [[0, 0, 1]]
    assert out.codebook_loss == 0  # the EMA replaces the codebook loss
    counts = torch.tensor([2.0, 1.0, 0.0])
    sums = torch.tensor([[3.0, 1.0], [9.0, 1.0], [0.0, 0.0]])
    cluster_size = 0.9 * torch.ones(3) + 0.1 * counts  # N_k = γ N_k + (1-γ) n_k, starting from 1
    embed_sum = 0.9 * codebook + 0.1 * sums  # m_k = γ m_k + (1-γ) Σ z_e
    n = cluster_size.sum()
    smoothed = (cluster_size + 1e-5) / (n + 3 * 1e-5) * n  # Laplace smoothing
    torch.testing.assert_close(vq.cluster_size, cluster_size)
    torch.testing.assert_close(vq.embed_sum, embed_sum)
    torch.testing.assert_close(vq.codebook, embed_sum / smoothed[:, None])
    assert "codebook" not in dict(vq.named_parameters())  # a buffer: no optimizer touches it


def test_ema_does_not_move_the_codebook_in_eval_mode():
    vq = VectorQuantizer(dim=4, codebook_size=8, use_ema=True).eval()
    before = vq.codebook.clone()
    vq(z_e(2, 4, 5))
    assert torch.equal(vq.codebook, before)


@pytest.mark.parametrize("use_ema", [False, True])
def test_dead_codes_are_replaced_by_encoder_outputs(use_ema):
    vq = VectorQuantizer(dim=2, codebook_size=4, dead_code_steps=2, use_ema=use_ema)
    x = 5 + z_e(1, 2, 6)  # every vector is nearest to the same code
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[5.0, 5.0], [-50.0, 0.0], [0.0, -50.0], [-50.0, -50.0]]))
        if use_ema:
            vq.embed_sum.copy_(vq.codebook)
    vq.train()
    vq(x)
    vq(x)
    assert (vq.codebook[1:].norm(dim=1) > 45).all()  # kept while the steps run
    assert vq.steps_unused.tolist() == [0, 2, 2, 2]
    out = vq(x)  # unused for 2 steps: replaced at the start of the next one
    vectors = x[0].t()  # (6, 2)
    # Each restarted code is one of the batch's vectors; with EMA the same step then moves it by
    # (1 - decay) towards the mean of the vectors assigned to it: 1% of distances below 3.
    gap = torch.cdist(vq.codebook[1:].detach(), vectors).min(1).values.max()
    assert gap < (0.03 if use_ema else 1e-6)
    assert out.usage > 0.25  # the restarted codes are used at once


def test_restarts_draw_from_the_global_generator_at_every_step():
    """In one process a restart's rows are ``torch.randint(N, (K,))``, drawn at every training step with
    dead codes or not: the shipped checkpoints were trained so, and their commands must reproduce them."""
    vq = VectorQuantizer(dim=2, codebook_size=4, dead_code_steps=1).train()
    x = 5 + z_e(1, 2, 6)  # every vector is nearest to code 0
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[5.0, 5.0], [-50.0, 0.0], [0.0, -50.0], [-50.0, -50.0]]))
    torch.manual_seed(3)
    vq(x)  # step 1: no code dead yet; codes 1-3 go unused
    vq(x)  # step 2: codes 1-3 restarted before the look-up
    torch.manual_seed(3)
    torch.randint(6, (4,))  # step 1's draw
    rows = torch.randint(6, (4,))  # step 2's
    assert torch.equal(vq.codebook[1:].detach(), x[0].t()[rows[1:]])


def test_kmeans_initialisation_from_the_first_batch():
    seed_everything(0)
    centers = torch.tensor([[5.0, 0.0], [-5.0, 0.0], [0.0, 5.0], [0.0, -5.0]])
    x = (centers[:, :, None] + 0.1 * z_e(4, 2, 50)).permute(1, 0, 2).reshape(1, 2, 200)  # (1, 2, 200)
    vq = VectorQuantizer(dim=2, codebook_size=4, kmeans_init=True).train()
    out = vq(x)
    assert bool(vq.initialised)
    assert torch.cdist(centers, vq.codebook).min(1).values.max() < 0.1
    assert out.perplexity > 3.9  # all four codes used evenly
    before = vq.codebook.detach().clone()
    vq(x + 1)  # initialises only once
    assert torch.equal(vq.codebook, before)
    with pytest.raises(ConfigError, match="at least codebook_size"):
        VectorQuantizer(dim=2, codebook_size=400, kmeans_init=True).train()(x)


def test_cosine_codes_are_unit_vectors_chosen_by_angle():
    vq = VectorQuantizer(dim=8, codebook_size=32, cosine=True, dead_code_steps=1).train()
    x = z_e(2, 8, 9, requires_grad=True)
    for _ in range(2):  # restarts between steps leave the autograd graph intact
        out = vq(x)
        (out.quantized.sum() + out.loss).backward()
    flat = x.movedim(1, -1).reshape(-1, 8)
    expected = (F.normalize(flat, dim=1) @ F.normalize(vq.codebook, dim=1).t()).argmax(1)
    assert torch.equal(out.indices.flatten(), expected)
    torch.testing.assert_close(out.quantized.norm(dim=1), torch.ones(2, 9))


@pytest.mark.parametrize("shape", [(2, 6, 11), (2, 6, 3, 5)])  # (B, D, T) and (B, D, H, W)
def test_eval_output_equals_decoding_the_indices(shape):
    vq = VectorQuantizer(dim=6, codebook_size=32).eval()
    x = z_e(*shape, requires_grad=True)
    out = vq(x)
    assert out.quantized.shape == shape and out.indices.shape == (shape[0], *shape[2:])
    assert torch.equal(out.quantized, vq.decode(out.indices))
    assert torch.equal(vq.encode(x), out.indices)


def test_runs_in_float32_under_autocast():
    vq = VectorQuantizer(dim=8, codebook_size=64, use_ema=True)
    x = z_e(2, 8, 30).bfloat16()
    expected = vq.eval()(x.float()).indices
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = vq.train()(x)  # the EMA update runs in float32 too
    assert out.quantized.dtype == torch.float32 and vq.codebook.dtype == torch.float32
    assert torch.equal(out.indices, expected)


def test_perplexity_and_usage():
    vq = VectorQuantizer(dim=3, codebook_size=8)
    every_code_once = vq.codebook.detach().t()[None]  # (1, 3, 8)
    out = vq(every_code_once)
    assert out.usage == 1 and out.perplexity == pytest.approx(8)
    one_code = vq.codebook.detach()[0][None, :, None].expand(1, 3, 10)
    out = vq(one_code)
    assert out.usage == pytest.approx(1 / 8) and out.perplexity == pytest.approx(1)


def test_training_is_reproducible_from_a_seed():
    def run() -> torch.Tensor:
        seed_everything(0)
        vq = VectorQuantizer(dim=4, codebook_size=16, use_ema=True, dead_code_steps=1, kmeans_init=True).train()
        for step in range(3):
            out = vq(z_e(2, 4, 20, seed=step))
        return torch.cat([vq.codebook.flatten(), out.indices.flatten().float()])

    assert torch.equal(run(), run())


def test_bad_input_and_options_raise_errors_that_name_the_fix():
    vq = VectorQuantizer(dim=4, codebook_size=8)
    with pytest.raises(AudioInputError, match="transpose"):
        vq(torch.randn(2, 10, 4))  # (B, T, D) instead of (B, D, T)
    with pytest.raises(AudioInputError, match=r"\(B, 4, T\)"):
        vq(torch.randn(4, 10))
    with pytest.raises(AudioInputError, match="NaN"):
        vq(torch.full((1, 4, 3), float("nan")))
    with pytest.raises(ConfigError, match="decay"):
        VectorQuantizer(dim=4, codebook_size=8, use_ema=True, decay=1.5)


@pytest.mark.cuda
@cuda_only
def test_cuda_matches_cpu():
    vq = VectorQuantizer(dim=8, codebook_size=256, use_ema=True)
    x = z_e(4, 8, 100)
    cpu = vq.eval()(x)
    gpu = vq.cuda()(x.cuda())
    assert torch.equal(gpu.indices.cpu(), cpu.indices)
    torch.testing.assert_close(gpu.quantized.cpu(), cpu.quantized)
    vq.train()(x.cuda())  # EMA and statistics run on the GPU
