"""What the objective reports while a trial trains: per-epoch val accuracy only when a pruner can use it."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

import trainers.loop
from studies import registry
from studies.db import Database
from studies.spec import parse_spec
from studies.worker import WorkerSettings, run_worker

STAGE1_EPOCHS = 3


@pytest.mark.parametrize("pruner", ["median", "none"])
def test_epochs_are_evaluated_and_reported_only_for_a_pruner(pruner: str, sqlite_url: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    evaluations: list[float] = []
    evaluate_all = trainers.loop.evaluate_all

    def counted(*args: object, **kwargs: object) -> float:
        evaluations.append(evaluate_all(*args, **kwargs))
        return evaluations[-1]

    monkeypatch.setattr(trainers.loop, "evaluate_all", counted)
    db = Database.connect(sqlite_url)
    registry.create_study(db, spec=parse_spec({"name": "curves", "method": "wb", "n_trials": 2, "pruner": pruner,
                                               "fixed": {"stage1.epochs": STAGE1_EPOCHS,
                                                         "stage1.weight_decay": 5e-3}}))
    run_worker(db, study_names=["curves"], artifact_dir=tmp_path,
               settings=WorkerSettings(device="cpu", handle_signals=False, batch_trials=1))
    first = optuna.load_study(study_name="curves", storage=sqlite_url).trials[0]
    db.dispose()

    assert first.state == optuna.trial.TrialState.COMPLETE and first.user_attrs["stage1_trained"]
    if pruner == "none":  # nothing would read a curve: no epoch is evaluated, nothing is written per epoch
        assert evaluations == [] and first.intermediate_values == {}
    else:  # stage 1's epochs are the steps of the trial's curve, each the val accuracy evaluated then
        assert first.intermediate_values == dict(enumerate(evaluations, start=1))
        assert len(evaluations) == STAGE1_EPOCHS and all(0 <= v <= 100 for v in evaluations)
