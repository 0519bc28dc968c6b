"""What the objective reports while a trial trains: per-epoch val accuracy only when a pruner can use it."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch

import trainers.loop
from studies.definition.spec import parse_spec
from studies.run.worker import WorkerSettings, run_worker
from studies.store import registry
from studies.store.db import Database
from tests.trainers.fake_data import write_fake_image_folder
from tests.trainers.test_data import truncate_one_png

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
                                               "confirm": None, "fixed": {"stage1.epochs": STAGE1_EPOCHS,
                                                         "stage1.lr": 0.01, "stage1.weight_decay": 5e-3}}))
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


def test_a_corrupt_image_stops_the_study_with_its_path(sqlite_url: str, tmp_path: Path) -> None:
    root = write_fake_image_folder(tmp_path / "set", {"a": 3, "b": 3}, {"a": 1, "b": 1}, modes=("RGB",))
    damaged = truncate_one_png(root)
    db = Database.connect(sqlite_url)
    study = registry.create_study(db, spec=parse_spec({"name": "corrupt", "n_trials": 5, "dataset": f"folder:{root}",
                                                       "image_size": 8, "fixed": {"stage1.epochs": 1},
                                                       "confirm": None}))
    settings = WorkerSettings(device="cpu", handle_signals=False, max_consecutive_failures=2)
    summary = run_worker(db, study_names=["corrupt"], settings=settings, artifact_dir=tmp_path)
    record = registry.get_study(db, study_id=study.id)
    db.dispose()
    assert (summary.failed, record.state) == (2, "stopped")
    assert "CorruptImageError" in record.stop_reason and str(damaged) in record.stop_reason


@pytest.mark.parametrize("tf32", [False, True])
def test_a_worker_trains_with_tf32_only_when_its_settings_ask(tf32: bool, sqlite_url: str, tmp_path: Path) -> None:
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    db = Database.connect(sqlite_url)
    registry.create_study(db, spec=parse_spec({"name": "precision", "n_trials": 1, "confirm": None,
                                               "fixed": {"stage1.epochs": 1, "stage1.lr": 0.01, "stage2.epochs": 1,
                                                         "stage1.weight_decay": 5e-3}}))
    try:
        run_worker(db, study_names=["precision"], artifact_dir=tmp_path,
                   settings=WorkerSettings(device="cpu", handle_signals=False, tf32=tf32))
    finally:  # the setting is process-wide: later tests in this process must see PyTorch's own
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags
    trial = optuna.load_study(study_name="precision", storage=sqlite_url).trials[0]
    db.dispose()
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.user_attrs["provenance"]["tf32"] is tf32
