"""The store's transactions are right by construction: Optuna's calls that join one (`Storage.one_transaction`)
cannot discard it silently, the reaper meets a late tell without a rollback, a claim retried after a lost commit
reply finds its own trials, and every change to a study waits for the study's lock."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from datetime import datetime

import pytest
import sqlalchemy as sa
from optuna.trial import TrialState

from studies.definition.spec import parse_spec
from studies.store import baselines, claims, lifecycle, registry
from studies.store.db import Database
from studies.store.storage import Storage, TransactionAbortedError, trial_heartbeats
from studies.store.tables import study_table

HEARTBEAT_S, GRACE_S = 1, 2


def create(db: Database, n_trials: int) -> int:
    return registry.create_study(db, spec=parse_spec({"name": "tx", "n_trials": n_trials, "sampler": "random"})).id


def loaded(db: Database) -> claims.LoadedStudies:
    return claims.LoadedStudies(db, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S, max_retry=3)


def claim(db: Database, study_id: int, studies: claims.LoadedStudies) -> claims.ClaimedTrial | None:
    return claims.claim_next_trial(db, study_ids=[study_id], studies=studies, worker_id="test")


def trial_states(db: Database, study_id: int) -> list[tuple[int, str]]:
    return [(t.number, t.state) for t in registry.list_trials(db, study_id=study_id, limit=100).items]


@pytest.fixture
def second_database(database: Database) -> Iterator[Database]:
    """Another process's pool on the same database (a worker's pool has one connection, which a claim holds)."""
    db = Database.connect(database.url)
    yield db
    db.dispose()


def test_an_optuna_rollback_inside_a_joined_transaction_aborts_all_of_it(database: Database) -> None:
    """Optuna rolls its session back and carries on after an integrity error it calls a timing issue (here: a
    heartbeat for a trial that does not exist); in a joined transaction that rollback is the caller's too. The
    block must fail, not commit half of itself, nor return as if its writes were kept."""
    study_id = create(database, 2)
    storage = database.optuna_storage()
    with pytest.raises(TransactionAbortedError, match="rolled back"), \
            registry.locked_study(database, study_id=study_id, storage=storage) as (connection, _):
        if database.is_sqlite:  # a foreign-key violation, as PostgreSQL's: first statement, outside a transaction
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        connection.execute(study_table.update().where(study_table.c.id == study_id).values(n_trials=99))
        storage.record_heartbeat(10**9)
    assert registry.get_study(database, study_id=study_id).n_trials == 2


def test_a_statement_after_optunas_rollback_aborts_the_block_with_the_cause(database: Database) -> None:
    study_id = create(database, 2)
    storage = database.optuna_storage()
    with pytest.raises(TransactionAbortedError), \
            registry.locked_study(database, study_id=study_id, storage=storage) as (connection, _):
        if database.is_sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        storage.record_heartbeat(10**9)
        connection.execute(study_table.update().where(study_table.c.id == study_id).values(n_trials=99))
    assert registry.get_study(database, study_id=study_id).n_trials == 2


def test_the_reaper_meeting_a_late_tell_keeps_the_result_and_the_claim(
        database: Database, second_database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stale trial told between the reaper's read of stale trials and its write: the result stands, no retry
    is queued for it, and the claim that reaped goes on and commits."""
    study_id = create(database, 3)
    late = claim(second_database, study_id, loaded(second_database))
    with second_database.engine.begin() as connection:  # its heartbeats lapsed long ago
        connection.execute(trial_heartbeats.update().where(trial_heartbeats.c.trial_id == late.trial_id)
                           .values(heartbeat=datetime(2000, 1, 1)))
    stale_trial_ids = type(database.optuna_storage())._get_stale_trial_ids

    def told_meanwhile(self: object, study_id: int) -> list[int]:
        stale = stale_trial_ids(self, study_id)
        if late.trial_id in stale:
            late.study.tell(late.trial, 1.0)
        return stale

    monkeypatch.setattr(type(database.optuna_storage()), "_get_stale_trial_ids", told_meanwhile)
    reaper = claim(database, study_id, loaded(database))
    assert reaper is not None and reaper.number == 1
    assert trial_states(database, study_id) == [(0, "complete"), (1, "running")]
    retries = [t for t in registry.list_trials(database, study_id=study_id).items if t.retried_from is not None]
    assert retries == [] and registry.get_study(database, study_id=study_id).best_values == [1.0]


@contextlib.contextmanager
def commit_reply_lost(db: Database) -> Iterator[list[bool]]:
    """The next commit reaches the server, then the connection drops before the client hears back."""
    lose_next_reply = [True]

    def commit_then_drop(connection: sa.Connection) -> None:
        if lose_next_reply and lose_next_reply.pop():
            dbapi_connection = connection.connection.dbapi_connection
            dbapi_connection.commit()  # the server has it...
            dbapi_connection.close()  # ...and the client's own COMMIT meets a dead connection

    sa.event.listen(db.engine, "commit", commit_then_drop)
    try:
        yield lose_next_reply
    finally:
        sa.event.remove(db.engine, "commit", commit_then_drop)
    assert not lose_next_reply, "no commit ran"


@pytest.mark.postgres
def test_a_claim_retried_after_its_commit_reply_was_lost_returns_its_own_trials(postgres_database: Database) -> None:
    """The claim commits, then the connection drops before the reply: the retry must find the trials it had
    claimed, not claim more (duplicates) and leave the first ones running with no worker (orphans)."""
    db = postgres_database
    study_id = create(db, 2)
    studies = loaded(db)
    with commit_reply_lost(db):
        claimed = claim(db, study_id, studies)
    assert claimed is not None and claimed.number == 0
    assert trial_states(db, study_id) == [(0, "running")]
    claimed.study.tell(claimed.trial, 1.0)
    assert trial_states(db, study_id) == [(0, "complete")]


@pytest.mark.postgres
def test_an_optuna_write_after_its_own_rollback_is_not_committed_on_its_own(database: Database) -> None:
    """After the rollback the connection has no transaction, and Optuna's next call began one of its own and
    committed it: a claim that met a race left a RUNNING trial with no heartbeat, which no reaper ever fails and
    which kept two workers waiting on a full budget (tests/integration/test_postgres_restart.py)."""
    study_id = create(database, 2)
    storage = database.optuna_storage()
    before = trial_states(database, study_id)  # the queued recipe
    with pytest.raises(TransactionAbortedError), \
            registry.locked_study(database, study_id=study_id, storage=storage) as (connection, _):
        if database.is_sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        storage.record_heartbeat(10**9)
        storage.create_new_trial(study_id)
    assert trial_states(database, study_id) == before


def test_a_claim_that_optuna_rolled_back_as_a_race_is_retried_not_fatal(
        postgres_database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """Optuna takes some integrity errors for a race among processes, rolls back and carries on (a heartbeat
    written while PostgreSQL restarts and a worker's retry races it). Nothing was written, so the claim is
    retried like one that lost its connection; before, the worker died of TransactionAbortedError."""
    db = postgres_database
    study_id = create(db, 2)
    start_trials, raced = Storage.start_trials, []

    def start_after_a_race(self: Storage, connection: sa.Connection, **kwargs: object) -> list[int]:
        if not raced:
            raced.append(True)
            self.record_heartbeat(10**9)  # no such trial: an integrity error Optuna rolls back and ignores
        return start_trials(self, connection, **kwargs)

    monkeypatch.setattr(Storage, "start_trials", start_after_a_race)
    claimed = claim(db, study_id, loaded(db))
    assert raced and claimed is not None and claimed.number == 0
    assert trial_states(db, study_id) == [(0, "running")]


@pytest.mark.postgres
def test_a_baseline_claim_retried_after_its_commit_reply_was_lost_stays_this_workers(
        postgres_database: Database) -> None:
    """Else no worker fits the baseline until the claim expires: the one that claimed it thinks another did."""
    db = postgres_database
    study_id = create(db, 2)
    with commit_reply_lost(db):
        assert baselines.claim_baseline(db, study_id=study_id, worker_id="first")
    assert not baselines.claim_baseline(db, study_id=study_id, worker_id="second")


@pytest.mark.postgres
def test_a_failure_recorded_again_after_its_commit_reply_was_lost_counts_once(postgres_database: Database) -> None:
    """Counted twice, one failure stops a study whose limit is two failures in a row."""
    db = postgres_database
    study_id = create(db, 5)
    failed = claim(db, study_id, loaded(db))
    failed.study.tell(failed.trial, state=TrialState.FAIL)
    with commit_reply_lost(db):
        stopped = claims.record_failure(db, study_id=study_id, trial_id=failed.trial_id, error="boom", limit=2)
    assert not stopped and registry.get_study(db, study_id=study_id).state == "active"


def test_resume_waits_for_the_studys_lock(database: Database, second_database: Database) -> None:
    study_id = create(database, 2)
    registry.stop_study(database, study_id=study_id)
    holding = threading.Event()

    def hold_the_lock() -> None:
        with registry.locked_study(database, study_id=study_id):
            holding.set()
            time.sleep(0.5)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    holding.wait(10)
    started = time.monotonic()
    lifecycle.resume_study(second_database, study_id=study_id)
    waited_s = time.monotonic() - started
    holder.join()
    assert waited_s > 0.3 and registry.get_study(database, study_id=study_id).state == "active"
