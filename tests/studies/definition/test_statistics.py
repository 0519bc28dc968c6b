"""Seed statistics against scipy.stats on hand-made inputs (t interval of a mean, paired t interval)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from studies.definition.statistics import NO_INTERVAL, paired_difference, summarize


@pytest.mark.parametrize("values", [[96.76, 96.68], [98.0, 96.6, 96.0, 96.8, 96.4], [90.0, 95.3, 92.1]])
def test_summary_matches_scipy_t_interval(values: list[float]) -> None:
    summary = summarize(values)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert summary.n == len(values)
    assert summary.mean == pytest.approx(np.mean(values))
    assert summary.std == pytest.approx(np.std(values, ddof=1))
    assert summary.ci95 == pytest.approx((low, high))


def test_one_seed_has_no_interval_and_says_so() -> None:
    summary = summarize([93.5])
    assert (summary.mean, summary.std, summary.n, summary.ci95) == (93.5, None, 1, None)
    difference = paired_difference([93.5], [92.0])
    assert difference.ci95 is None
    assert NO_INTERVAL in difference.verdict and "not distinguishable" in difference.verdict


def test_equal_values_give_a_zero_width_interval() -> None:
    summary = summarize([95.0, 95.0, 95.0])
    assert (summary.std, summary.ci95) == (0.0, (95.0, 95.0))
    assert "not distinguishable" in paired_difference([95.0] * 3, [95.0] * 3).verdict


def test_paired_difference_matches_scipy_ttest_rel() -> None:
    best, recipe = [97.0, 96.8, 97.4, 96.9], [96.2, 96.1, 96.5, 96.3]
    difference = paired_difference(best, recipe)
    reference = stats.ttest_rel(best, recipe).confidence_interval(0.95)
    assert difference.mean == pytest.approx(np.mean(np.subtract(best, recipe)))
    assert difference.ci95 == pytest.approx((reference.low, reference.high))
    assert difference.verdict.startswith("+0.75 ± ") and difference.verdict.endswith("larger than seed noise")


def test_a_difference_within_seed_noise_is_not_called_a_gain() -> None:
    # The digits-lt measurement: the 'better' config vs the recipe over seeds 0-4.
    difference = paired_difference([97.9, 96.2, 96.3, 96.5, 96.5], [98.0, 96.6, 96.0, 96.8, 96.4])
    reference = stats.ttest_rel([97.9, 96.2, 96.3, 96.5, 96.5], [98.0, 96.6, 96.0, 96.8, 96.4])
    assert reference.pvalue > 0.05
    assert difference.verdict.endswith("not distinguishable from seed noise")


def test_unpaired_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="one per seed on both sides"):
        paired_difference([1.0, 2.0], [1.0])
