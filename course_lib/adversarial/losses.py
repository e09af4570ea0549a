"""The adversarial losses of GAN-trained audio models: SoundStream's hinge losses and feature matching, HiFi-GAN's least squares.

SoundStream (Zeghidour et al. 2021, sec. III-E), as the lecture writes them, with K sub-discriminators
D_k whose outputs have T_k positions t, and L hidden layers D^{(l)}_k:

    L_D        = E_x[ 1/K Σ_k 1/T_k Σ_t max(0, 1 - D_{k,t}(x)) ] + E_x[ 1/K Σ_k 1/T_k Σ_t max(0, 1 + D_{k,t}(G(x))) ]
    L_G^adv    = E_x[ 1/K Σ_{k,t} 1/T_k max(0, 1 - D_{k,t}(G(x))) ]
    L_G^feat   = E_x[ 1/(KL) Σ_{k,l} 1/T_{k,l} Σ_t | D^{(l)}_{k,t}(x) - D^{(l)}_{k,t}(G(x)) | ]

- The hinge losses push real logits above +1 and fake ones below -1 and stop pushing once they are
  there; the generator's adversarial term is also a hinge (SoundStream), not the -D of plain GANs.
- Feature matching compares the discriminator's hidden activations on x and G(x): a reconstruction
  loss in a learnt feature space. ``|·|`` is the paper's "average absolute difference": the mean over
  the feature channels and the positions t of each layer, then the mean over layers and
  sub-discriminators.

HiFi-GAN (Kong et al. 2020, eq. 1-6) trains with least squares (LSGAN, Mao et al. 2017) instead:

    L_adv(D; G) = E[(D(x) - 1)² + D(G(s))²]          L_adv(G; D) = E[(D(G(s)) - 1)²]

summed over its sub-discriminators, plus feature matching summed over layers (λ_fm = 2). The functions
here take one ``reduction`` argument over sub-discriminators (and layers): ``"mean"`` (SoundStream's
1/K, 1/(KL)) or ``"sum"`` (HiFi-GAN's Σ_k). The reconstruction terms are in :mod:`course_lib.codec.losses`.

Every loss takes lists of tensors, one per sub-discriminator, as
:class:`course_lib.adversarial.discriminators.DiscriminatorOutput` holds them, and returns a 0-dim tensor.

Notebooks: notebooks/04_neural_codec.ipynb (SoundStream's), 08_latent_diffusion.ipynb (HiFi-GAN's).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from course_lib.errors import ConfigError

REDUCTIONS = ("mean", "sum")


def _reduce(terms: list[Tensor], reduction: str) -> Tensor:
    if reduction not in REDUCTIONS:
        raise ConfigError(f"Unknown reduction {reduction!r}: use 'mean' (SoundStream, 1/K) or 'sum' (HiFi-GAN, Σ_k).")
    if not terms:
        raise ConfigError("The loss got no discriminator outputs: pass one tensor per sub-discriminator.")
    total = torch.stack(terms).sum()
    return total / len(terms) if reduction == "mean" else total


def _check_pairs(real: Sequence, fake: Sequence, what: str) -> None:
    if len(real) != len(fake):
        raise ConfigError(
            f"{what}: {len(real)} real and {len(fake)} fake outputs; pass the outputs of the same discriminator "
            "for x and G(x)."
        )


# ------------------------------------------------------------------------------------ hinge (SoundStream)
def hinge_discriminator_loss(
    real_logits: Sequence[Tensor], fake_logits: Sequence[Tensor], reduction: str = "mean"
) -> Tensor:
    """L_D: the hinge loss of the discriminators (SoundStream sec. III-E, the lecture's first formula).

    ``mean over batch and positions of max(0, 1 - D_k(x)) + max(0, 1 + D_k(G(x)))``, then 1/K Σ_k.
    Pass ``fake_logits`` computed on ``G(x).detach()`` so that this loss trains only the discriminator.

    Notebook: notebooks/04_neural_codec.ipynb
    """
    _check_pairs(real_logits, fake_logits, "hinge_discriminator_loss")
    terms = [
        torch.relu(1 - real).mean() + torch.relu(1 + fake).mean()
        for real, fake in zip(real_logits, fake_logits, strict=True)
    ]
    return _reduce(terms, reduction)


def hinge_generator_loss(fake_logits: Sequence[Tensor], reduction: str = "mean") -> Tensor:
    """L_G^adv: ``1/K Σ_k mean_t max(0, 1 - D_k(G(x)))`` (SoundStream's adversarial loss for the generator).

    Notebook: notebooks/04_neural_codec.ipynb
    """
    return _reduce([torch.relu(1 - fake).mean() for fake in fake_logits], reduction)


def feature_matching_loss(
    real_features: Sequence[Sequence[Tensor]], fake_features: Sequence[Sequence[Tensor]], reduction: str = "mean"
) -> Tensor:
    """L_G^feat: the mean absolute difference of the discriminators' hidden layers on x and on G(x).

    For each sub-discriminator k and layer l: ``mean |D^(l)_k(x) - D^(l)_k(G(x))|`` over batch, channels
    and positions; then 1/(KL) Σ_{k,l} (``reduction="mean"``, SoundStream) or Σ_{k,l} (``"sum"``,
    HiFi-GAN's eq. 3 summed over its sub-discriminators). The real features are treated as targets
    (detached): this loss trains the generator only.

    Notebook: notebooks/04_neural_codec.ipynb
    """
    _check_pairs(real_features, fake_features, "feature_matching_loss")
    terms = []
    for real_maps, fake_maps in zip(real_features, fake_features, strict=True):
        _check_pairs(real_maps, fake_maps, "feature_matching_loss (layers of one sub-discriminator)")
        terms += [(real.detach() - fake).abs().mean() for real, fake in zip(real_maps, fake_maps, strict=True)]
    return _reduce(terms, reduction)


# ----------------------------------------------------------------------------- least squares (HiFi-GAN)
def least_squares_discriminator_loss(
    real_logits: Sequence[Tensor], fake_logits: Sequence[Tensor], reduction: str = "sum"
) -> Tensor:
    """HiFi-GAN's eq. 1 (LSGAN): ``mean (D_k(x) - 1)² + mean D_k(G(s))²``, summed over k (eq. 6) by default."""
    _check_pairs(real_logits, fake_logits, "least_squares_discriminator_loss")
    terms = [(real - 1).pow(2).mean() + fake.pow(2).mean() for real, fake in zip(real_logits, fake_logits, strict=True)]
    return _reduce(terms, reduction)


def least_squares_generator_loss(fake_logits: Sequence[Tensor], reduction: str = "sum") -> Tensor:
    """HiFi-GAN's eq. 2 (LSGAN): ``mean (D_k(G(s)) - 1)²``, summed over k (eq. 5) by default."""
    return _reduce([(fake - 1).pow(2).mean() for fake in fake_logits], reduction)


# ------------------------------------------------------------------------------ spectral reconstruction
