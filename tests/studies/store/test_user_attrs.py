"""Result attributes and sampled params written in one statement read back as Optuna's own writes of them."""

from __future__ import annotations

import optuna
import pytest

from studies.definition.space import Choices, FloatRange, sample_params
from studies.store.db import Database
from studies.store.storage import params_written_together, set_trial_user_attrs

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


SPACE = {"stage2.weight_decay": FloatRange(low=1e-4, high=1.0, log=True), "stage2.maxnorm_thresh":
         FloatRange(low=0.0, high=1.0), "stage2.loss": Choices(choices=["ce", "cb"]),
         "stage2.epochs": Choices(choices=[10])}


def _study(storage: optuna.storages.BaseStorage, name: str) -> optuna.Study:
    return optuna.create_study(study_name=name, storage=storage, sampler=optuna.samplers.TPESampler(seed=0))


def test_params_written_together_equal_optunas_one_by_one(storage_url: str) -> None:
    db = Database.connect(storage_url)
    together, one_by_one = _study(db.optuna_storage(), "together"), _study(optuna.storages.InMemoryStorage(), "mem")
    enqueued = {"stage2.loss": "cb", "stage2.weight_decay": 0.01}
    for study in (together, one_by_one):
        study.enqueue_trial(enqueued)
    for _ in range(14):  # past TPE's 10 start-up trials, so its model reads the stored params
        for study, sample in ((together, _sample_together), (one_by_one, _sample_one_by_one)):
            trial = study.ask()
            params = sample(trial, SPACE)
            assert trial.params == params
            study.tell(trial, params["stage2.maxnorm_thresh"])
    stored = optuna.load_study(study_name="together", storage=storage_url).trials
    expected = one_by_one.trials
    assert [t.params for t in stored] == [t.params for t in expected]
    assert [t.distributions for t in stored] == [t.distributions for t in expected]
    assert stored[0].params["stage2.loss"] == "cb" and stored[0].params["stage2.weight_decay"] == 0.01
    db.dispose()


def _sample_together(trial: optuna.Trial, space: dict) -> dict:
    with params_written_together(trial):  # as studies/run/objective.py samples a claimed trial
        return sample_params(trial, space)


def _sample_one_by_one(trial: optuna.Trial, space: dict) -> dict:
    return {name: trial.suggest_float(name, p.low, p.high, log=p.log) if isinstance(p, FloatRange)
            else trial.suggest_categorical(name, p.choices) for name, p in space.items()}


def test_params_written_together_keep_optunas_checks(storage_url: str) -> None:
    db = Database.connect(storage_url)
    study = _study(db.optuna_storage(), "checks")
    first = study.ask()
    _sample_together(first, SPACE)
    study.tell(first, 1.0)
    clash, plain = study.ask(), study.ask()
    clashes = [lambda trial: trial.suggest_categorical("stage2.loss", ["ce", "ldam"]),  # other choices
               lambda trial: trial.suggest_int("stage2.maxnorm_thresh", 0, 1)]  # another distribution type
    for suggest in clashes:
        with pytest.raises(ValueError) as optunas:
            suggest(plain)
        with pytest.raises(ValueError) as ours, params_written_together(clash):
            suggest(clash)
        assert str(ours.value) == str(optunas.value)
    assert optuna.load_study(study_name="checks", storage=storage_url).trials[clash.number].params == {}
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError), params_written_together(first):
        first.suggest_float("late", 0.0, 1.0)
    raised = study.ask()
    with pytest.raises(RuntimeError), params_written_together(raised):
        raised.suggest_float("stage2.maxnorm_thresh", 0.0, 1.0)
        raise RuntimeError("the sampling code failed")
    assert raised.storage is study._storage  # the stand-in is gone, so later writes go straight through
    raised.suggest_float("after", 0.0, 1.0)
    assert optuna.load_study(study_name="checks", storage=storage_url).trials[raised.number].params.keys() == {
        "after"}
    db.dispose()
