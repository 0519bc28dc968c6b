"""The math that could silently be wrong, checked against hand computations and direct formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trainers.data import lt_counts
from trainers.errors import UserInputError
from trainers.losses import (
    cb_bce_softmax,
    cb_cross_entropy,
    class_balanced_weights,
    feature_regularization,
    make_loss,
    over_smoothed_cross_entropy,
    over_smoothed_targets,
)
from trainers.maxnorm import project_rows_, relative_radius, row_norms
from trainers.metrics import (
    fisher_discriminant_ratio,
    logits_magnitude_and_rsd,
    per_class_accuracy,
    split_accuracy,
)
from trainers.posthoc import etf_classifier_weight, logit_adjustment, tau_normalize
from trainers.splits import split_rule


# ---------------------------------------------------------------------------------------------- MaxNorm
@pytest.mark.parametrize("radius", [1.0, 0.05, 30.0])
def test_maxnorm_projection_caps_every_row_and_leaves_inside_rows_alone(radius: float) -> None:
    torch.manual_seed(0)
    layer = torch.nn.Linear(16, 6)
    with torch.no_grad():
        layer.weight.mul_(torch.tensor([0.1, 0.2, 5.0, 8.0, 0.3, 12.0])[:, None])
    before_weight = layer.weight.detach().clone()
    inside = row_norms(before_weight) <= radius
    project_rows_(layer.weight.data, radius)
    assert (row_norms(layer.weight) <= radius + 1e-6).all()
    assert torch.equal(layer.weight[inside], before_weight[inside])
    outside_norms = row_norms(layer.weight[~inside])
    assert torch.allclose(outside_norms, torch.full_like(outside_norms, radius))
    # projection only rescales: every projected row keeps its direction
    cosine = F.cosine_similarity(layer.weight[~inside], before_weight[~inside], dim=1)
    assert torch.allclose(cosine, torch.ones_like(cosine))


def test_maxnorm_with_the_relative_radius_of_the_stage1_norms() -> None:
    weight = torch.randn(10, 8) * torch.linspace(0.5, 4.0, 10)[:, None]
    radius = relative_radius(row_norms(weight), 0.1)
    project_rows_(weight, radius)
    assert (row_norms(weight) <= radius + 1e-6).all()
    assert row_norms(weight).max().item() == pytest.approx(radius.item(), rel=1e-6)


def test_relative_radius_is_min_plus_t_times_range() -> None:
    norms = torch.tensor([2.0, 3.5, 7.0, 4.0])
    assert relative_radius(norms, 0.1).item() == pytest.approx(2.0 + 0.1 * (7.0 - 2.0))
    assert relative_radius(norms, 0.0).item() == pytest.approx(2.0)
    assert relative_radius(norms, 1.0).item() == pytest.approx(7.0)


# ---------------------------------------------------------------------------------------------- tau-norm
def test_tau_norm_zero_is_identity_and_one_gives_unit_rows() -> None:
    layer = torch.nn.Linear(5, 7)
    with torch.no_grad():
        layer.weight.mul_(torch.arange(1, 8)[:, None])
    weight, bias = layer.weight.detach().clone(), layer.bias.detach().clone()
    assert torch.equal(tau_normalize(layer.weight.detach(), 0.0), weight)
    assert torch.allclose(row_norms(tau_normalize(layer.weight.detach(), 1.0)), torch.ones(7))
    norms = row_norms(weight)
    assert torch.allclose(row_norms(tau_normalize(weight, 1.9)), norms ** (1 - 1.9), rtol=1e-5)
    assert torch.equal(layer.weight, weight) and torch.equal(layer.bias, bias)  # nothing changed in place


def test_tau_norm_keeps_a_zero_row_zero() -> None:
    weight = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    assert torch.equal(tau_normalize(weight, 1.0), torch.tensor([[0.6, 0.8], [0.0, 0.0]]))


# ---------------------------------------------------------------------------------------------- losses
def test_class_balanced_weights_match_the_formula_by_hand() -> None:
    counts, beta = [100, 10, 1], 0.9
    raw = [(1 - 0.9) / (1 - 0.9 ** 100), (1 - 0.9) / (1 - 0.9 ** 10), (1 - 0.9) / (1 - 0.9 ** 1)]
    expected = [3 * w / sum(raw) for w in raw]
    assert class_balanced_weights(counts, beta).tolist() == pytest.approx(expected, rel=1e-12)
    inverse = [1 / 100, 1 / 10, 1.0]
    expected_inverse = [3 * w / sum(inverse) for w in inverse]
    assert class_balanced_weights(counts, 1.0).tolist() == pytest.approx(expected_inverse, rel=1e-12)
    assert class_balanced_weights(counts, 0.9).sum().item() == pytest.approx(3)
    assert class_balanced_weights([500, 50, 5], 0.9999).sum().item() == pytest.approx(3)


def test_class_balanced_weights_name_an_empty_class() -> None:
    with pytest.raises(UserInputError, match="class 1 has no training images"):
        class_balanced_weights([10, 0, 3], 0.999)


def test_cb_losses_equal_their_direct_definitions() -> None:
    torch.manual_seed(1)
    logits, labels = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 2])
    weights = torch.tensor([0.2, 0.5, 1.3, 2.0])
    expected_ce = sum(weights[y] * F.cross_entropy(logits[b:b + 1], labels[b:b + 1]) for b, y in enumerate(labels)) / 6
    assert cb_cross_entropy(logits, labels, weights).item() == pytest.approx(expected_ce.item(), rel=1e-6)
    probs = F.softmax(logits.double(), dim=-1)
    total = 0.0
    for b in range(6):
        for c in range(4):
            target = 1.0 if c == labels[b] else 0.0
            p = probs[b, c].item()
            total += weights[labels[b]].item() * -(target * math.log(p) + (1 - target) * math.log(1 - p))
    assert cb_bce_softmax(logits, labels, weights).item() == pytest.approx(total / 24, rel=1e-5)


def test_cb_bce_stays_finite_with_saturated_softmax() -> None:
    logits = torch.tensor([[60.0, 0.0, -60.0], [0.0, 80.0, 0.0]], requires_grad=True)
    loss = cb_bce_softmax(logits, torch.tensor([0, 2]), torch.ones(3))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    assert logits.grad[1, 2] < 0, "the badly wrong sample still pulls its true logit up"


def test_los_targets_sum_to_one_and_equal_the_formula() -> None:
    labels, k, delta = torch.tensor([2, 0, 9]), 10, 0.98
    targets = over_smoothed_targets(labels, k, delta)
    assert torch.allclose(targets.sum(-1), torch.ones(3))
    assert targets[0, 2].item() == pytest.approx(1 - delta + delta / k)  # 0.0298, as in the LOS README
    assert targets[0, 1].item() == pytest.approx(delta / k)  # 0.0098
    assert torch.equal(over_smoothed_targets(labels, k, 0.0), F.one_hot(labels, k).float())


@pytest.mark.parametrize("delta", [0.0, 0.1, 0.98])
def test_over_smoothed_cross_entropy_is_label_smoothing(delta: float) -> None:
    labels, logits = torch.tensor([2, 0, 9]), torch.randn(3, 10)
    assert over_smoothed_cross_entropy(logits, labels, delta).item() == pytest.approx(
        F.cross_entropy(logits, labels, label_smoothing=delta).item(), rel=1e-6)


def test_feature_regularization_is_the_mean_half_squared_norm() -> None:
    features = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    assert feature_regularization(features).item() == pytest.approx((25 + 1) / 2 / 2)


def test_make_loss_picks_each_kind() -> None:
    counts, logits, labels = [50, 10, 2], torch.randn(5, 3), torch.tensor([0, 1, 2, 2, 0])
    weights = class_balanced_weights(counts, 0.99).float()
    expected = {"ce": F.cross_entropy(logits, labels), "cb": cb_cross_entropy(logits, labels, weights),
                "cb-bce": cb_bce_softmax(logits, labels, weights),
                "los": F.cross_entropy(logits, labels, label_smoothing=0.9)}
    for kind, value in expected.items():
        assert make_loss(kind, counts, 0.99, 0.9)(logits, labels).item() == pytest.approx(value.item(), rel=1e-6)
    with pytest.raises(UserInputError, match="unknown loss"):
        make_loss("focal", counts, 0.99, 0.9)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- ETF, LA
@pytest.mark.parametrize(("num_classes", "dim"), [(2, 512), (10, 10), (100, 512)])
def test_etf_rows_have_equal_norms_and_cosine_minus_one_over_k_minus_one(num_classes: int, dim: int) -> None:
    weight = etf_classifier_weight(num_classes, dim, seed=3).double()
    assert weight.shape == (num_classes, dim)
    assert torch.allclose(weight.norm(dim=1), torch.ones(num_classes, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(weight.T.norm(dim=0), torch.ones(num_classes, dtype=torch.float64), atol=1e-6)
    cosine = F.normalize(weight, dim=1) @ F.normalize(weight, dim=1).T
    off_diagonal = cosine[~torch.eye(num_classes, dtype=torch.bool)]
    assert torch.allclose(off_diagonal, torch.full_like(off_diagonal, -1 / (num_classes - 1)), atol=1e-6)


def test_etf_is_seeded() -> None:
    assert torch.equal(etf_classifier_weight(10, 64, seed=3), etf_classifier_weight(10, 64, seed=3))
    assert not torch.allclose(etf_classifier_weight(10, 64, seed=3), etf_classifier_weight(10, 64, seed=4))


def test_etf_needs_at_least_as_many_dims_as_classes() -> None:
    with pytest.raises(UserInputError, match="feature dim >= number of classes.*classifier=linear"):
        etf_classifier_weight(100, 64, seed=0)


@pytest.mark.parametrize("tau", [0.65, 1.6, 2.5])
def test_logit_adjustment_forms_scale_with_tau(tau: float) -> None:
    """At tau != 1 a missing or misplaced tau shows (at tau = 1 the additive form hides a dropped tau)."""
    logits, prior = torch.randn(4, 3), torch.tensor([0.7, 0.2, 0.1])

    def adjusted(strength: float, form: str) -> torch.Tensor:
        scale, offset = logit_adjustment(prior, strength, form)
        return logits * scale - offset

    assert torch.equal(adjusted(0.0, "multiplicative"), logits)
    assert torch.equal(adjusted(0.0, "additive"), logits)
    expected = logits * torch.tensor([0.7 ** -tau, 0.2 ** -tau, 0.1 ** -tau])
    assert torch.allclose(adjusted(tau, "multiplicative"), expected)
    assert torch.equal(adjusted(tau, "multiplicative"), logits * prior.pow(-tau))  # the formula's own rounding
    expected_additive = logits - tau * torch.tensor([math.log(0.7), math.log(0.2), math.log(0.1)])
    assert torch.allclose(adjusted(tau, "additive"), expected_additive)
    assert torch.equal(adjusted(tau, "additive"), logits - tau * prior.log())


# ---------------------------------------------------------------------------------------------- splits
def test_cifar100_lt_wb_counts_give_35_35_30() -> None:
    counts = lt_counts(500, 100, 100, "floor")
    assert counts[0] == 500 and counts[-1] == 5 and sum(counts) == 10_847
    rule = split_rule(counts, "cifar100-lt")
    assert (len(rule.many_classes), len(rule.medium_classes), len(rule.few_classes)) == (35, 35, 30)
    assert rule.rule.startswith("paper")
    assert (rule.many_above, rule.few_below) == (100, 20)


def test_small_data_sets_get_log_scaled_nonempty_splits() -> None:
    counts = [round(100 * 20 ** (-k / 9)) for k in range(10)]  # digits-lt: 100 .. 5
    rule = split_rule(counts, "digits-lt")
    assert rule.rule.startswith("log-scaled") and "left a split empty" in rule.rule
    assert rule.many_classes and rule.medium_classes and rule.few_classes
    assert sorted(rule.many_classes + rule.medium_classes + rule.few_classes) == list(range(10))
    assert rule.many_above == pytest.approx(5 * 20 ** (math.log(20) / math.log(100)))
    assert rule.few_below == pytest.approx(5 * 20 ** (math.log(4) / math.log(100)))


def test_log_scaled_thresholds_reproduce_the_paper_thresholds_on_cifar_range() -> None:
    # On counts 5..500 the log-scaled rule must land on the paper's 100 / 20 exactly.
    rule = split_rule([500, 5, 5], "folder:/data/birds")
    assert rule.rule.startswith("log-scaled")
    assert (rule.many_above, rule.few_below) == (pytest.approx(100), pytest.approx(20))


def test_even_counts_keep_empty_splits_and_say_so() -> None:
    rule = split_rule([30] * 5, "folder:/data/even")
    assert rule.medium_classes == list(range(5)) and not rule.many_classes and not rule.few_classes
    assert "empty: Many, Few (the class counts are too even" in rule.rule


@pytest.mark.parametrize(("dataset", "counts", "sizes", "empty"), [
    ("cifar100-lt", lt_counts(500, 10, 100, "floor"), (69, 31, 0), "Few"),  # IF 10: 500 .. 50
    ("cifar10-lt", lt_counts(5000, 100, 10, "floor"), (8, 2, 0), "Few"),  # 5000 .. 50
    ("cifar10-lt", lt_counts(5000, 10, 10, "floor"), (10, 0, 0), "Medium, Few"),
])
def test_papers_data_sets_keep_the_papers_rule_with_an_empty_split(dataset: str, counts: list[int],
                                                                   sizes: tuple[int, int, int], empty: str) -> None:
    rule = split_rule(counts, dataset)
    assert (rule.many_above, rule.few_below) == (100, 20)
    assert (len(rule.many_classes), len(rule.medium_classes), len(rule.few_classes)) == sizes
    assert rule.rule.startswith("paper") and f"empty: {empty} (kept empty on {dataset}" in rule.rule
    accuracy = split_accuracy(torch.full((len(counts),), 50.0, dtype=torch.float64), rule)
    assert accuracy.few is None and accuracy.all == 50.0
    # the same counts on a data set of the user's own get the labelled log-scaled rule instead
    assert split_rule(counts, "folder:/data/own").rule.startswith("log-scaled")


def test_per_class_and_split_accuracy_by_hand() -> None:
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 2, 3])
    predictions = torch.tensor([0, 0, 0, 1, 1, 0, 2, 0])
    per_class = per_class_accuracy(predictions, labels, num_classes=5)
    assert per_class[:4].tolist() == [75.0, 50.0, 100.0, 0.0] and per_class[4].isnan()
    logits = F.one_hot(predictions, 5).float()
    assert torch.equal(per_class_accuracy(logits, labels, 5).nan_to_num(-1), per_class.nan_to_num(-1))
    rule = split_rule([500, 300, 50, 5, 4], "cifar100-lt")
    accuracy = split_accuracy(per_class, rule)
    assert accuracy.all == pytest.approx((75 + 50 + 100 + 0) / 4)
    assert accuracy.many == pytest.approx(62.5) and accuracy.medium == pytest.approx(100.0)
    assert accuracy.few == pytest.approx(0.0)  # class 4 has no sample and is left out
    rule_without_medium = split_rule([30] * 5, "folder:/data/even")
    assert split_accuracy(per_class, rule_without_medium).many is None


# ---------------------------------------------------------------------------------------------- diagnostics
def _numpy_fdr(x: np.ndarray, labels: np.ndarray) -> float:
    mean = x.mean(0)
    classes = np.unique(labels)
    s_b = sum(len(x[labels == k]) * np.outer(x[labels == k].mean(0) - mean, x[labels == k].mean(0) - mean)
              for k in classes)
    s_w = sum((x[labels == k] - x[labels == k].mean(0)).T @ (x[labels == k] - x[labels == k].mean(0))
              for k in classes)
    return float(np.trace(np.linalg.solve(s_w, s_b)))


def test_fisher_discriminant_ratio_matches_numpy_and_drops_a_constant_dimension() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), [30, 20, 10])
    features = rng.normal(size=(60, 4)) + labels[:, None] * np.array([1.0, 0.5, 0.0, 2.0])
    with_constant = np.concatenate([features[:, :2], np.full((60, 1), 7.0), features[:, 2:]], axis=1)
    actual = fisher_discriminant_ratio(torch.tensor(with_constant, dtype=torch.float32), torch.tensor(labels))
    expected = _numpy_fdr(features.astype(np.float32).astype(np.float64), labels)
    assert actual == pytest.approx(expected, rel=1e-9)


def test_fisher_discriminant_ratio_is_invariant_to_an_invertible_linear_map() -> None:
    generator = torch.Generator().manual_seed(2)
    labels = torch.arange(4).repeat_interleave(15)
    features = torch.randn(60, 5, generator=generator, dtype=torch.float64) + labels[:, None]
    mixing = torch.randn(5, 5, generator=generator, dtype=torch.float64) + 3 * torch.eye(5, dtype=torch.float64)
    assert fisher_discriminant_ratio(features @ mixing, labels) == pytest.approx(
        fisher_discriminant_ratio(features, labels), rel=1e-8)


def test_fisher_discriminant_ratio_with_singular_within_scatter_uses_the_pseudo_inverse() -> None:
    generator = torch.Generator().manual_seed(3)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    features = torch.randn(6, 8, generator=generator, dtype=torch.float64)  # 6 samples, 8 dims: rank <= 3
    x = features.numpy()
    mean = x.mean(0)
    s_b = sum(2 * np.outer(x[labels == k].mean(0) - mean, x[labels == k].mean(0) - mean) for k in range(3))
    s_w = sum((x[labels == k] - x[labels == k].mean(0)).T @ (x[labels == k] - x[labels == k].mean(0))
              for k in range(3))
    expected = float(np.trace(np.linalg.pinv(s_w, hermitian=True) @ s_b))
    actual = fisher_discriminant_ratio(features, labels)
    assert math.isfinite(actual) and actual == pytest.approx(expected, rel=1e-6)


def test_logits_magnitude_and_rsd_on_a_hand_example() -> None:
    logits = torch.tensor([[3.0, 1.0, 0.0], [1.0, 1.0, 0.0], [-1.0, 3.0, 0.0], [0.0, 2.0, 2.0]])
    labels = torch.tensor([0, 0, 1, 1])
    magnitude, rsd = logits_magnitude_and_rsd(logits, labels, 3)
    # rows over their L1 norms: [.75 .25 0], [.5 .5 0], [-.25 .75 0], [0 .5 .5]
    assert magnitude[0].item() == pytest.approx((0.75 + 0.5) / 2 - (-0.25 + 0.0) / 2)
    assert magnitude[1].item() == pytest.approx((0.75 + 0.5) / 2 - (0.25 + 0.5) / 2)
    assert rsd[0].item() == pytest.approx(0.125 / magnitude[0].item())  # population std of {.75, .5}
    assert rsd[1].item() == pytest.approx(0.125 / magnitude[1].item())  # population std of {.75, .5}
    assert magnitude[2].isnan() and rsd[2].isnan()  # no sample of class 2
