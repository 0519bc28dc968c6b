"""Post-hoc changes to a trained classifier: tau-normalisation, the fixed ETF classifier, logit adjustment."""

from __future__ import annotations

import math
from typing import Literal

import torch

from trainers.errors import UserInputError


def tau_normalize(weight: torch.Tensor, tau: float) -> torch.Tensor:
    """W_k / ||W_k||^tau (WB Sec. 3.4; Kang et al. 2020): tau=0 identity, tau=1 unit rows. The bias is not
    an argument: it stays as it is.
    """
    # A zero row stays zero instead of becoming 0/0; tau = 0 divides by exactly 1.0, so it is bit-exact.
    norms = weight.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return weight / norms.pow(tau)


def etf_classifier_weight(num_classes: int, dim: int, seed: int) -> torch.Tensor:
    """Simplex ETF (EWB Sec. 5, Papyan et al. 2020): W = (U M)^T, K x d, float32, with
    M = sqrt(K/(K-1)) (I - 11^T/K) and U a seeded d x K matrix with orthonormal columns (QR of a gaussian).
    Rows have unit norm and pairwise cosine -1/(K-1).
    """
    if num_classes < 2:
        raise UserInputError(f"an ETF classifier needs at least 2 classes, got {num_classes}")
    if dim < num_classes:
        raise UserInputError(f"an ETF classifier needs feature dim >= number of classes ({dim} < {num_classes}); "
                             "use a wider model (e.g. resnet34-cifar, 512-d) or stage1.classifier=linear")
    generator = torch.Generator().manual_seed(seed)
    gaussian = torch.randn(dim, num_classes, generator=generator, dtype=torch.float64)
    orthonormal, _ = torch.linalg.qr(gaussian)
    centering = torch.eye(num_classes, dtype=torch.float64) - 1 / num_classes
    simplex = math.sqrt(num_classes / (num_classes - 1)) * centering
    return (orthonormal @ simplex).T.float().contiguous()


def logit_adjustment(class_prior: torch.Tensor, tau: float,
                     form: Literal["multiplicative", "additive"]) -> tuple[torch.Tensor, torch.Tensor]:
    """Post-hoc logit adjustment as a per-class (scale, offset), applied as z' = z * scale - offset: EWB's
    multiplicative z_k pi_k^(-tau) on the whole logit (bias included), or Menon et al.'s additive
    z_k - tau log pi_k. class_prior: pi_k = n_k / sum_j n_j, K. z * 1 and z - 0 are exact, so each form
    gives the same floating-point logits as its formula written out.
    """
    if form == "multiplicative":
        return class_prior.pow(-tau), torch.zeros_like(class_prior)
    if form == "additive":
        return torch.ones_like(class_prior), tau * class_prior.log()
    raise UserInputError(f"unknown logit adjustment {form!r}; choose multiplicative or additive")
