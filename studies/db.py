"""The database every worker, the API and the CLI share: one engine per process, Optuna's storage, locks.

PostgreSQL is the service's backend; a SQLite file is the embedded default for one machine. Both hold
Optuna's own tables (so `optuna.load_study(storage=URL)` and optuna-dashboard see every study) and tailtune's
tables (studies/migrations), created on first connect.

Connections are few and checked before use: a bounded pool (`pool_pre_ping`, `pool_recycle`), disposed in a
forked child, and every call that meets a transient error (dropped connection, deadlock, serialization
failure, "database is locked") is retried with jittered backoff by `retry_transient`, so a PostgreSQL
restart costs a few slow calls, not a worker.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
import sqlite3
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import optuna
import psycopg2
import sqlalchemy as sa
import sqlalchemy.dialects.postgresql
import sqlalchemy.dialects.sqlite
from filelock import FileLock
from optuna.exceptions import ExperimentalWarning
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._rdb import models

from studies.migrations import upgrade_schema
from trainers.errors import UserInputError

log = logging.getLogger(__name__)

# tailtune's tables as the migrations in studies/migrations/versions create them.
metadata = sa.MetaData()
study_table = sa.Table(
    "tailtune_study", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(512)),
    sa.Column("state", sa.String(16)),
    sa.Column("method", sa.String(32)),
    sa.Column("dataset", sa.Text),
    sa.Column("n_trials", sa.Integer),
    sa.Column("spec_json", sa.Text),
    sa.Column("consecutive_failures", sa.Integer),
    sa.Column("stop_reason", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)
worker_table = sa.Table(
    "tailtune_worker", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("host", sa.String(255)),
    sa.Column("pid", sa.Integer),
    sa.Column("state", sa.String(16)),
    sa.Column("heartbeat_interval_s", sa.Integer),
    sa.Column("current_study_id", sa.Integer),
    sa.Column("current_trial_number", sa.Integer),
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("last_seen", sa.DateTime(timezone=True)),
)
# Optuna's tables (optuna==5.0.0 is pinned; these names are part of its schema, version-checked on connect).
optuna_studies = models.StudyModel.__table__
trials = models.TrialModel.__table__
trial_values = models.TrialValueModel.__table__
trial_params = models.TrialParamModel.__table__
trial_user_attrs = models.TrialUserAttributeModel.__table__
trial_system_attrs = models.TrialSystemAttributeModel.__table__
trial_heartbeats = models.TrialHeartbeatModel.__table__

T = TypeVar("T")

# Small on purpose: a worker needs one connection for its loop and one for its heartbeat thread; a hundred
# workers must not exhaust PostgreSQL's max_connections (optuna #1347).
POOL_SIZE = 2
MAX_OVERFLOW = 2
# Recycle before common server/proxy idle timeouts, so a long trial does not return to a dead connection.
POOL_RECYCLE_S = 900
DEFAULT_MAX_RETRY = 3

_engines: weakref.WeakSet[sa.Engine] = weakref.WeakSet()


class DatabaseUnavailableError(Exception):
    """The database could not be reached in time: a retry later may succeed. The message names the database
    (password hidden) and the fix, for the CLI and the server log; the API answers 503 without it."""


class Database:
    """A connection to tailtune's database: a SQLAlchemy engine plus factories for Optuna storages."""

    def __init__(self, url: str, engine: sa.Engine) -> None:
        self.url = url
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        self._storages: dict[tuple[int | None, int | None, int], RDBStorage] = {}
        _engines.add(engine)

    @classmethod
    def connect(cls, url: str | None, *, wait_s: float = 10.0, pool_size: int = POOL_SIZE) -> Database:
        """Opens the database at `url` and creates or upgrades its tables; waits up to `wait_s` for it.
        `pool_size`: PostgreSQL connections kept open (2 serve a worker's claims; the API needs one per
        concurrent request)."""
        url = _normalized_url(url)
        db = cls(url, sa.create_engine(url, **engine_kwargs(url, pool_size=pool_size)))
        try:
            retry_transient(db._ensure_schema, deadline_s=wait_s, what="connect")
        except sa.exc.SQLAlchemyError as error:
            db.dispose()
            raise DatabaseUnavailableError(
                f"cannot use the database at {redacted(url)}: {describe(error)}; check --storage "
                "(or TAILTUNE_DATABASE_URL) and that the server is running") from None
        return db

    def with_own_engine(self) -> Database:
        """The same database over a separate small pool (a heartbeat thread must not wait behind the loop)."""
        return Database(self.url, sa.create_engine(self.url, **engine_kwargs(self.url, pool_size=1)))

    def optuna_storage(self, *, heartbeat_interval: int | None = None, grace_period: int | None = None,
                       max_retry: int = DEFAULT_MAX_RETRY) -> RDBStorage:
        """Optuna's storage on this database (one per setting); with a heartbeat, stale trials are retried
        with the same params and their lineage (system attrs failed_trial, retry_history)."""
        key = (heartbeat_interval, grace_period, max_retry)
        if key not in self._storages:
            self._storages[key] = _new_storage(self.url, heartbeat_interval, grace_period, max_retry)
            _engines.add(self._storages[key].engine)
        return self._storages[key]

    @contextlib.contextmanager
    def named_lock(self, name: str) -> Iterator[None]:
        """A lock across processes and machines: a PostgreSQL advisory lock, or a file lock next to SQLite.

        On PostgreSQL the lock lives as long as its session: if the connection drops (server restart), the
        server releases it, so a holder that outlives an outage must tolerate another holder (a stage-1 cache
        writer that finds the entry written meanwhile keeps it, studies/cache.py).
        """
        if self.is_sqlite:
            with FileLock(self._lock_file(name)):
                yield
            return
        key = _advisory_key(name)
        with self.engine.connect() as connection:
            # AUTOCOMMIT: a lock held for minutes must not hold a transaction open ("idle in transaction").
            connection = connection.execution_options(isolation_level="AUTOCOMMIT")
            connection.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": key})
            try:
                yield
            finally:
                _release_advisory_lock(connection, key)

    def ping(self) -> bool:
        try:
            self.check_reachable()
            return True
        except DatabaseUnavailableError:
            return False

    def check_reachable(self) -> None:
        """Raises DatabaseUnavailableError, naming the database and the cause, unless it answers at once."""
        try:
            with self.engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError as error:
            raise DatabaseUnavailableError(f"the database at {redacted(self.url)} does not answer: "
                                           f"{describe(error)}") from None

    def dispose(self) -> None:
        for storage in self._storages.values():
            storage.engine.dispose()
        self.engine.dispose()

    def _ensure_schema(self) -> None:
        if self.is_sqlite:
            with self.engine.connect() as connection:
                # WAL lets readers (the dashboard, `study status`) run while a worker writes.
                connection.exec_driver_sql("PRAGMA journal_mode=WAL")
        with self.named_lock("tailtune:schema"):
            # Optuna creates its tables and checks their version; ours reference them, so they come second.
            RDBStorage(self.url, engine_kwargs=engine_kwargs(self.url, pool_size=1)).engine.dispose()
            with self.engine.begin() as connection:
                upgrade_schema(connection)

    def _lock_file(self, name: str) -> Path:
        """SQLite's named locks: files in a folder next to the database, `FILE.db.locks/`."""
        folder = Path(f"{Path(self.engine.url.database or '').resolve()}.locks")
        folder.mkdir(exist_ok=True)
        return folder / _digest(name)


def retry_callback(max_retry: int) -> RetryHeartbeatStaleTrialCallback:
    """Optuna's retry of a failed trial: a WAITING clone with the same params and lineage system attrs
    (failed_trial, retry_history); after `max_retry` retries of one lineage, none."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)  # "experimental" in Optuna; 5.0.0 is pinned
        return RetryHeartbeatStaleTrialCallback(max_retry=max_retry)


def _new_storage(url: str, heartbeat_interval: int | None, grace_period: int | None,
                 max_retry: int) -> RDBStorage:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)  # the heartbeat arguments, as above
        callback = retry_callback(max_retry) if heartbeat_interval else None
        # `connect` created and version-checked the schema; skipping both saves queries per storage.
        return RDBStorage(url, engine_kwargs=engine_kwargs(url), skip_compatibility_check=True,
                          skip_table_creation=True, heartbeat_interval=heartbeat_interval,
                          grace_period=grace_period, heartbeat_stale_trial_callback=callback)


def engine_kwargs(url: str, *, pool_size: int = POOL_SIZE) -> dict[str, object]:
    if url.startswith("sqlite"):
        # Writers wait up to 30 s for the file lock instead of failing at once with "database is locked".
        return {"connect_args": {"timeout": 30}}
    return {"pool_size": pool_size, "max_overflow": MAX_OVERFLOW, "pool_pre_ping": True,
            "pool_recycle": POOL_RECYCLE_S, "pool_timeout": 30,
            "connect_args": {"connect_timeout": 5, "application_name": "tailtune", "keepalives": 1,
                             "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}}


# ---------------------------------------------------------------------------------------------- retries
def is_transient(error: BaseException) -> bool:
    """Errors a retry can cure: a lost connection or server shutdown, a deadlock, a serialization failure, a
    lock wait that timed out, an exhausted pool, a busy SQLite file. A program limit or a data error is not:
    retried, it fails again, for ever."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _is_transient_one(current):
            return True
        current = current.__cause__ or current.__context__
    return False


# SQLSTATEs a retry cures (PostgreSQL appendix A): serialization_failure, deadlock_detected, lock_not_available,
# too_many_connections, admin_shutdown, crash_shutdown, cannot_connect_now; class 08 is "connection exception".
TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03", "53300", "57P01", "57P02", "57P03"})


def _is_transient_one(error: BaseException) -> bool:
    if isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, sa.exc.TimeoutError):  # the pool had no free connection in time
        return True
    if isinstance(error, psycopg2.Error):
        if error.pgcode is not None:  # the server answered: its SQLSTATE says what happened
            return error.pgcode in TRANSIENT_SQLSTATES or error.pgcode.startswith("08")
        # No SQLSTATE: the client lost or could not open the connection ("server closed the connection").
        return isinstance(error, psycopg2.OperationalError | psycopg2.InterfaceError)
    if isinstance(error, sqlite3.OperationalError):
        message = str(error)
        return "locked" in message or "busy" in message
    return False


def retry_transient(call: Callable[[], T], *, deadline_s: float = 60.0, what: str = "database call") -> T:
    """Calls `call` until it succeeds, retrying transient errors with jittered backoff for up to `deadline_s`.

    Only idempotent calls, or calls whose repeat is detected (a second tell of a finished trial is skipped),
    may be passed here.
    """
    started, delay = time.monotonic(), 0.05
    while True:
        try:
            return call()
        except Exception as error:
            if not is_transient(error) or time.monotonic() - started + delay > deadline_s:
                raise
            log.warning("%s failed (%s); retrying in %.2f s", what, describe(error), delay)
            # Jitter spreads workers that failed together (a server restart) so they do not retry in step.
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 2.0)


# ---------------------------------------------------------------------------------------------- helpers
def redacted(url: str) -> str:
    return sa.make_url(url).render_as_string(hide_password=True)


def _normalized_url(url: str | None) -> str:
    if not url:
        raise UserInputError("no database given: pass --storage URL or set TAILTUNE_DATABASE_URL")
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")  # the form Heroku-style providers hand out
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise UserInputError(f"not a database URL: {url!r}; use postgresql://USER@HOST/DB or "
                             "sqlite:///FILE.db") from None
    if parsed.get_backend_name() not in ("postgresql", "sqlite"):
        raise UserInputError(f"unsupported database {parsed.get_backend_name()!r}; use PostgreSQL or SQLite")
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise UserInputError("an in-memory SQLite database cannot be shared by workers; use sqlite:///FILE.db")
    return url


def _digest(name: str) -> str:
    return hashlib.blake2b(name.encode(), digest_size=8).hexdigest()


def _advisory_key(name: str) -> int:
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


def _release_advisory_lock(connection: sa.Connection, key: int) -> None:
    try:
        connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
    except sa.exc.SQLAlchemyError as error:
        # The session is gone, and the server released its advisory locks with it.
        log.warning("could not release advisory lock %d (%s); its session had ended", key, describe(error))


def describe(error: BaseException) -> str:
    """The root cause's first line: Optuna wraps driver errors in a generic "exception during the commit"."""
    while error.__cause__ is not None:
        error = error.__cause__
    text = str(getattr(error, "orig", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _dispose_after_fork() -> None:
    # A forked child must not reuse its parent's sockets; close=False leaves the parent's connections alone.
    for engine in list(_engines):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_dispose_after_fork)


def set_trial_user_attrs(trial: optuna.Trial, attributes: dict[str, Any]) -> None:
    """`trial.set_user_attr` for many attributes in one statement: Optuna reads the trial and commits once per
    attribute, which costs a trial with ~20 result attributes more than its stage-2 training does."""
    backend = _rdb_backend(trial)
    dialect_insert = _UPSERTS.get(backend.engine.name) if backend is not None else None
    if dialect_insert is None:
        for key, value in attributes.items():
            trial.set_user_attr(key, value)
        return
    rows = [{"trial_id": trial._trial_id, "key": key, "value_json": json.dumps(value)}
            for key, value in attributes.items()]
    insert = dialect_insert(trial_user_attrs).values(rows)
    with backend.engine.begin() as connection:
        _check_updatable(connection, backend, trial._trial_id)
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
    if backend is None:
        yield
        return
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
        self.params: dict[str, tuple[float, optuna.distributions.BaseDistribution]] = {}

    def set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                        distribution: optuna.distributions.BaseDistribution) -> None:
        self.params[param_name] = (param_value_internal, distribution)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)


def _write_params(backend: RDBStorage, trial_id: int,
                  params: dict[str, tuple[float, optuna.distributions.BaseDistribution]]) -> None:
    with backend.engine.begin() as connection:
        study_id = _check_updatable(connection, backend, trial_id)
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


def _rdb_backend(trial: optuna.Trial) -> RDBStorage | None:
    backend = getattr(trial.storage, "_backend", trial.storage)  # Optuna wraps RDBStorage in a cache
    return backend if isinstance(backend, RDBStorage) else None


def _check_updatable(connection: sa.Connection, backend: RDBStorage, trial_id: int) -> int:
    """As Optuna: a finished trial is read-only. Returns the trial's study id."""
    row = connection.execute(sa.select(trials.c.state, trials.c.study_id)
                             .where(trials.c.trial_id == trial_id)).one()
    backend.check_trial_is_updatable(trial_id, row.state)
    return row.study_id


_UPSERTS = {"postgresql": sa.dialects.postgresql.insert, "sqlite": sa.dialects.sqlite.insert}
