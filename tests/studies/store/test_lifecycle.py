"""Queued params as the study's space holds them (no database: the check is a pure function of the spec)."""

from __future__ import annotations

import pytest

from studies.definition.spec import StudySpec
from studies.store.lifecycle import checked_params
from trainers.errors import UserInputError

LOS = StudySpec(name="los", method="los", n_trials=4, confirm=None)


def test_a_json_integer_matches_a_float_choice_and_is_stored_as_the_choice() -> None:
    # JSON and the CLI read "0" as an integer; the LOS space's weight decay choices are floats (0.0 first).
    checked = checked_params(LOS, {"stage2.weight_decay": 0})
    assert checked == {"stage2.weight_decay": 0.0} and type(checked["stage2.weight_decay"]) is float


def test_a_boolean_never_matches_a_number() -> None:
    with pytest.raises(UserInputError, match="stage2.weight_decay"):
        checked_params(LOS, {"stage2.weight_decay": False})
