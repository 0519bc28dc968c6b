"""Admission control, reaping, retries, locks and the worker loop's bookkeeping, on PostgreSQL and SQLite."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
from optuna.trial import TrialState

from studies.definition.records import TrialRecord
from studies.definition.spec import parse_spec
from studies.run.worker import RunContext, WorkerSettings, one_at_a_time, run_worker
from studies.store import claims, registry, workers
from studies.store.db import Database, is_transient
from studies.store.storage import retry_callback, trial_id
from studies.store.tables import worker_table
from tests.trial_runners import instant_runner, sampled_value

HEARTBEAT_S, GRACE_S = 1, 2
QUICK = WorkerSettings(heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S, poll_interval_s=0.1,
                       handle_signals=False, max_consecutive_failures=3)


def create(db: Database, n_trials: int, name: str = "claims") -> int:
    spec = parse_spec({"name": name, "n_trials": n_trials, "sampler": "random", "confirm": None})
    return registry.create_study(db, spec=spec).id


def loaded(db: Database) -> claims.LoadedStudies:
    return claims.LoadedStudies(db, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S, max_retry=3)


def claim(db: Database, study_id: int, studies: claims.LoadedStudies) -> claims.ClaimedTrial | None:
    return claims.claim_next_trial(db, study_ids=[study_id], studies=studies, worker_id="test")


def complete(claimed: claims.ClaimedTrial) -> None:
    claimed.study.tell(claimed.trial, [sampled_value(claimed.trial, claimed.spec)])


def sleep_past_the_grace(db: Database) -> None:
    """Until a trial without a heartbeat since now is stale: SQLite stamps whole seconds, so a second more there."""
    time.sleep(GRACE_S + (1.1 if db.is_sqlite else 0.2))


def all_trials(db: Database, study_id: int) -> list[TrialRecord]:
    return registry.list_trials(db, study_id=study_id, offset=0, limit=1000).items


def test_claims_stop_at_the_budget_and_a_crashed_trial_is_replaced(database: Database) -> None:
    study_id, studies = create(database, 3), loaded(database)
    held = [claim(database, study_id, studies) for _ in range(3)]
    assert all(held) and claim(database, study_id, studies) is None

    held[0].study.tell(held[0].trial, state=TrialState.FAIL)
    replacement = claim(database, study_id, studies)
    assert replacement is not None and replacement.number == 3
    assert claim(database, study_id, studies) is None
    for claimed in (*held[1:], replacement):
        complete(claimed)
    assert claim(database, study_id, studies) is None
    record = registry.get_study(database, study_id=study_id)
    assert (record.state, record.counts.complete, record.counts.fail) == ("done", 3, 1)


def test_an_interrupted_trial_comes_back_with_its_params_while_the_budget_is_full(database: Database) -> None:
    study_id, studies = create(database, 2), loaded(database)
    first, second = claim(database, study_id, studies), claim(database, study_id, studies)
    sampled_value(first.trial, first.spec)
    complete(second)

    assert claims.release_for_retry(database, studies=studies, claimed=first)
    retry = claim(database, study_id, studies)
    assert retry is not None and retry.trial.params == first.trial.params
    complete(retry)
    trials = {t.number: t for t in all_trials(database, study_id)}
    assert trials[first.number].state == "fail"
    assert (trials[retry.number].state, trials[retry.number].retried_from) == ("complete", first.number)
    assert registry.get_study(database, study_id=study_id).counts.complete == 2


@pytest.mark.slow
def test_a_stale_trial_is_reaped_and_retried_with_its_params(database: Database) -> None:
    study_id, studies = create(database, 1), loaded(database)
    silent = claim(database, study_id, studies)  # claimed, then its worker stops heartbeating
    sampled_value(silent.trial, silent.spec)
    assert claim(database, study_id, studies) is None  # the one slot is RUNNING
    sleep_past_the_grace(database)
    retry = claim(database, study_id, studies)
    assert retry is not None and retry.trial.params == silent.trial.params
    complete(retry)
    trials = all_trials(database, study_id)
    assert sorted((t.state, t.retried_from) for t in trials) == [("complete", silent.number), ("fail", None)]


def test_a_claim_that_fails_part_way_leaves_no_trial(database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lock, count, create, first heartbeat and worker id are one transaction: a claim that dies before its
    heartbeat is written leaves no RUNNING trial that no reaper would ever see (Optuna reaps only trials with
    a heartbeat row)."""
    study_id, studies = create(database, 2), loaded(database)
    before = all_trials(database, study_id)  # the study's recipe, WAITING since creation

    def dies(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("the worker died between creating the trial and its first heartbeat")

    monkeypatch.setattr(claims, "_first_heartbeats", dies)
    with pytest.raises(RuntimeError, match="first heartbeat"):
        claim(database, study_id, studies)
    assert [t.state for t in before] == ["waiting"] and all_trials(database, study_id) == before
    monkeypatch.undo()
    claimed = claim(database, study_id, studies)
    assert claimed is not None and claimed.number == 0
    complete(claimed)
    assert [t.state for t in all_trials(database, study_id)] == ["complete"]


def test_concurrent_claimers_never_exceed_the_budget(database: Database) -> None:
    study_id, n_trials = create(database, 24), 24
    claimed_numbers: list[int] = []

    def work() -> None:
        # Each claimer its own Database, as each worker process has its own one-connection pool.
        db = Database.connect(database.url)
        # No heartbeat thread here: a grace period no loaded machine outlasts, so nothing is reaped meanwhile.
        studies = claims.LoadedStudies(db, heartbeat_interval=HEARTBEAT_S, grace_period=600, max_retry=3)
        while (claimed := claim(db, study_id, studies)) is not None:
            claimed_numbers.append(claimed.number)
            complete(claimed)
        db.dispose()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed_numbers) == list(range(n_trials))
    record = registry.get_study(database, study_id=study_id)
    assert (record.counts.complete, sum(record.counts.model_dump().values())) == (n_trials, n_trials)


def test_repeated_failures_stop_the_study_with_the_reason(database: Database, tmp_path: Path) -> None:
    study_id = create(database, 10)

    def broken(trial: optuna.Trial, spec: object, context: RunContext) -> list[float]:
        raise RuntimeError("CUDA out of memory")

    summary = run_worker(database, study_names=["claims"], settings=QUICK, artifact_dir=tmp_path,
                         runner=one_at_a_time(broken))
    record = registry.get_study(database, study_id=study_id)
    assert summary.failed == 3 and record.counts.fail == 3 and record.state == "stopped"
    assert "3 trials in a row failed" in record.stop_reason and "CUDA out of memory" in record.stop_reason


@pytest.mark.parametrize("stores_attrs", [False, True], ids=["at-tell", "at-its-own-write"])
def test_a_result_for_a_trial_reaped_meanwhile_is_dropped_and_the_worker_goes_on(
        database: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture, stores_attrs: bool) -> None:
    """Reaped while it ran (its heartbeats lapsed in an outage): the result is dropped as a late tell, whether
    Optuna's tell or the trial's own write of its results finds the trial finished; no error is logged."""
    study_id = create(database, 3)
    reaped: list[int] = []

    def reaped_while_running(trial: optuna.Trial, spec: object, context: RunContext) -> list[float]:
        value = sampled_value(trial, spec)
        if not reaped:  # what a reaper does to a trial whose heartbeat lapsed: FAIL it, queue a clone
            storage = database.optuna_storage()
            storage.set_trial_state_values(trial_id(trial), TrialState.FAIL)
            retry_callback(3)(trial.study, storage.get_trial(trial_id(trial)))
            reaped.append(trial.number)
            if stores_attrs:  # what storage.set_trial_user_attrs raises then (its connection is the worker's)
                raise optuna.exceptions.UpdateFinishedTrialError(f"Trial#{trial.number} has already finished")
        return [value]

    summary = run_worker(database, study_names=["claims"], settings=QUICK, artifact_dir=tmp_path,
                         runner=one_at_a_time(reaped_while_running))
    assert (summary.late_tells, summary.completed, summary.failed) == (1, 3, 0)
    assert not [record.message for record in caplog.records if record.levelno >= logging.ERROR]
    trials = all_trials(database, study_id)
    assert [t.number for t in trials if t.state == "fail"] == reaped
    assert [t.retried_from for t in trials if t.state == "complete"].count(reaped[0]) == 1


def test_the_worker_exits_when_the_budget_is_met_without_waiting_a_poll_interval(database: Database,
                                                                                 tmp_path: Path) -> None:
    create(database, 3)
    patient = QUICK.model_copy(update={"poll_interval_s": 120.0})
    summaries = []
    worker = threading.Thread(target=lambda: summaries.append(
        run_worker(database, study_names=["claims"], settings=patient, artifact_dir=tmp_path,
                   runner=one_at_a_time(instant_runner))),
        daemon=True)
    worker.start()
    # Its list of open studies is remembered between claims; the claim that finds the budget met must check
    # that list again at once rather than sleep a poll interval on a study that is already done.
    worker.join(60)
    assert not worker.is_alive() and summaries[0].completed == 3


@pytest.mark.slow
def test_a_long_trial_is_heartbeated_not_reaped_and_its_worker_is_live(database: Database, tmp_path: Path) -> None:
    study_id = create(database, 1)
    started, release = threading.Event(), threading.Event()
    summaries = []

    def held(trial: optuna.Trial, spec: object, context: RunContext) -> list[float]:
        started.set()
        release.wait(10)
        return instant_runner(trial, spec, context)

    def work() -> None:
        summaries.append(run_worker(database, study_names=None, settings=QUICK, artifact_dir=tmp_path,
                                    runner=one_at_a_time(held)))

    worker = threading.Thread(target=work)
    worker.start()
    assert started.wait(10)
    sleep_past_the_grace(database)  # only the heartbeat thread keeps it alive
    assert claim(database, study_id, loaded(database)) is None  # this claim reaps stale trials first
    live = workers.list_workers(database)
    release.set()
    worker.join(10)

    assert len(live) == 1 and (live[0].state, live[0].current_study_id, live[0].current_trial_number) == (
        "running", study_id, 0)
    assert [t.state for t in all_trials(database, study_id)] == ["complete"]
    assert (summaries[0].completed, summaries[0].late_tells) == (1, 0)
    assert workers.list_workers(database) == []


def test_named_lock_excludes_other_holders(database: Database) -> None:
    inside: list[int] = []
    overlaps: list[int] = []

    def hold(index: int) -> None:
        with database.named_lock("stage1:abc"):
            inside.append(index)
            if len(inside) > 1:
                overlaps.append(index)
            time.sleep(0.05)
            inside.remove(index)

    threads = [threading.Thread(target=hold, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlaps == []


@pytest.mark.postgres
def test_lost_connections_are_transient_and_bad_sql_is_not(postgres_url: str) -> None:
    unreachable = sa.create_engine("postgresql+psycopg2://postgres@127.0.0.1:1/x",
                                   connect_args={"connect_timeout": 1})
    with pytest.raises(sa.exc.OperationalError) as lost:
        unreachable.connect()
    db = Database.connect(postgres_url)
    with pytest.raises(sa.exc.ProgrammingError) as bad, db.engine.connect() as connection:
        connection.execute(sa.text("SELECT * FROM no_such_table"))
    db.dispose()
    assert is_transient(lost.value) and not is_transient(bad.value)


def _sqlstate_error(db: Database, statement: str) -> sa.exc.DBAPIError:
    with pytest.raises(sa.exc.DBAPIError) as raised, db.engine.connect() as connection:
        connection.execute(sa.text(statement))
    return raised.value


# A program limit: PostgreSQL's target list holds at most 1664 entries (SQLSTATE 54011), which psycopg2 raises
# as an OperationalError like a lost connection.
TOO_MANY_COLUMNS = "SELECT " + ", ".join(f"{n} AS c{n}" for n in range(1700))


@pytest.mark.postgres
def test_program_limits_and_data_errors_are_not_transient_lock_timeouts_and_deadlocks_are(postgres_url: str) -> None:
    db = Database.connect(postgres_url, pool_size=2)  # two transactions at once: a worker's pool has one connection
    limit = _sqlstate_error(db, TOO_MANY_COLUMNS)
    assert isinstance(limit, sa.exc.OperationalError) and not is_transient(limit)
    assert not is_transient(_sqlstate_error(db, "SELECT 1 / 0"))  # 22012, a data error
    with db.engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE locked (id int PRIMARY KEY)"))
        connection.execute(sa.text("INSERT INTO locked VALUES (1), (2)"))
    assert is_transient(_lock_timeout(db)) and is_transient(_deadlock(db))
    db.dispose()


def _lock_timeout(db: Database) -> BaseException:
    with db.engine.begin() as holder:
        holder.execute(sa.text("SELECT * FROM locked WHERE id = 1 FOR UPDATE"))
        return _sqlstate_error(db, "SET lock_timeout = '50ms'; SELECT * FROM locked WHERE id = 1 FOR UPDATE")


def _deadlock(db: Database) -> BaseException:
    """Two transactions that each hold one row and wait for the other's: PostgreSQL aborts one (40P01)."""
    errors: list[BaseException] = []
    both_hold = threading.Barrier(2)

    def lock_both(first: int, second: int) -> None:
        try:
            with db.engine.begin() as connection:
                connection.execute(sa.text("SET deadlock_timeout = '50ms'"))
                connection.execute(sa.text(f"SELECT * FROM locked WHERE id = {first} FOR UPDATE"))
                both_hold.wait()
                connection.execute(sa.text(f"SELECT * FROM locked WHERE id = {second} FOR UPDATE"))
        except sa.exc.DBAPIError as error:
            errors.append(error)

    threads = [threading.Thread(target=lock_both, args=order) for order in ((1, 2), (2, 1))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(errors) == 1
    return errors[0]


@pytest.mark.postgres
def test_a_program_limit_fails_each_trial_once_and_stops_the_study_with_its_message(
        postgres_database: Database, tmp_path: Path) -> None:
    db = postgres_database
    study_id = create(db, 10)
    calls = []

    def over_the_limit(trial: optuna.Trial, spec: object, context: RunContext) -> list[float]:
        calls.append(trial.number)
        if len(calls) > 10:  # handed back for ever (the bug): end the study so the test ends
            registry.stop_study(db, study_id=study_id)
        with db.engine.connect() as connection:
            connection.execute(sa.text(TOO_MANY_COLUMNS))
        return [0.0]

    summary = run_worker(db, study_names=["claims"], settings=QUICK, artifact_dir=tmp_path,
                         runner=one_at_a_time(over_the_limit))
    record = registry.get_study(db, study_id=study_id)
    assert (summary.failed, summary.interrupted, record.counts.fail, record.state) == (3, 0, 3, "stopped")
    assert "target lists can have at most 1664 entries" in record.stop_reason


def test_a_worker_silent_for_three_heartbeats_is_shown_gone_and_later_not_at_all(database: Database) -> None:
    now = datetime.now(UTC)
    silent_for = {"live": timedelta(0), "gone": timedelta(seconds=4), "long-gone": timedelta(days=2)}
    with database.engine.begin() as connection:
        for name, silence in silent_for.items():
            connection.execute(worker_table.insert().values(
                id=name, host="h", pid=1, state="running", heartbeat_interval_s=1, started_at=now - silence,
                last_seen=now - silence))
        connection.execute(worker_table.insert().values(id="exited", host="h", pid=2, state="exited",
                                                        heartbeat_interval_s=1, last_seen=now))
    shown = {worker.id: worker.state for worker in workers.list_workers(database)}
    assert shown == {"live": "running", "gone": "gone"}
