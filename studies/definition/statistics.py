"""Seed statistics: how far one configuration's accuracy moves between seeds, and whether one configuration beats
another by more than that.

Accuracies of one configuration trained with n seeds are summarised as mean, sample standard deviation (n - 1)
and a 95 % Student-t interval for the mean (n - 1 degrees of freedom): with 3 to 5 seeds the normal
approximation's 1.96 would claim an interval about twice too narrow (t at 2 degrees of freedom is 4.30).
Two configurations trained with the same seeds are compared by the per-seed differences (a paired t
interval), which cancels the part of the noise the seed gives both (the same data order, the same init).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from pydantic import BaseModel, Field

CONFIDENCE = 0.95
NO_INTERVAL = "one seed: no interval (train more seeds to get one)"


class SeedSummary(BaseModel):
    """One metric of one configuration over seeds."""

    mean: float
    std: float | None = Field(description="sample standard deviation over seeds; None for one seed")
    n: int = Field(description="seeds")
    ci95: tuple[float, float] | None = Field(description="95 % Student-t interval of the mean; None for one seed")


class PairedDifference(SeedSummary):
    """a - b paired by seed, in points, with a verdict a reader can quote."""

    verdict: str


def summarize(values: Sequence[float]) -> SeedSummary:
    """Mean, std and t interval of `values` (one per seed); no std and no interval for a single value."""
    if not values:
        raise ValueError("no values to summarise: at least one seed is needed")
    mean = statistics.fmean(values)
    if len(values) == 1:
        return SeedSummary(mean=mean, std=None, n=1, ci95=None)
    std = statistics.stdev(values)
    half = half_width(std, len(values))
    return SeedSummary(mean=mean, std=std, n=len(values), ci95=(mean - half, mean + half))


def half_width(std: float, n: int) -> float:
    """Half the width of the 95 % t interval of a mean of n values with sample std `std` (0 when std is 0)."""
    # Imported here: scipy.stats takes 0.8 s to import, which every worker, API and CLI process paid at start.
    from scipy.stats import t as student_t

    return float(student_t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * std / math.sqrt(n) if std > 0 else 0.0


def paired_difference(a: Sequence[float], b: Sequence[float]) -> PairedDifference:
    """a - b seed by seed (a[i] and b[i] trained with the same seed) with its t interval and verdict."""
    if len(a) != len(b):
        raise ValueError(f"paired values need one per seed on both sides, got {len(a)} and {len(b)}")
    summary = summarize([x - y for x, y in zip(a, b, strict=True)])
    return PairedDifference(**summary.model_dump(), verdict=verdict(summary))


def verdict(difference: SeedSummary) -> str:
    """"+2.10 ± 0.80 points, larger than seed noise" when the interval excludes 0, else "not distinguishable"."""
    if difference.ci95 is None:
        return f"{difference.mean:+.2f} points from {NO_INTERVAL}; not distinguishable from seed noise"
    low, high = difference.ci95
    told = "larger than seed noise" if low > 0 or high < 0 else "not distinguishable from seed noise"
    return f"{difference.mean:+.2f} ± {(high - low) / 2:.2f} points (95 % t interval, {difference.n} seeds), {told}"


def shown(summary: SeedSummary | None, *, signed: bool = False) -> str:
    """"96.68 ± 0.69 [95.83, 97.53]" (mean ± std [95 % t interval]); "96.68 (1 seed)"; "–" for no value."""
    if summary is None:
        return "–"
    mean = f"{summary.mean:+.2f}" if signed else f"{summary.mean:.2f}"
    if summary.ci95 is None or summary.std is None:
        return f"{mean} (1 seed)"
    return f"{mean} ± {summary.std:.2f} [{summary.ci95[0]:.2f}, {summary.ci95[1]:.2f}]"
