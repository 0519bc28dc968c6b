"""The papers' losses, each one short function (ALGORITHMS.md states them exactly)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

# BCE's log(1 - p) is -inf at p = 1, which softmax reaches in float32 for confident logits.
_PROB_EPS = 1e-7


def class_balanced_weights(class_counts: list[int], beta: float) -> torch.Tensor:
    """Cui et al. 2019: w_k = (1 - beta) / (1 - beta^n_k), normalised to sum K; beta = 1 is 1 / n_k."""
    counts = torch.tensor(class_counts, dtype=torch.float64)
    raw = 1.0 / counts if beta == 1 else (1 - beta) / (1 - torch.pow(beta, counts))
    return raw / raw.sum() * len(class_counts)


def cb_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
    """EWB code's class-balanced loss: mean_b w_{y_b} CE(z_b, y_b) (tailtune `cb`)."""
    weights = class_weights.to(logits.device, logits.dtype)[labels]
    return (weights * F.cross_entropy(logits, labels, reduction="none")).mean()


def cb_bce_softmax(logits: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
    """WB code's "softmax" CB loss: BCE on softmax probabilities, weight w_{y_b}, mean over B*K entries."""
    probs = F.softmax(logits, dim=-1).clamp(_PROB_EPS, 1 - _PROB_EPS)
    one_hot = F.one_hot(labels, logits.shape[-1]).to(probs.dtype)
    entries = -(one_hot * probs.log() + (1 - one_hot) * (1 - probs).log())
    weights = class_weights.to(logits.device, logits.dtype)[labels]
    return (weights[:, None] * entries).mean()


def over_smoothed_targets(labels: torch.Tensor, num_classes: int, delta: float) -> torch.Tensor:
    """LOS: 1 - delta + delta/K on the true class, delta/K elsewhere (delta close to 1 over-smooths)."""
    one_hot = F.one_hot(labels, num_classes).float()
    return one_hot * (1 - delta) + delta / num_classes


def over_smoothed_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, delta: float) -> torch.Tensor:
    targets = over_smoothed_targets(labels, logits.shape[-1], delta).to(logits.dtype)
    return -(targets * F.log_softmax(logits, dim=-1)).sum(-1).mean()


def feature_regularization(features: torch.Tensor) -> torch.Tensor:
    """EWB's FR term: mean_b ||f_b||^2 / 2 on the pooled features."""
    return features.pow(2).sum(-1).mean() / 2


def make_loss(kind: str, class_counts: list[int], cb_beta: float,
              over_smoothing: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The stage-2 loss by name: ce | cb | cb-bce | los."""
    weights = class_balanced_weights(class_counts, cb_beta).float()
    if kind == "cb":
        return lambda logits, labels: cb_cross_entropy(logits, labels, weights)
    if kind == "cb-bce":
        return lambda logits, labels: cb_bce_softmax(logits, labels, weights)
    if kind == "los":
        return lambda logits, labels: over_smoothed_cross_entropy(logits, labels, over_smoothing)
    return F.cross_entropy
