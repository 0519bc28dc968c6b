"""MaxNorm on classifier rows by projected gradient descent (WB, Sec. 3.3): ||W_k||_2 <= delta per class."""

from __future__ import annotations

import torch


def row_norms(weight: torch.Tensor) -> torch.Tensor:
    return weight.detach().norm(dim=-1)


def relative_radius(norms: torch.Tensor, thresh: float) -> torch.Tensor:
    """The authors' code: delta = min_k r_k + t (max_k r_k - min_k r_k), from the stage-1 row norms."""
    return norms.min() + thresh * (norms.max() - norms.min())


@torch.no_grad()
def project_rows_(weight: torch.Tensor, radius: float | torch.Tensor) -> None:
    """W_k <- W_k min(1, delta / ||W_k||) in place; rows inside the ball are left bit-identical.

    Takes only the weight: the bias is never projected.
    """
    norms = weight.norm(dim=-1, keepdim=True)
    outside = norms > radius
    weight.copy_(torch.where(outside, weight * (radius / norms.clamp_min(1e-12)), weight))
