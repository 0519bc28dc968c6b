"""Accuracy per class and per Many / Medium / Few split (the rule: trainers/splits.py), and the papers'
diagnostics (FDR, LOS's logit metrics)."""

from __future__ import annotations

import torch

from trainers.results import SplitAccuracy, SplitRule


def per_class_accuracy(logits_or_predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Top-1 accuracy in percent per class (float64, K, on the CPU); NaN for a class with no sample here.

    NaN, not an error: folder data sets may leave a class out of val/test; results carry it as null.
    """
    predictions = logits_or_predictions.argmax(-1) if logits_or_predictions.ndim == 2 else logits_or_predictions
    labels = labels.to(predictions.device)
    totals = torch.bincount(labels, minlength=num_classes).double()
    hits = torch.bincount(labels[predictions == labels], minlength=num_classes).double()
    return torch.where(totals > 0, 100 * hits / totals.clamp_min(1), torch.nan).cpu()


def split_accuracy(per_class_acc: torch.Tensor, rule: SplitRule) -> SplitAccuracy:
    """Mean per-class accuracy over each split's classes (None for an empty split); `all` over every class.

    Classes without a sample in this split (NaN) are left out of the means.
    """
    def mean_of(classes: list[int]) -> float | None:
        values = per_class_acc[classes]
        values = values[~values.isnan()]
        return values.mean().item() if len(values) else None

    overall = mean_of(list(range(len(per_class_acc))))
    if overall is None:
        raise ValueError("no class has a sample in this split; accuracy is undefined")
    return SplitAccuracy(all=overall, many=mean_of(rule.many_classes), medium=mean_of(rule.medium_classes),
                         few=mean_of(rule.few_classes))


def _scatter_matrices(x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """S_B = sum_k n_k (mu_k - mu)(mu_k - mu)^T and S_W = sum_k sum_{i in k} (f_i - mu_k)(f_i - mu_k)^T."""
    num_classes = int(labels.max()) + 1
    counts = torch.bincount(labels, minlength=num_classes).to(x.dtype)
    class_means = _per_class_sum(x, labels, num_classes) / counts.clamp_min(1)[:, None]
    within_offsets = x - class_means[labels]
    between_offsets = class_means - x.mean(dim=0)  # absent classes have n_k = 0, so they add nothing
    return (counts[:, None] * between_offsets).T @ between_offsets, within_offsets.T @ within_offsets


def fisher_discriminant_ratio(features: torch.Tensor, labels: torch.Tensor) -> float:
    """EWB's FDR = tr(S_W^-1 S_B), in float64, with constant feature dimensions dropped first."""
    x = features.detach().cpu().double()
    x = x[:, x.amax(dim=0) > x.amin(dim=0)]  # exact test: a mean of equal values can miss by an ulp
    between, within = _scatter_matrices(x, labels.detach().cpu())
    if torch.linalg.matrix_rank(within, hermitian=True) == within.shape[0]:
        return torch.trace(torch.linalg.solve(within, between)).item()
    # S_W is singular when a class-centred feature matrix has rank < d (fewer samples than dimensions, or
    # collinear features): ALGORITHMS.md's linear solve is then undefined, so the pseudo-inverse stands in.
    return torch.trace(torch.linalg.pinv(within, hermitian=True) @ between).item()


def logits_magnitude_and_rsd(logits: torch.Tensor, labels: torch.Tensor,
                             num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """LOS Sec. 3 (Fig. 3), per class k, on the logit vectors divided by their L1 norm:
    Logits Magnitude LM_k = mean z_k over class-k samples - mean z_k over the other samples;
    Regularized Standard Deviation RSD_k = std of z_k over class-k samples (population std) / LM_k.

    Follows ALGORITHMS.md: the LOS authors' code was not available to check the grouping or the std's
    normalisation. Classes without samples get NaN. Returns two float64 tensors of K on the CPU.
    """
    z = logits.detach().cpu().double()
    z = z / z.abs().sum(-1, keepdim=True).clamp_min(1e-12)
    labels = labels.detach().cpu()
    counts = torch.bincount(labels, minlength=num_classes).double()
    own_logit = z[torch.arange(len(labels)), labels]  # z_{y_i}: each sample's logit of its own class
    own_sum = _per_class_sum(own_logit, labels, num_classes)
    own_mean = own_sum / counts
    magnitude = own_mean - (z.sum(0) - own_sum) / (len(labels) - counts)
    own_std = (_per_class_sum((own_logit - own_mean[labels]).pow(2), labels, num_classes) / counts).sqrt()
    return magnitude, own_std / magnitude


def _per_class_sum(values: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Sums of `values` (N or N x d) over the samples of each class."""
    return torch.zeros(num_classes, *values.shape[1:], dtype=values.dtype).index_add_(0, labels, values)
