"""A worker's PostgreSQL connections, counted by the server while it runs a real study: at most 2 (its loop and its
heartbeat thread), also while it trains a stage-1 backbone under the cache's lock and reports epochs to a pruner."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from studies.store import registry
from studies.store.db import Database
from tests.integration.workers import create_study, start_workers

pytestmark = [pytest.mark.postgres, pytest.mark.multiprocess, pytest.mark.slow]


def test_a_worker_running_a_study_holds_at_most_two_connections(postgres_server, postgres_url: str,
                                                                tmp_path: Path) -> None:
    db = Database.connect(postgres_url)
    study_id = create_study(db, "counted", 3, pruner="median", fixed={"stage1.epochs": 2, "stage2.epochs": 2})
    db.dispose()
    database = sa.make_url(postgres_url).database
    # Counted from the server's maintenance database, so the counting connection is not among those counted.
    # AUTOCOMMIT: inside one transaction pg_stat_activity would show the same snapshot every time.
    counter = sa.create_engine(postgres_server.url("postgres"), poolclass=sa.NullPool, isolation_level="AUTOCOMMIT")
    seen: list[int] = []
    done = threading.Event()

    def count() -> None:
        with counter.connect() as connection:
            while not done.wait(0.02):
                seen.append(connection.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE datname = :db"),
                                               {"db": database}).scalar_one())

    poller = threading.Thread(target=count)
    poller.start()
    try:
        [worker] = start_workers(postgres_url, "counted", None, tmp_path, 1, "--artifact-dir", str(tmp_path),
                                 "--device", "cpu")
        assert worker.wait(timeout_s=300) == 0, worker.log()
    finally:
        done.set()
        poller.join()
        counter.dispose()
    db = Database.connect(postgres_url)
    assert registry.get_study(db, study_id=study_id).counts.complete == 3
    db.dispose()
    print(f"connections to the study's database while the worker ran: max {max(seen)} over {len(seen)} samples")
    assert max(seen) <= 2 and max(seen) >= 1, seen
