"""PostgreSQL stops and starts again under running workers: they reconnect and the budget is still exact."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from studies.store.db import Database
from tests.integration.workers import (
    assert_budget_met_with_retries,
    create_study,
    start_workers,
    trials_of,
    wait_for,
)
from tests.postgres import ThrowawayPostgres

pytestmark = [pytest.mark.postgres, pytest.mark.multiprocess, pytest.mark.restarts_postgres, pytest.mark.slow]

OUTAGE_S = 2.0


def test_workers_survive_a_postgres_restart(throwaway_postgres: ThrowawayPostgres, tmp_path: Path) -> None:
    url = throwaway_postgres.new_database_url()
    db = Database.connect(url)
    study_id = create_study(db, "restarted", 8)
    workers = start_workers(url, "restarted", "sleep_runner", tmp_path, 2)
    finished_two = lambda: sum(t.state == "complete" for t in trials_of(db, study_id)) >= 2  # noqa: E731
    wait_for(finished_two, 60, "two finished trials", workers)

    throwaway_postgres.stop()
    assert not db.ping()
    time.sleep(OUTAGE_S)
    throwaway_postgres.start()
    assert db.ping()  # the pool's pre-ping replaced the dead connections

    for worker in workers:
        assert worker.wait(90, state=lambda: [(t.number, t.state, t.worker) for t in trials_of(db, study_id)]) == 0, \
            worker.log()
    assert any("retrying" in worker.log() or "unavailable" in worker.log() for worker in workers), \
        "no worker noticed the outage"
    assert_budget_met_with_retries(trials_of(db, study_id), 8)
    db.dispose()


def test_a_named_lock_taken_again_after_the_server_was_down_does_not_hang(
        throwaway_postgres: ThrowawayPostgres) -> None:
    """A worker that starts while PostgreSQL restarts takes the schema lock, fails to reach the server and retries:
    the retry must get the lock (in a CI run it waited 300 s on its own thread lock, left held by the failure)."""
    db = Database.connect(throwaway_postgres.new_database_url())
    throwaway_postgres.stop()
    try:
        with pytest.raises(sa.exc.OperationalError), db.named_lock("tailtune:test"):
            pass
    finally:
        throwaway_postgres.start()
    taken = threading.Event()

    def take() -> None:
        with db.named_lock("tailtune:test"):
            taken.set()

    threading.Thread(target=take, daemon=True).start()
    assert taken.wait(30), "the lock was never taken after the server came back"
    db.dispose()
