"""Result attributes written in one statement read back as Optuna's own `set_user_attr` writes them."""

from __future__ import annotations

import optuna
import pytest

from studies.db import Database, set_trial_user_attrs

ATTRIBUTES = {"val": {"all": 88.5, "few": None}, "val_all": 88.5, "per_class": [1.0, 0.5], "note": "ünïcode",
              "flag": True}


def test_bulk_attributes_equal_optunas_and_overwrite(storage_url: str) -> None:
    db = Database.connect(storage_url)
    study = optuna.create_study(study_name="attrs", storage=db.optuna_storage())
    bulk, one_by_one = study.ask(), study.ask()
    one_by_one.set_user_attr("val_all", 1.0)
    for key, value in ATTRIBUTES.items():
        one_by_one.set_user_attr(key, value)
    set_trial_user_attrs(bulk, {"val_all": 1.0})
    set_trial_user_attrs(bulk, ATTRIBUTES)  # an existing key is replaced, as a retried trial's would be
    stored = optuna.load_study(study_name="attrs", storage=storage_url).trials
    assert stored[bulk.number].user_attrs == stored[one_by_one.number].user_attrs == ATTRIBUTES
    assert bulk.user_attrs == ATTRIBUTES

    study.tell(bulk, 1.0)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        set_trial_user_attrs(bulk, {"late": 1})
    db.dispose()
