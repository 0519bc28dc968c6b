"""The papers' losses and regularisers, each one short function (ALGORITHMS.md states them exactly)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F

from trainers.errors import UserInputError

LossKind = Literal["ce", "cb", "cb-bce", "los"]
ClassLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# softmax reaches exactly 1.0 in float32 once a logit leads by ~17, and log(1 - 1) = -inf (times a zero target
# gives NaN). 1 - 1e-7 is the largest clamp that float32 still tells apart from 1 (its spacing there is 6e-8).
_PROB_EPS = 1e-7


def class_balanced_weights(class_counts: list[int], beta: float) -> torch.Tensor:
    """Cui et al. 2019, eq. 2 (effective number): w_k = (1 - beta) / (1 - beta^n_k), normalised to sum K.

    beta = 1 is the limit 1 / n_k (inverse frequency), normalised the same way. Returns float64, K.
    """
    counts = torch.tensor(class_counts, dtype=torch.float64)
    if counts.min() < 1:
        empty = int(counts.argmin())
        raise UserInputError(f"class {empty} has no training images, so it has no class-balanced weight; "
                             "give every class at least one training image")
    raw = 1.0 / counts if beta == 1 else (1 - beta) / (1 - torch.pow(beta, counts))
    return raw / raw.sum() * len(class_counts)


def _sample_weights(class_weights: torch.Tensor, labels: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return class_weights.to(like.device, like.dtype)[labels]


def cb_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
    """EWB code's class-balanced softmax CE: mean_b w_{y_b} CE(z_b, y_b) (tailtune `cb`).

    The mean is over the batch, not normalised by the weights (unlike F.cross_entropy(weight=...)).
    """
    per_sample = F.cross_entropy(logits, labels, reduction="none")
    return (_sample_weights(class_weights, labels, logits) * per_sample).mean()


def cb_bce_softmax(logits: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
    """WB code's "softmax" CB loss (Cui et al.'s code): BCE on p = softmax(z), per-sample weight w_{y_b},
    mean over all B*K entries: (1/BK) sum_b w_{y_b} sum_c -[y_bc log p_bc + (1 - y_bc) log(1 - p_bc)].

    log p comes from log_softmax (exact, keeps the gradient of a badly wrong sample); only 1 - p is clamped.
    """
    one_hot = F.one_hot(labels, logits.shape[-1]).to(logits.dtype)
    log_probs = F.log_softmax(logits, dim=-1)
    log_not_probs = torch.log1p(-log_probs.exp().clamp(max=1 - _PROB_EPS))
    entries = -(one_hot * log_probs + (1 - one_hot) * log_not_probs)
    return (_sample_weights(class_weights, labels, logits)[:, None] * entries).mean()


def over_smoothed_targets(labels: torch.Tensor, num_classes: int, delta: float) -> torch.Tensor:
    """LOS eq. 12: 1 - delta + delta/K on the true class, delta/K elsewhere (delta close to 1 over-smooths)."""
    one_hot = F.one_hot(labels, num_classes).float()
    return one_hot * (1 - delta) + delta / num_classes


def over_smoothed_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, delta: float) -> torch.Tensor:
    """LOS eq. 12: mean_b sum_i -y~_i log softmax(z_b)_i; identical to F.cross_entropy(label_smoothing=delta)."""
    targets = over_smoothed_targets(labels, logits.shape[-1], delta).to(logits.dtype)
    return -(targets * F.log_softmax(logits, dim=-1)).sum(-1).mean()


def feature_regularization(features: torch.Tensor) -> torch.Tensor:
    """EWB eq. 4's FR term: mean_b ||f_b||^2 / 2 on the pooled penultimate features."""
    return features.pow(2).sum(-1).mean() / 2


def make_loss(kind: LossKind, class_counts: list[int], cb_beta: float, over_smoothing: float) -> ClassLoss:
    """The stage-2 classification loss by name: ce | cb | cb-bce | los, as loss(logits, labels)."""
    if kind == "ce":
        return F.cross_entropy
    if kind == "los":
        return lambda logits, labels: over_smoothed_cross_entropy(logits, labels, over_smoothing)
    if kind not in ("cb", "cb-bce"):
        raise UserInputError(f"unknown loss {kind!r}; choose one of ce, cb, cb-bce, los")
    weights = class_balanced_weights(class_counts, cb_beta).float()
    if kind == "cb":
        return lambda logits, labels: cb_cross_entropy(logits, labels, weights)
    return lambda logits, labels: cb_bce_softmax(logits, labels, weights)
