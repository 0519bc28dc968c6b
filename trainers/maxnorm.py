"""MaxNorm on classifier rows by projected gradient descent (WB Sec. 3.3, eq. 5): ||W_k||_2 <= delta per class."""

from __future__ import annotations

import torch


def row_norms(weight: torch.Tensor) -> torch.Tensor:
    """||W_k||_2 per class row (K), detached: WB Fig. 6's per-class weight norms."""
    return weight.detach().norm(dim=-1)


def relative_radius(norms: torch.Tensor, thresh: float) -> torch.Tensor:
    """The authors' code: delta = min_k r_k + t (max_k r_k - min_k r_k), r_k the stage-1 row norms, t in [0, 1]."""
    return norms.min() + thresh * (norms.max() - norms.min())


@torch.no_grad()
def project_rows_(weight: torch.Tensor, radius: float | torch.Tensor) -> None:
    """W_k <- W_k min(1, delta / ||W_k||) in place; rows inside the ball are left bit-identical.

    Takes only the weight: the bias is never projected.
    """
    norms = weight.norm(dim=-1, keepdim=True)
    outside = norms > radius
    # clamp_min only guards the division; a zero row is inside every ball and torch.where keeps it as it was.
    weight.copy_(torch.where(outside, weight * (radius / norms.clamp_min(1e-12)), weight))
