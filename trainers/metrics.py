"""Accuracy per class and per Many / Medium / Few split, and the papers' diagnostics."""

from __future__ import annotations

import math

import numpy as np
import torch

from trainers.results import SplitAccuracy, SplitRule

PAPER_MANY_ABOVE, PAPER_FEW_BELOW = 100, 20
# Relative positions of 100 and 20 on the log-count axis of CIFAR-100-LT IF100 (5..500): log(20)/log(100) and
# log(4)/log(100). Small data sets get their thresholds at the same positions between their n_min and n_max.
_MANY_POSITION, _FEW_POSITION = math.log(20) / math.log(100), math.log(4) / math.log(100)


def split_rule(class_counts: list[int]) -> SplitRule:
    rule = _assign(class_counts, PAPER_MANY_ABOVE, PAPER_FEW_BELOW, "paper: Many > 100, Few < 20 train images")
    if rule.many_classes and rule.medium_classes and rule.few_classes:
        return rule
    n_min, n_max = min(class_counts), max(class_counts)
    ratio = n_max / n_min
    many_above, few_below = n_min * ratio ** _MANY_POSITION, n_min * ratio ** _FEW_POSITION
    scaled = _assign(class_counts, many_above, few_below,
                     f"log-scaled: the paper's 100 / 20 left a split empty for counts {n_min}..{n_max}, so the "
                     "thresholds sit where 100 / 20 sit on CIFAR-100-LT's log-count axis (5..500)")
    empty = [name for name, classes in (("Many", scaled.many_classes), ("Medium", scaled.medium_classes),
                                        ("Few", scaled.few_classes)) if not classes]
    if empty:
        scaled.rule += f"; still empty: {', '.join(empty)} (the class counts are too even)"
    return scaled


def _assign(class_counts: list[int], many_above: float, few_below: float, text: str) -> SplitRule:
    return SplitRule(
        many_above=many_above, few_below=few_below, rule=text,
        many_classes=[k for k, n in enumerate(class_counts) if n > many_above],
        medium_classes=[k for k, n in enumerate(class_counts) if few_below <= n <= many_above],
        few_classes=[k for k, n in enumerate(class_counts) if n < few_below])


def per_class_accuracy(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Top-1 accuracy (percent) per class; NaN for a class with no sample in this split."""
    predictions = logits.argmax(-1) if logits.ndim == 2 else logits
    labels = labels.to(predictions.device)
    totals = torch.bincount(labels, minlength=num_classes).double()
    hits = torch.bincount(labels[predictions == labels], minlength=num_classes).double()
    return torch.where(totals > 0, 100 * hits / totals.clamp_min(1), torch.nan).cpu()


def split_accuracy(per_class: torch.Tensor, rule: SplitRule) -> SplitAccuracy:
    """Mean per-class accuracy over each split's classes (classes absent from this split are skipped)."""
    def mean_of(classes: list[int]) -> float | None:
        values = per_class[classes] if classes else per_class[:0]
        values = values[~values.isnan()]
        return values.mean().item() if len(values) else None

    all_classes = list(range(len(per_class)))
    return SplitAccuracy(all=mean_of(all_classes) or 0.0, many=mean_of(rule.many_classes),
                         medium=mean_of(rule.medium_classes), few=mean_of(rule.few_classes))


def fisher_discriminant_ratio(features: torch.Tensor, labels: torch.Tensor) -> float:
    """EWB's FDR = tr(S_W^-1 S_B) in float64, constant feature dimensions dropped first."""
    x = features.detach().double().cpu().numpy()
    y = labels.detach().cpu().numpy()
    x = x[:, x.std(axis=0) > 0]
    mean = x.mean(axis=0)
    between = np.zeros((x.shape[1], x.shape[1]))
    within = np.zeros_like(between)
    for k in np.unique(y):
        members = x[y == k]
        centred = members - members.mean(axis=0)
        offset = (members.mean(axis=0) - mean)[:, None]
        between += len(members) * offset @ offset.T
        within += centred.T @ centred
    # S_W is singular when features outnumber samples; least squares then gives the pseudo-inverse solution.
    solution = np.linalg.lstsq(within, between, rcond=None)[0]
    return float(np.trace(solution))


def logits_magnitude_and_rsd(logits: torch.Tensor, labels: torch.Tensor,
                             num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """LOS Sec. 3: per class k, on logits divided by their L1 norm,
    Logits Magnitude = mean z_k over class-k samples - mean z_k over the other samples, and
    Regularized Standard Deviation = std of z_k over class-k samples / Logits Magnitude.
    Follows ALGORITHMS.md; classes without samples get NaN.
    """
    z = logits.detach().double().cpu()
    z = z / z.abs().sum(-1, keepdim=True).clamp_min(1e-12)
    labels = labels.cpu()
    magnitude = torch.full((num_classes,), torch.nan, dtype=torch.float64)
    rsd = torch.full_like(magnitude, torch.nan)
    for k in range(num_classes):
        mine = labels == k
        if mine.sum() < 1 or (~mine).sum() < 1:
            continue
        magnitude[k] = z[mine, k].mean() - z[~mine, k].mean()
        rsd[k] = z[mine, k].std(unbiased=False) / magnitude[k]
    return magnitude, rsd
