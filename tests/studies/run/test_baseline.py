"""Every study shows its margin over a simple baseline, fitted once per study by the first worker."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from studies.definition.spec import StudySpec, parse_spec
from studies.reports.report import build_report
from studies.run.objective import study_baseline
from studies.run.worker import RunContext, WorkerSettings, one_at_a_time, run_worker
from studies.store import baselines, registry
from studies.store.db import Database
from tailtune.commands import study as study_command
from tests.trainers.fake_data import write_fake_image_folder
from tests.trial_runners import sampled_value
from trainers.baseline import MAX_IMAGE_SIZE, fit_linear_baseline
from trainers.config import DataConfig
from trainers.data import load_dataset

QUICK = WorkerSettings(device="cpu", heartbeat_interval=1, grace_period=2, poll_interval_s=0.1,
                       handle_signals=False)


def test_a_real_study_stores_its_baseline_and_shows_best_minus_baseline(sqlite_url: str, tmp_path: Path) -> None:
    db = Database.connect(sqlite_url)
    registry.create_study(db, spec=parse_spec({"name": "margin", "n_trials": 2, "sampler": "random", "confirm": None,
                                               "fixed": {"stage1.epochs": 2, "stage2.epochs": 1}}))
    run_worker(db, study_names=["margin"], settings=QUICK, artifact_dir=tmp_path)
    record = registry.get_study_by_name(db, name="margin")
    page = build_report(db, "margin", tmp_path / "report").html.read_text()
    db.dispose()

    expected = fit_linear_baseline(load_dataset(DataConfig(name="digits-lt")))
    baseline = record.baseline
    assert baseline is not None and baseline.state == "done" and "class_weight='balanced'" in baseline.model
    assert (baseline.val, baseline.test) == (expected.val.model_dump(), expected.test.model_dump())
    assert baseline.best_minus_baseline_test["all"] == pytest.approx(record.best_test["all"] - expected.test.all)
    assert baseline.best_minus_baseline_val["few"] == pytest.approx(record.best_val["few"] - expected.val.few)

    shown = CliRunner().invoke(study_command.app, ["best", "margin", "--storage", sqlite_url, "--json"])
    assert shown.exit_code == 0, shown.output
    carried = json.loads(shown.stdout)["baseline"]
    assert set(carried["val"]) == set(carried["test"]) == {"all", "many", "medium", "few"}
    table = CliRunner().invoke(study_command.app, ["best", "margin", "--storage", sqlite_url])
    assert "best - baseline" in table.stdout and "best - recipe" in table.stdout
    margin = f"{record.best_test['all'] - expected.test.all:+.2f}"
    assert "<h2>Baseline vs best</h2>" in page and f"<td>best - baseline</td><td>test</td><td>{margin}" in page


def test_of_many_workers_starting_at_once_exactly_one_fits_the_baseline(database: Database) -> None:
    study_id = registry.create_study(database, spec=StudySpec(name="once", n_trials=1)).id
    won: list[bool] = []
    start = threading.Barrier(6)

    def claim(worker: int) -> None:
        start.wait()
        won.append(baselines.claim_baseline(database, study_id=study_id, worker_id=f"w{worker}"))

    threads = [threading.Thread(target=claim, args=(worker,)) for worker in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(won) == [False] * 5 + [True]
    assert registry.get_study(database, study_id=study_id).baseline.state == "fitting"

    baselines.store_baseline(database, study_id=study_id, baseline={"state": "skipped", "reason": "too large"})
    assert not baselines.claim_baseline(database, study_id=study_id, worker_id="late")
    record = registry.get_study(database, study_id=study_id)
    assert (record.baseline.state, record.baseline.reason, record.baseline.val) == ("skipped", "too large", None)


def test_a_claim_whose_worker_died_expires(database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    study_id = registry.create_study(database, spec=StudySpec(name="expires", n_trials=1)).id
    assert baselines.claim_baseline(database, study_id=study_id, worker_id="killed")
    assert not baselines.claim_baseline(database, study_id=study_id, worker_id="other")
    monkeypatch.setattr(baselines, "CLAIM_EXPIRES_S", 0.0)
    time.sleep(0.01)
    assert baselines.claim_baseline(database, study_id=study_id, worker_id="other")


def test_a_failing_fit_is_stored_as_failed_and_never_fails_a_trial(database: Database, tmp_path: Path) -> None:
    registry.create_study(database, spec=parse_spec({"name": "fails", "n_trials": 3, "sampler": "random",
                                                                      "confirm": None}))
    fits: list[int] = []

    def broken_fit() -> dict:
        fits.append(1)
        raise MemoryError("no room for the pixels")

    def runner(trial: optuna.Trial, spec: StudySpec, context: RunContext) -> list[float]:
        context.fit_baseline_once(broken_fit)
        return [sampled_value(trial, spec)]

    summary = run_worker(database, study_names=["fails"], settings=QUICK.model_copy(update={"batch_trials": 1}),
                         artifact_dir=tmp_path, runner=one_at_a_time(runner))
    record = registry.get_study_by_name(database, name="fails")
    assert (summary.completed, summary.failed, len(fits)) == (3, 0, 1)
    assert record.baseline.state == "failed" and "MemoryError: no room for the pixels" in record.baseline.reason


def test_images_above_the_bound_skip_the_baseline_with_the_reason(tmp_path: Path) -> None:
    root = write_fake_image_folder(tmp_path / "set", {"a": 4, "b": 2}, {"a": 1, "b": 1}, modes=("L",))
    spec = StudySpec(name="large", n_trials=1, dataset=f"folder:{root}", image_size=MAX_IMAGE_SIZE + 8)
    stored = study_baseline(spec)
    assert stored["state"] == "skipped" and f"up to {MAX_IMAGE_SIZE} px" in stored["reason"]
