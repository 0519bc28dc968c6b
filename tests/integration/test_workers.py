"""Several `tailtune worker` processes on one PostgreSQL study: exact budget, SIGKILL, SIGTERM, contention."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from studies.store import registry
from studies.store.db import Database
from studies.store.storage import trial_user_attrs, trials
from tests.integration.workers import (
    assert_budget_met_with_retries,
    create_study,
    running_trial_of,
    start_workers,
    trials_of,
    wait_for,
)

pytestmark = [pytest.mark.postgres, pytest.mark.multiprocess, pytest.mark.slow]

STARTUP_S = 60  # generous: several processes import and connect at once on two busy cores


@pytest.fixture
def db(postgres_database: Database) -> Database:
    return postgres_database


def test_sigkill_mid_trial_the_trial_is_retried_and_the_budget_is_exact(db: Database, postgres_url: str,
                                                                         tmp_path: Path) -> None:
    study_id = create_study(db, "killed", 12)
    workers = start_workers(postgres_url, "killed", "sleep_runner", tmp_path, 3)
    victim = workers[0]
    killed_trial = wait_for(lambda: running_trial_of(db, study_id, victim.pid), STARTUP_S,
                            "a trial on the victim", workers)
    victim.signal(signal.SIGKILL)
    assert victim.wait(5) == -signal.SIGKILL

    for worker in workers[1:]:
        assert worker.wait(60) == 0, worker.log()
    trials = trials_of(db, study_id)
    assert_budget_met_with_retries(trials, 12)
    assert {t.number: t.state for t in trials}[killed_trial.number] == "fail"
    assert killed_trial.number in [t.retried_from for t in trials if t.state == "complete"]
    assert registry.get_study(db, study_id=study_id).state == "done"


def test_sigterm_hands_the_trial_back_and_exits_zero_within_seconds(db: Database, postgres_url: str,
                                                                     tmp_path: Path) -> None:
    study_id = create_study(db, "terminated", 3)
    workers = start_workers(postgres_url, "terminated", "long_runner", tmp_path, 2, "--stop-timeout", "0.3")
    victim = workers[0]
    interrupted = wait_for(lambda: running_trial_of(db, study_id, victim.pid), STARTUP_S,
                           "a trial on the victim", workers)
    signalled = time.monotonic()
    victim.signal(signal.SIGTERM)
    assert victim.wait(10) == 0, victim.log()
    assert time.monotonic() - signalled < 3.0
    assert "1 handed back" in victim.log()

    assert workers[1].wait(60) == 0, workers[1].log()
    trials = trials_of(db, study_id)
    assert_budget_met_with_retries(trials, 3)
    assert {t.number: t.state for t in trials}[interrupted.number] == "fail"
    assert interrupted.number in [t.retried_from for t in trials if t.state == "complete"]


def test_four_processes_of_instant_trials_finish_exactly_the_budget(db: Database, postgres_url: str,
                                                                    tmp_path: Path) -> None:
    study_id = create_study(db, "contended", 60)
    workers = start_workers(postgres_url, "contended", "instant_runner", tmp_path, 4)
    for worker in workers:
        assert worker.wait(STARTUP_S + 30) == 0, worker.log()
    trials = trials_of(db, study_id)
    assert len(trials) == 60 and all(t.state == "complete" for t in trials)
    assert len({t.worker for t in trials}) > 1, "one worker ran everything: no contention was tested"


def test_three_workers_run_real_digits_trials_and_train_one_shared_backbone(db: Database, postgres_url: str,
                                                                            tmp_path: Path) -> None:
    # Stage 1 fixed, so every trial shares one backbone: the workers must train it once between them.
    fixed = {"stage1.epochs": 1, "stage1.lr": 0.01, "stage1.weight_decay": 5e-3, "stage2.epochs": 1,
             "stage2.feature_views": 1}
    study_id = create_study(db, "digits", 3, dataset="digits-lt", method="wb", fixed=fixed)
    artifacts = tmp_path / "artifacts"
    workers = start_workers(postgres_url, "digits", None, tmp_path, 3, "--device", "cpu",
                            "--artifact-dir", str(artifacts))
    for worker in workers:
        assert worker.wait(STARTUP_S + 60) == 0, worker.log()

    trials = trials_of(db, study_id)
    assert [t.state for t in trials] == ["complete"] * 3
    for trial in trials:
        assert set(trial.val) == set(trial.test) == {"all", "many", "medium", "few"}
        assert trial.values == [trial.val["all"]] and trial.diagnostics is not None
    assert len(list((artifacts / "stage1").iterdir())) == 1
    study = registry.get_study(db, study_id=study_id)
    assert study.state == "done" and study.best_val["all"] == max(t.val["all"] for t in trials)


def test_a_waiting_worker_outlives_its_finished_study_until_sigterm(db: Database, postgres_url: str,
                                                                  tmp_path: Path) -> None:
    study_id = create_study(db, "long-lived", 3)
    [worker] = start_workers(postgres_url, "long-lived", "instant_runner", tmp_path, 1, "--wait")
    wait_for(lambda: registry.get_study(db, study_id=study_id).state == "done", STARTUP_S, "the budget",
             [worker])
    time.sleep(2)
    assert worker.process.poll() is None, "a --wait worker must stay up for new work"
    worker.signal(signal.SIGTERM)
    assert worker.wait(15) == 0, worker.log()


def test_sigterm_ends_a_trial_that_ignores_it_within_the_stop_timeout(db: Database, postgres_url: str,
                                                                      tmp_path: Path) -> None:
    """A trial that does not reach an epoch boundary (here: 60 s without one) is handed back and the worker
    exits about a second after --stop-timeout, not when the trial would have ended."""
    study_id = create_study(db, "stubborn", 1)
    [worker] = start_workers(postgres_url, "stubborn", "stubborn_runner", tmp_path, 1, "--stop-timeout", "2")
    running = wait_for(lambda: running_trial_of(db, study_id, worker.pid), STARTUP_S, "the stubborn trial",
                       [worker])
    wait_for(lambda: _asleep(db, study_id), 30, "the stubborn trial's sleep", [worker])
    signalled = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.wait(20) == 0, worker.log()
    took = time.monotonic() - signalled
    print(f"\nSIGTERM to exit with --stop-timeout 2 and a trial that ignores it: {took:.2f} s")
    assert took < 2 + 4, worker.log()  # the timeout, the 1 s margin, a hand-back on two busy cores
    trials = {t.number: t for t in trials_of(db, study_id)}
    retry = next(t for t in trials.values() if t.retried_from == running.number)
    assert trials[running.number].state == "fail" and retry.state == "waiting"
    assert retry.params == trials[running.number].params
    assert "1 handed back" in worker.log()


def _asleep(db: Database, study_id: int) -> bool:
    query = (sa.select(trial_user_attrs.c.trial_id).join(trials, trials.c.trial_id == trial_user_attrs.c.trial_id)
             .where(trials.c.study_id == study_id, trial_user_attrs.c.key == "asleep"))
    with db.engine.connect() as connection:
        return connection.execute(query).first() is not None
