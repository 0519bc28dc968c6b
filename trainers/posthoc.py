"""Post-hoc changes to a trained classifier: tau-normalisation, the fixed ETF classifier, logit adjustment."""

from __future__ import annotations

import math

import torch

from trainers.errors import UserInputError


def tau_normalize(weight: torch.Tensor, tau: float) -> torch.Tensor:
    """W_k / ||W_k||^tau (WB Sec. 3.4; Kang et al.): tau=0 identity, tau=1 unit rows. Bias is not touched."""
    norms = weight.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return weight / norms.pow(tau)


def etf_classifier_weight(num_classes: int, dim: int, seed: int) -> torch.Tensor:
    """Simplex ETF (EWB Sec. 5): W = (U M)^T with M = sqrt(K/(K-1)) (I - 11^T/K), U: d x K orthonormal columns."""
    if dim < num_classes:
        raise UserInputError(f"an ETF classifier needs feature dim >= classes ({dim} < {num_classes}); "
                             "use a wider model or classifier=linear")
    generator = torch.Generator().manual_seed(seed)
    orthonormal, _ = torch.linalg.qr(torch.randn(dim, num_classes, generator=generator, dtype=torch.float64))
    centering = torch.eye(num_classes, dtype=torch.float64) - torch.full((num_classes, num_classes), 1 / num_classes,
                                                                         dtype=torch.float64)
    simplex = math.sqrt(num_classes / (num_classes - 1)) * centering
    return (orthonormal @ simplex).T.float().contiguous()


def logit_adjust(logits: torch.Tensor, class_prior: torch.Tensor, tau: float, form: str) -> torch.Tensor:
    """EWB's multiplicative z_k pi_k^(-tau) on the whole logit, or additive z_k - tau log pi_k (Menon et al.)."""
    prior = class_prior.to(logits.device, logits.dtype)
    if form == "multiplicative":
        return logits * prior.pow(-tau)
    return logits - tau * prior.log()
