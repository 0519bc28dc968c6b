"""tailtune's one boundary with Optuna's storage: the only module that touches Optuna's internals.

Everything tailtune does below Optuna's public API is here, written against `OPTUNA_VERSION` and its schema head
`OPTUNA_SCHEMA_HEAD` (tests/studies/store/test_storage.py fails, naming what to re-check, when either changes):

- Optuna's tables, for tailtune's own SQL (paged lists, budget counts, the claim);
- `Storage`: Optuna's RDBStorage on the `Database`'s own connection pool (a worker holds one connection for its
  loop, whatever Optuna does). Its own methods all work inside `one_transaction()`, where Optuna's calls join
  tailtune's SQL on one connection in one transaction, so a claim or a hand-back is all or nothing: starting
  trials (`start_trials`), and the reaper (`stale_trial_ids`, `fail_and_retry`);
- functions of one Optuna trial or study, not of a storage: `new_trial` and `tell` (what `Study.ask` and
  `Study.tell` do around a claim, minus their full re-reads), `params_written_together` and
  `set_trial_user_attrs` (a trial's params in one statement, its user attrs as one upsert: Optuna commits once
  per param and per attribute), `trial_id`, `retry_callback`; `read_study_user_attr` and
  `write_study_user_attr` (a study's user attr in the caller's transaction); `optuna_schema_is_current` and
  `create_or_check_schema`, Optuna's tables.

Optuna's contract suite (`optuna.testing.pytest_storages.StorageTestCase`) runs against `Storage` in the tests.
"""

from __future__ import annotations

import contextlib
import functools
import json
import warnings
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy as sa
import sqlalchemy.dialects.postgresql
import sqlalchemy.dialects.sqlite
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from optuna.distributions import BaseDistribution
from optuna.exceptions import ExperimentalWarning
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._rdb import models
from optuna.study._tell import _tell_with_warning
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import orm

# What this module's SQL and its use of Optuna's private names were written and tested against.
OPTUNA_VERSION = "5.0.0"
OPTUNA_SCHEMA_HEAD = "v3.2.0.a"

optuna_studies = models.StudyModel.__table__
trials = models.TrialModel.__table__
trial_values = models.TrialValueModel.__table__
trial_params = models.TrialParamModel.__table__
trial_user_attrs = models.TrialUserAttributeModel.__table__
trial_system_attrs = models.TrialSystemAttributeModel.__table__
trial_heartbeats = models.TrialHeartbeatModel.__table__
study_user_attrs = models.StudyUserAttributeModel.__table__
FINITE = models.TrialValueModel.TrialValueType.FINITE
stored_value: Callable[[float | None, Any], float] = models.TrialValueModel.stored_repr_to_value

WORKER_ATTR = "tailtune_worker"  # trial system attr: id of the worker that claimed the trial
ABORTED = ("Optuna rolled back the transaction its call had joined (after an error, or an integrity error it "
           "ignores as a race); nothing in the transaction was written")


class TransactionAbortedError(RuntimeError):
    """Optuna rolled back a transaction of `Storage.one_transaction`: nothing in it was written."""


class Storage(RDBStorage):
    """Optuna's RDBStorage whose sessions use `engine` (the Database's pool), with heartbeats and, when given,
    stale trials retried with the same params and their lineage (system attrs failed_trial, retry_history)."""

    def __init__(self, engine: sa.Engine, *, heartbeat_interval: int | None = None, grace_period: int | None = None,
                 max_retry: int | None = None) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)  # the heartbeat arguments; the version is pinned
            # The tables exist and their version was checked when the Database connected. RDBStorage makes an
            # engine of its own for a version-table read; on the Database's pool, that opens no connection more.
            super().__init__(engine.url.render_as_string(hide_password=False),
                             engine_kwargs={"pool": engine.pool}, skip_compatibility_check=True,
                             skip_table_creation=True, heartbeat_interval=heartbeat_interval,
                             grace_period=grace_period,
                             heartbeat_stale_trial_callback=retry_callback(max_retry) if heartbeat_interval else None)
        self.engine = engine
        self.scoped_session = orm.scoped_session(orm.sessionmaker(bind=engine))
        self._version_manager.engine, self._version_manager.scoped_session = engine, self.scoped_session
        self.max_retry = max_retry

    def __getstate__(self) -> dict[str, Any]:
        # The Database's pool cannot be pickled: an unpickled storage opens an engine of its own on the same URL,
        # as Optuna's RDBStorage does (Optuna's contract suite pickles storages).
        return super().__getstate__() | {"engine_kwargs": {}}

    @contextlib.contextmanager
    def one_transaction(self) -> Iterator[sa.Connection]:
        """One connection in one transaction, committed when the block ends; Optuna's calls in this thread join
        it (join_transaction_mode="rollback_only": their commits leave it open, their rollbacks end it).

        Optuna rolls back on any error, and after an integrity error it takes for a race among processes it
        rolls back and goes on without raising. Either way the whole transaction is gone, and the connection
        would begin a fresh one for the next statement, which Optuna's next call would commit on its own (a
        trial created RUNNING without the heartbeat that lets it be reaped). So no second transaction may begin
        on the connection: the next statement, Optuna's or the block's, raises TransactionAbortedError, as does
        the block's end, and nothing after the rollback is written either.
        """
        def refuse_a_second_transaction(_: sa.Connection) -> None:
            raise TransactionAbortedError(ABORTED)

        with self.engine.connect() as connection:
            transaction = connection.begin()
            sa.event.listen(connection, "begin", refuse_a_second_transaction)
            self.scoped_session.registry.set(orm.Session(bind=connection, join_transaction_mode="rollback_only"))
            try:
                yield connection
            except Exception as error:
                if transaction.is_active or isinstance(error, TransactionAbortedError):
                    raise
                raise TransactionAbortedError(ABORTED) from error
            finally:
                self.scoped_session.remove()
                sa.event.remove(connection, "begin", refuse_a_second_transaction)
            if not transaction.is_active:
                raise TransactionAbortedError(ABORTED)
            transaction.commit()

    def start_trials(self, connection: sa.Connection, *, study: optuna.Study, count: int,
                     create_new: bool = True) -> list[int]:
        """Ids of `count` trials set RUNNING: WAITING ones first (retries, queued trials), oldest first, then new
        ones (none with `create_new` False: at most the WAITING ones). What `Study.ask` does, minus its read of
        every trial changed since its last call and its relative sampling (for TPE, a read of the whole study),
        which `new_trial` does after the caller's lock is gone. Through the study's own storage (this one, behind
        Optuna's cache), so the cache knows the new trials."""
        waiting = connection.execute(sa.select(trials.c.trial_id)
                                     .where(trials.c.study_id == study._study_id, trials.c.state == TrialState.WAITING)
                                     .order_by(trials.c.trial_id).limit(count)).scalars().all()
        started = [trial_id for trial_id in waiting
                   if study._storage.set_trial_state_values(trial_id, TrialState.RUNNING)]
        missing = count - len(started) if create_new else 0
        return started + [study._storage.create_new_trial(study._study_id) for _ in range(missing)]

    def stale_trial_ids(self, *, study: optuna.Study) -> list[int]:
        """RUNNING trials of the study whose heartbeat is older than the grace period (Optuna's own query)."""
        return self._get_stale_trial_ids(study._study_id)

    def fail_and_retry(self, connection: sa.Connection, *, study: optuna.Study, trial_ids: Sequence[int]) -> list[int]:
        """Fails those of `trial_ids` still RUNNING and queues each one's WAITING clone (same params, lineage)
        while its lineage has retries left, as Optuna's reaper does; returns the ids it failed.

        One conditional UPDATE decides which: a trial told meanwhile is not RUNNING any more and is left alone,
        its result kept. Optuna's reaper asks `set_trial_state_values` instead, which raises for a finished
        trial and rolls its session back (the joined transaction with it, but that a nested read happens to
        close the session first); here no Optuna call can meet a finished trial.
        """
        if not trial_ids:
            return []
        # datetime.now(), naive local time, is what Optuna stores in datetime_complete.
        failed = sorted(connection.execute(
            trials.update().where(trials.c.trial_id.in_(trial_ids), trials.c.state == TrialState.RUNNING)
            .values(state=TrialState.FAIL, datetime_complete=datetime.now()).returning(trials.c.trial_id)).scalars())
        queue_retry = retry_callback(self.max_retry)
        for trial_id in failed:
            queue_retry(study, self.get_trial(trial_id))
        return failed


def retry_callback(max_retry: int | None) -> RetryHeartbeatStaleTrialCallback:
    """Optuna's retry of a failed trial: a WAITING clone with the same params and lineage system attrs
    (failed_trial, retry_history); after `max_retry` retries of one lineage, none."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)  # "experimental" in Optuna; the version is pinned
        return RetryHeartbeatStaleTrialCallback(max_retry=max_retry)


def read_study_user_attr(connection: sa.Connection, *, study_ids: Sequence[int], key: str) -> dict[int, Any]:
    """study id -> the value of its user attr `key`, for the studies that have it."""
    rows = connection.execute(sa.select(study_user_attrs.c.study_id, study_user_attrs.c.value_json)
                              .where(study_user_attrs.c.study_id.in_(study_ids), study_user_attrs.c.key == key))
    return {row.study_id: json.loads(row.value_json) for row in rows}


def write_study_user_attr(connection: sa.Connection, *, study_id: int, key: str, value: Any) -> None:
    """`study.set_user_attr` in the caller's transaction (Optuna's own call commits a session of its own)."""
    insert = _UPSERTS[connection.dialect.name](study_user_attrs).values(study_id=study_id, key=key,
                                                                         value_json=json.dumps(value))
    connection.execute(insert.on_conflict_do_update(index_elements=["study_id", "key"],
                                                    set_={"value_json": insert.excluded.value_json}))


@functools.cache
def _optuna_schema_head() -> str:
    """The schema version the running Optuna needs, the head of its migration scripts (RDBStorage.get_head_version,
    which loads all of them, 40 ms, on every call): read once per process."""
    return ScriptDirectory(str(Path(models.__file__).parent / "alembic")).get_current_head()


def optuna_schema_is_current(connection: sa.Connection) -> bool:
    """Optuna's tables exist at the version the running Optuna needs (it stamps them after creating them)."""
    return MigrationContext.configure(connection).get_current_revision() == _optuna_schema_head()


def create_or_check_schema(url: str) -> None:
    """Optuna creates its tables (and stamps their version), then their version is checked against the running
    Optuna's: here, one connection at a time, where Optuna's own check holds two at once."""
    storage = RDBStorage(url, engine_kwargs={"poolclass": sa.NullPool}, skip_compatibility_check=True)
    current, head = storage.get_current_version(), _optuna_schema_head()
    storage.engine.dispose()
    if current != head:
        raise RuntimeError(f"the database's Optuna tables are at schema {current}, optuna {optuna.__version__} "
                           f"needs {head}: run `optuna storage upgrade --storage URL` once, then start again")


# ---------------------------------------------------------------------------------------------- one trial
def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    return trial._trial_id


def new_trial(study: optuna.Study, claimed_id: int) -> optuna.Trial:
    """The claimed trial as `Study.ask` returns it: the sampler re-reads the study's trials once, then its
    relative sampling runs."""
    study._thread_local.cached_all_trials = None
    return optuna.Trial(study, claimed_id)


def tell(study: optuna.Study, trial: optuna.Trial, values: Sequence[float] | None,
         state: TrialState | None) -> TrialState:
    """`Study.tell` minus its closing re-read of the whole trial, which the worker would discard. Its opening read
    refuses a trial that is no longer RUNNING (UpdateFinishedTrialError, or ValueError for a FAIL trial)."""
    return _tell_with_warning(study, trial, values, state)[0]


def set_trial_user_attrs(trial: optuna.Trial, attributes: dict[str, Any]) -> None:
    """`trial.set_user_attr` for many attributes in one statement: Optuna reads the trial and commits once per
    attribute, which costs a trial with ~20 result attributes more than its stage-2 training does."""
    backend = _rdb_backend(trial)
    rows = [{"trial_id": trial._trial_id, "key": key, "value_json": json.dumps(value)}
            for key, value in attributes.items()]
    insert = _UPSERTS[backend.engine.name](trial_user_attrs).values(rows)
    with backend.engine.begin() as connection:
        _check_updatable(connection, trial._trial_id)
        connection.execute(insert.on_conflict_do_update(index_elements=["trial_id", "key"],
                                                        set_={"value_json": insert.excluded.value_json}))
    trial._cached_frozen_trial.user_attrs.update(attributes)


@contextlib.contextmanager
def params_written_together(trial: optuna.Trial) -> Iterator[None]:
    """Inside, `trial.suggest_*` samples as Optuna does but keeps the values; on leaving, they are written in
    one transaction. Optuna commits once per suggested parameter, the largest database cost of a cheap trial.
    The checks are Optuna's: the trial must be unfinished, and each distribution compatible with the one
    the study already has under that name. Nothing is written when the block raises (the trial fails)."""
    backend = _rdb_backend(trial)
    storage = trial.storage
    deferred = _DeferredParams(storage)
    trial.storage = deferred
    try:
        yield
    finally:
        trial.storage = storage
    if deferred.params:
        _write_params(backend, trial._trial_id, deferred.params)


class _DeferredParams:
    """Stands in for a trial's storage while it samples: keeps `set_trial_param`, passes the rest through."""

    def __init__(self, storage: optuna.storages.BaseStorage) -> None:
        self._storage = storage
        self.params: dict[str, tuple[float, BaseDistribution]] = {}

    def set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                        distribution: BaseDistribution) -> None:
        self.params[param_name] = (param_value_internal, distribution)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)


def _write_params(backend: RDBStorage, trial_id: int, params: dict[str, tuple[float, BaseDistribution]]) -> None:
    with backend.engine.begin() as connection:
        study_id = _check_updatable(connection, trial_id)
        # The study's distribution under each name, any one row of it: Optuna keeps them mutually compatible.
        earlier = connection.execute(sa.select(*(
            sa.select(trial_params.c.distribution_json).join(trials)
            .where(trials.c.study_id == study_id, trial_params.c.param_name == name)
            .limit(1).scalar_subquery().label(f"p{n}") for n, name in enumerate(params)))).one()
        for (_, distribution), stored in zip(params.values(), earlier, strict=True):
            if stored is not None:
                optuna.distributions.check_distribution_compatibility(
                    optuna.distributions.json_to_distribution(stored), distribution)
        connection.execute(trial_params.insert(), [
            {"trial_id": trial_id, "param_name": name, "param_value": value,
             "distribution_json": optuna.distributions.distribution_to_json(distribution)}
            for name, (value, distribution) in params.items()])


def _rdb_backend(trial: optuna.Trial) -> RDBStorage:
    return trial.storage._backend  # Optuna wraps every RDBStorage a study is given in a _CachedStorage


def _check_updatable(connection: sa.Connection, trial_id: int) -> int:
    """As Optuna's `check_trial_is_updatable`, same error and message: a finished trial is read-only. Returns
    the trial's study id. Optuna's own check reads the trial's number on a second connection, which a worker's
    one-connection pool never frees while this one is held (a 30 s pool timeout, then StorageInternalError)."""
    row = connection.execute(sa.select(trials.c.state, trials.c.study_id, trials.c.number)
                             .where(trials.c.trial_id == trial_id)).one()
    if row.state.is_finished():
        raise optuna.exceptions.UpdateFinishedTrialError(
            f"Trial#{row.number} has already finished and can not be updated.")
    return row.study_id


_UPSERTS = {"postgresql": sa.dialects.postgresql.insert, "sqlite": sa.dialects.sqlite.insert}
