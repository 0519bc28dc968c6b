"""Many / Medium / Few: which classes each split holds, from their train counts (no torch: the service checks
a study's objectives with it)."""

from __future__ import annotations

import math

from trainers.errors import UserInputError
from trainers.results import SplitCoverage, SplitRule

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


def split_coverage(split_counts: list[int], rule: SplitRule) -> SplitCoverage:
    """Which classes an evaluation split (per-class image counts) leaves out, and how many each mean is over."""
    present = {k for k, n in enumerate(split_counts) if n > 0}
    return SplitCoverage(missing_classes=[k for k, n in enumerate(split_counts) if n == 0], all_classes=len(present),
                         many_classes=len(present.intersection(rule.many_classes)),
                         medium_classes=len(present.intersection(rule.medium_classes)),
                         few_classes=len(present.intersection(rule.few_classes)))


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
        few_classes=[k for k, n in enumerate(class_counts) if n < few_below], class_counts=class_counts)
