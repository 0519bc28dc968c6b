"""Accuracy per class and per Many / Medium / Few split, and the papers' diagnostics (FDR, LOS's logit metrics)."""

from __future__ import annotations

import math

import torch

from trainers.errors import UserInputError
from trainers.results import SplitAccuracy, SplitRule

PAPER_MANY_ABOVE, PAPER_FEW_BELOW = 100, 20
# The papers' own benchmarks: their Many / Medium / Few are the papers' groups there, even where one is empty
# (CIFAR-10-LT, CIFAR-100-LT IF 10), so tailtune's numbers compare with theirs.
PAPER_DATASETS = frozenset({"cifar10-lt", "cifar100-lt", "imagenet-lt", "inat2018"})
# Where 100 and 20 sit on CIFAR-100-LT IF100's log-count axis (5..500): log(100/5)/log(100) = 0.65 and
# log(20/5)/log(100) = 0.30. Small data sets get their thresholds at the same positions between n_min and n_max.
_MANY_POSITION = math.log(PAPER_MANY_ABOVE / 5) / math.log(100)
_FEW_POSITION = math.log(PAPER_FEW_BELOW / 5) / math.log(100)
_PAPER_RULE = "paper: Many > 100, Few < 20 train images"


def split_rule(class_counts: list[int], dataset: str) -> SplitRule:
    """Many n_k > 100, Medium 20..100, Few n_k < 20 (the papers).

    On the papers' data sets (PAPER_DATASETS) that rule always holds and an empty split stays empty (its
    accuracy null). Elsewhere, where it leaves a split empty, log-scaled thresholds take over (small data sets);
    a split still empty then (near-uniform counts) stays empty. The rule's text says which applied.
    """
    if min(class_counts) < 1:
        raise UserInputError(f"class {class_counts.index(min(class_counts))} has no training images; "
                             "give every class at least one training image")
    rule = _assign(class_counts, PAPER_MANY_ABOVE, PAPER_FEW_BELOW, _PAPER_RULE)
    if dataset in PAPER_DATASETS:
        return _note_empty(rule, f"kept empty on {dataset}, as in the papers")
    if rule.many_classes and rule.medium_classes and rule.few_classes:
        return rule
    n_min, n_max = min(class_counts), max(class_counts)
    ratio = n_max / n_min
    many_above, few_below = n_min * ratio ** _MANY_POSITION, n_min * ratio ** _FEW_POSITION
    scaled = _assign(class_counts, many_above, few_below,
                     f"log-scaled: the paper's 100 / 20 left a split empty for counts {n_min}..{n_max}, so "
                     f"Many > {many_above:.1f} and Few < {few_below:.1f} sit where 100 / 20 sit on "
                     "CIFAR-100-LT IF100's log-count axis (5..500)")
    return _note_empty(scaled, "the class counts are too even to fill them")


def _note_empty(rule: SplitRule, why: str) -> SplitRule:
    empty = [name for name, classes in (("Many", rule.many_classes), ("Medium", rule.medium_classes),
                                        ("Few", rule.few_classes)) if not classes]
    if empty:
        rule.rule += f"; empty: {', '.join(empty)} ({why})"
    return rule


def _assign(class_counts: list[int], many_above: float, few_below: float, text: str) -> SplitRule:
    return SplitRule(
        many_above=many_above, few_below=few_below, rule=text,
        many_classes=[k for k, n in enumerate(class_counts) if n > many_above],
        medium_classes=[k for k, n in enumerate(class_counts) if few_below <= n <= many_above],
        few_classes=[k for k, n in enumerate(class_counts) if n < few_below])


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
