"""The values a study maximises: val accuracy of its objectives' splits, never 0 for a split without classes."""

from __future__ import annotations

import pytest

from studies.run.objective import EmptyObjectiveSplit, objective_values
from trainers.results import Diagnostics, SplitAccuracy, StageResult
from trainers.splits import split_rule


def _stage(few: float | None) -> StageResult:
    split = SplitAccuracy(all=70.0, many=80.0, medium=60.0, few=few)
    return StageResult(val=split, test=split, per_class_val=[], per_class_test=[], wall_time_s=0.0,
                       diagnostics=Diagnostics(weight_norms=[], logits_magnitude=[], regularized_std=[]))


def test_a_split_without_val_classes_fails_the_trial_naming_it_instead_of_scoring_0() -> None:
    rule = split_rule([500, 200, 50], "cifar100-lt")  # no class under 20 images: Few is empty
    assert objective_values(_stage(few=12.5), ["few", "all"], rule) == [12.5, 70.0]
    with pytest.raises(EmptyObjectiveSplit, match="objective few: no class of that split has val images"):
        objective_values(_stage(few=None), ["all", "few"], rule)
