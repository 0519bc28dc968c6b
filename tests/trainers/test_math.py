"""The math that could silently be wrong, checked against hand computations and direct formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trainers.augment import crop_at, hflip, random_crop_flip
from trainers.data import lt_counts
from trainers.losses import (
    cb_bce_softmax,
    cb_cross_entropy,
    class_balanced_weights,
    over_smoothed_cross_entropy,
    over_smoothed_targets,
)
from trainers.maxnorm import project_rows_, relative_radius, row_norms
from trainers.metrics import fisher_discriminant_ratio, logits_magnitude_and_rsd, split_rule
from trainers.posthoc import etf_classifier_weight, logit_adjust, tau_normalize


def test_maxnorm_projection_caps_every_row_and_leaves_inside_rows_and_bias_alone() -> None:
    torch.manual_seed(0)
    layer = torch.nn.Linear(16, 6)
    with torch.no_grad():
        layer.weight.mul_(torch.tensor([0.1, 0.2, 5.0, 8.0, 0.3, 12.0])[:, None])
    before_weight, before_bias = layer.weight.detach().clone(), layer.bias.detach().clone()
    radius = 1.0
    inside = row_norms(before_weight) <= radius
    project_rows_(layer.weight.data, radius)
    assert (row_norms(layer.weight) <= radius + 1e-6).all()
    assert torch.equal(layer.weight[inside], before_weight[inside])
    assert torch.allclose(row_norms(layer.weight[~inside]), torch.full(((~inside).sum(),), radius))
    assert torch.equal(layer.bias, before_bias)


def test_relative_radius_is_min_plus_t_times_range() -> None:
    norms = torch.tensor([2.0, 3.5, 7.0, 4.0])
    assert relative_radius(norms, 0.1).item() == pytest.approx(2.0 + 0.1 * (7.0 - 2.0))
    assert relative_radius(norms, 0.0).item() == pytest.approx(2.0)
    assert relative_radius(norms, 1.0).item() == pytest.approx(7.0)


def test_tau_norm_zero_is_identity_and_one_gives_unit_rows() -> None:
    weight = torch.randn(7, 5) * torch.arange(1, 8)[:, None]
    assert torch.equal(tau_normalize(weight, 0.0), weight)
    assert torch.allclose(row_norms(tau_normalize(weight, 1.0)), torch.ones(7))
    norms = row_norms(weight)
    assert torch.allclose(row_norms(tau_normalize(weight, 1.9)), norms ** (1 - 1.9), rtol=1e-5)


def test_class_balanced_weights_match_the_formula_by_hand() -> None:
    counts, beta = [100, 10, 1], 0.9
    raw = [(1 - 0.9) / (1 - 0.9 ** 100), (1 - 0.9) / (1 - 0.9 ** 10), (1 - 0.9) / (1 - 0.9 ** 1)]
    expected = [3 * w / sum(raw) for w in raw]
    assert class_balanced_weights(counts, beta).tolist() == pytest.approx(expected)
    inverse = [1 / 100, 1 / 10, 1.0]
    assert class_balanced_weights(counts, 1.0).tolist() == pytest.approx([3 * w / sum(inverse) for w in inverse])
    assert class_balanced_weights([500, 50, 5], 0.9999).sum().item() == pytest.approx(3)


def test_cb_losses_equal_their_direct_definitions() -> None:
    torch.manual_seed(1)
    logits, labels = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 2])
    weights = torch.tensor([0.2, 0.5, 1.3, 2.0])
    expected_ce = sum(weights[y] * F.cross_entropy(logits[b:b + 1], labels[b:b + 1]) for b, y in enumerate(labels)) / 6
    assert cb_cross_entropy(logits, labels, weights).item() == pytest.approx(expected_ce.item(), rel=1e-6)
    probs = F.softmax(logits, dim=-1)
    total = 0.0
    for b in range(6):
        for c in range(4):
            target = 1.0 if c == labels[b] else 0.0
            total += weights[labels[b]] * -(target * math.log(probs[b, c]) + (1 - target) * math.log(1 - probs[b, c]))
    assert cb_bce_softmax(logits, labels, weights).item() == pytest.approx(float(total) / 24, rel=1e-5)


def test_los_targets_sum_to_one_and_equal_the_formula() -> None:
    labels, k, delta = torch.tensor([2, 0, 9]), 10, 0.98
    targets = over_smoothed_targets(labels, k, delta)
    assert torch.allclose(targets.sum(-1), torch.ones(3))
    assert targets[0, 2].item() == pytest.approx(1 - delta + delta / k)  # 0.0298, as in the LOS README
    assert targets[0, 1].item() == pytest.approx(delta / k)
    logits = torch.randn(3, k)
    assert over_smoothed_cross_entropy(logits, labels, delta).item() == pytest.approx(
        F.cross_entropy(logits, labels, label_smoothing=delta).item(), rel=1e-6)


@pytest.mark.parametrize("num_classes", [2, 10, 100])
def test_etf_rows_have_equal_norms_and_cosine_minus_one_over_k_minus_one(num_classes: int) -> None:
    weight = etf_classifier_weight(num_classes, 512, seed=3).double()
    assert torch.allclose(weight.norm(dim=1), torch.ones(num_classes, dtype=torch.float64), atol=1e-6)
    cosine = F.normalize(weight, dim=1) @ F.normalize(weight, dim=1).T
    off_diagonal = cosine[~torch.eye(num_classes, dtype=torch.bool)]
    assert torch.allclose(off_diagonal, torch.full_like(off_diagonal, -1 / (num_classes - 1)), atol=1e-6)
    assert torch.equal(weight, etf_classifier_weight(num_classes, 512, seed=3).double())


def test_multiplicative_logit_adjustment() -> None:
    logits, prior = torch.randn(4, 3), torch.tensor([0.7, 0.2, 0.1])
    assert torch.equal(logit_adjust(logits, prior, 0.0, "multiplicative"), logits)
    assert torch.allclose(logit_adjust(logits, prior, 0.65, "multiplicative"), logits * prior ** -0.65)
    assert torch.allclose(logit_adjust(logits, prior, 1.0, "additive"), logits - prior.log())


def test_cifar100_lt_profile_reproduces_the_authors_counts() -> None:
    counts = lt_counts(500, 100, 100, "floor")
    assert counts[0] == 500 and counts[-1] == 5 and sum(counts) == 10_847
    assert sum(lt_counts(480, 100, 100, "round")) == 10_457
    rule = split_rule(counts)
    assert (len(rule.many_classes), len(rule.medium_classes), len(rule.few_classes)) == (35, 35, 30)
    assert rule.rule.startswith("paper")


def test_small_data_sets_get_log_scaled_nonempty_splits() -> None:
    counts = [round(100 * 20 ** (-k / 9)) for k in range(10)]
    rule = split_rule(counts)
    assert rule.rule.startswith("log-scaled")
    assert rule.many_classes and rule.medium_classes and rule.few_classes
    assert sorted(rule.many_classes + rule.medium_classes + rule.few_classes) == list(range(10))


def test_fisher_discriminant_ratio_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), [30, 20, 10])
    features = rng.normal(size=(60, 4)) + labels[:, None] * np.array([1.0, 0.5, 0.0, 2.0])
    features = np.concatenate([features, np.full((60, 1), 7.0)], axis=1)  # a constant dimension, dropped
    x = features[:, :4]
    mean = x.mean(0)
    s_b = sum(len(x[labels == k]) * np.outer(x[labels == k].mean(0) - mean, x[labels == k].mean(0) - mean)
              for k in range(3))
    s_w = sum((x[labels == k] - x[labels == k].mean(0)).T @ (x[labels == k] - x[labels == k].mean(0))
              for k in range(3))
    expected = np.trace(np.linalg.solve(s_w, s_b))
    actual = fisher_discriminant_ratio(torch.tensor(features, dtype=torch.float32), torch.tensor(labels))
    assert actual == pytest.approx(expected, rel=1e-4)


def test_logits_magnitude_and_rsd_on_a_hand_example() -> None:
    logits = torch.tensor([[3.0, 1.0], [1.0, 1.0], [1.0, 3.0]])
    labels = torch.tensor([0, 0, 1])
    magnitude, rsd = logits_magnitude_and_rsd(logits, labels, 2)
    z = logits / logits.abs().sum(-1, keepdim=True)  # rows: [.75,.25], [.5,.5], [.25,.75]
    assert magnitude[0].item() == pytest.approx((0.75 + 0.5) / 2 - 0.25)
    assert magnitude[1].item() == pytest.approx(0.75 - (0.25 + 0.5) / 2)
    assert rsd[0].item() == pytest.approx(z[:2, 0].double().std(unbiased=False).item() / magnitude[0].item())
    assert rsd[1].item() == pytest.approx(0.0)


def test_batched_crop_equals_per_image_pad_and_slice() -> None:
    images = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    offsets = torch.tensor([[0, 0], [2, 1], [4, 4], [1, 3], [3, 0]])
    cropped = crop_at(images, 2, offsets)
    padded = F.pad(images, (2, 2, 2, 2))
    for n, (row, col) in enumerate(offsets.tolist()):
        assert torch.equal(cropped[n], padded[n, :, row:row + 8, col:col + 8])


def test_random_flip_flips_only_some_images_and_crop_pads_with_zeros() -> None:
    images = torch.arange(4 * 8, dtype=torch.uint8).view(1, 1, 4, 8).repeat(64, 1, 1, 1)
    out = random_crop_flip(images, 0, True, torch.Generator().manual_seed(0))
    flipped = torch.tensor([torch.equal(o, hflip(images[0])) for o in out])
    unchanged = torch.tensor([torch.equal(o, images[0]) for o in out])
    assert (flipped | unchanged).all() and flipped.any() and unchanged.any()
    corner = crop_at(torch.full((1, 1, 4, 4), 9, dtype=torch.uint8), 2, torch.tensor([[0, 0]]))
    assert corner[0, 0, :2, :].eq(0).all() and corner[0, 0, 2:, 2:].eq(9).all()
