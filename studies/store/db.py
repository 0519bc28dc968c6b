"""The database every worker, the API and the CLI share: one pool per process, Optuna's storage on it, locks.

PostgreSQL is the service's backend; a SQLite file is the embedded default for one machine. Both hold
Optuna's own tables (so `optuna.load_study(storage=URL)` and optuna-dashboard see every study) and tailtune's
tables (studies/migrations), created on first connect.

Connections are few and checked before use: a bounded pool (`pool_pre_ping`, `pool_recycle`; one connection
for a worker, whose Optuna storage shares it) plus one side connection (heartbeats, named locks), disposed in a
forked child, and every call that meets a transient error (dropped connection, deadlock, serialization
failure, "database is locked") is retried with jittered backoff by `retry_transient`, so a PostgreSQL
restart costs a few slow calls, not a worker.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import random
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import psycopg2
import sqlalchemy as sa
from filelock import FileLock, Timeout

from studies.store.migrations import is_current as tailtune_schema_is_current
from studies.store.migrations import upgrade_schema
from studies.store.storage import Storage, TransactionAbortedError, create_or_check_schema, optuna_schema_is_current
from trainers.errors import UserInputError

log = logging.getLogger(__name__)

T = TypeVar("T")

# One connection for a worker's loop (claims, Optuna's calls, its trials' writes: one at a time, never nested), and
# `Database.side_engine` one more for its heartbeat thread and named locks: 2 per worker at most, so a hundred
# workers do not exhaust PostgreSQL's max_connections (optuna #1347). The API passes its own pool size.
POOL_SIZE = 1
# Recycle before common server/proxy idle timeouts, so a long trial does not return to a dead connection.
POOL_RECYCLE_S = 900
LOCK_POLL_S = 0.5
# A database that is starting (a compose stack, a restarted server) gets this long to answer before connect fails.
CONNECT_WAIT_S = 10.0

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
        self._storages: dict[tuple[int | None, int | None, int | None], Storage] = {}
        # Building a Storage adds event listeners to the shared pool; a thread connecting meanwhile fails with
        # "deque mutated during iteration" (the API's first concurrent requests did).
        self._storages_lock = threading.Lock()
        self._side_engine: sa.Engine | None = None
        self._thread_locks: dict[str, threading.Lock] = {}
        _engines.add(engine)

    @classmethod
    def connect(cls, url: str | None, *, pool_size: int = POOL_SIZE) -> Database:
        """Opens the database at `url` and creates or upgrades its tables; waits up to `CONNECT_WAIT_S` for it.
        `pool_size`: PostgreSQL connections kept open (1 serves a worker's loop; the API needs one per
        concurrent request)."""
        url = _normalized_url(url)
        db = cls(url, sa.create_engine(url, **engine_kwargs(url, pool_size=pool_size)))
        try:
            retry_transient(db._ensure_schema, deadline_s=CONNECT_WAIT_S, what="connect")
        except sa.exc.SQLAlchemyError as error:
            db.dispose()
            raise DatabaseUnavailableError(
                f"cannot use the database at {redacted(url)}: {describe(error)}; check --storage "
                "(or TAILTUNE_DATABASE_URL) and that the server is running") from None
        return db

    @property
    def side_engine(self) -> sa.Engine:
        """One more connection, beside the pool, for a heartbeat thread (which must not wait behind the loop)
        and for named locks, whose PostgreSQL sessions it keeps (never recycled: see `named_lock`)."""
        if self._side_engine is None:
            self._side_engine = sa.create_engine(self.url, **engine_kwargs(self.url, pool_size=1, recycle=False))
            _engines.add(self._side_engine)
        return self._side_engine

    def optuna_storage(self, *, heartbeat_interval: int | None = None, grace_period: int | None = None,
                       max_retry: int | None = None) -> Storage:
        """Optuna's storage on this database's pool (one per setting); with a heartbeat, stale trials are retried
        with the same params and their lineage (system attrs failed_trial, retry_history)."""
        key = (heartbeat_interval, grace_period, max_retry)  # max_retry None: as Optuna, no limit
        with self._storages_lock:
            if key not in self._storages:
                self._storages[key] = Storage(self.engine, heartbeat_interval=heartbeat_interval,
                                              grace_period=grace_period, max_retry=max_retry)
            return self._storages[key]

    @contextlib.contextmanager
    def named_lock(self, name: str, while_waiting: Callable[[], bool] | None = None) -> Iterator[None]:
        """A lock across processes and machines: a PostgreSQL advisory lock, or a file lock next to SQLite.

        On PostgreSQL the lock belongs to the side engine's one session, which keeps it between checkouts, so
        holding it for a whole stage-1 training costs no connection of its own and the heartbeat thread goes on
        using that session. It is polled (`pg_try_advisory_lock`) so a waiter never holds the session. It lives
        as long as that session: if the connection drops (server restart), the server releases it, so a holder
        that outlives an outage must tolerate another holder (a stage-1 cache writer that finds the entry
        written meanwhile keeps it, studies/artifacts/cache.py).

        `while_waiting`, when given, is called between polls while another holder has the lock, in place of
        the pause (it returns whether it did anything: then the lock is polled again at once). The waiter then
        holds nothing of the lock meanwhile, so what it calls may take this lock too.
        """
        blocking = while_waiting is None
        if self.is_sqlite:
            file_lock = FileLock(self._lock_file(name))
            self._wait_for(lambda: _acquired(file_lock, blocking=blocking), while_waiting)
            try:
                yield
            finally:
                file_lock.release()
            return
        key = _advisory_key(name)
        # A session's advisory locks are re-entrant, and this process's threads share the session: a thread lock
        # keeps them apart, the advisory lock keeps other processes out.
        thread_lock = self._thread_locks.setdefault(name, threading.Lock())

        def acquired() -> bool:
            if not thread_lock.acquire(blocking=blocking):
                return False
            held = False
            try:
                held = self._side_sql("SELECT pg_try_advisory_lock(:key)", key)
            finally:
                if not held:  # taken elsewhere, or the server did not answer: a retry must find the thread lock free
                    thread_lock.release()
            return held

        self._wait_for(acquired, while_waiting)
        try:
            yield
        finally:
            self._release_advisory_lock(name, key)
            thread_lock.release()

    @staticmethod
    def _wait_for(acquired: Callable[[], bool], while_waiting: Callable[[], bool] | None) -> None:
        while not acquired():
            if while_waiting is None or not while_waiting():
                time.sleep(LOCK_POLL_S)

    def _release_advisory_lock(self, name: str, key: int) -> None:
        try:
            if not self._side_sql("SELECT pg_advisory_unlock(:key)", key):
                log.warning("advisory lock %r had lapsed (its session ended)", name)
        except sa.exc.SQLAlchemyError as error:
            # The session is gone, and the server released its advisory locks with it.
            log.warning("could not release advisory lock %r (%s); its session had ended", name, describe(error))

    def _side_sql(self, statement: str, key: int) -> bool:
        # AUTOCOMMIT: a session lock needs no transaction, and a held one must not leave one "idle in transaction".
        with self.side_engine.connect() as connection:
            connection = connection.execution_options(isolation_level="AUTOCOMMIT")
            return bool(connection.execute(sa.text(statement), {"key": key}).scalar())

    def ping(self) -> bool:
        """Whether the database answers, asked over the side connection: requests that fill the pool (a burst of
        report builds) must not make a health check wait or a healthy database look down."""
        try:
            self.check_reachable(self.side_engine)
            return True
        except DatabaseUnavailableError:
            return False

    def check_reachable(self, engine: sa.Engine | None = None) -> None:
        """Raises DatabaseUnavailableError, naming the database and the cause, unless it answers at once."""
        try:
            with (engine or self.engine).connect() as connection:
                connection.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError as error:
            raise DatabaseUnavailableError(f"the database at {redacted(self.url)} does not answer: "
                                           f"{describe(error)}") from None

    def dispose(self) -> None:
        self.engine.dispose()
        if self._side_engine is not None:
            self._side_engine.dispose()

    def _ensure_schema(self) -> None:
        with self.engine.connect() as connection:
            if self.is_sqlite:
                # WAL lets readers (the dashboard, `study status`) run while a worker writes.
                connection.exec_driver_sql("PRAGMA journal_mode=WAL")
            # Every connect but a database's first finds both schemas at their heads: two reads, where the lock,
            # Optuna's table creation and the migration scripts cost 30-70 ms.
            if optuna_schema_is_current(connection) and tailtune_schema_is_current(connection):
                return
        with self.named_lock("tailtune:schema"):
            # Optuna creates its tables and checks their version; ours reference them, so they come second.
            create_or_check_schema(self.url)
            with self.engine.begin() as connection:
                upgrade_schema(connection)

    def _lock_file(self, name: str) -> Path:
        """SQLite's named locks: files in a folder next to the database, `FILE.db.locks/`."""
        folder = Path(f"{Path(self.engine.url.database or '').resolve()}.locks")
        folder.mkdir(exist_ok=True)
        return folder / _digest(name)


def engine_kwargs(url: str, *, pool_size: int = POOL_SIZE, recycle: bool = True) -> dict[str, object]:
    if url.startswith("sqlite"):
        # Writers wait up to 30 s for the file lock instead of failing at once with "database is locked".
        return {"connect_args": {"timeout": 30}}
    # No overflow: the pool size is the most this process opens.
    return {"pool_size": pool_size, "max_overflow": 0, "pool_pre_ping": True,
            "pool_recycle": POOL_RECYCLE_S if recycle else -1, "pool_timeout": 30,
            "connect_args": {"connect_timeout": 5, "application_name": "tailtune", "keepalives": 1,
                             "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}}


# ---------------------------------------------------------------------------------------------- retries
def is_transient(error: BaseException) -> bool:
    """Errors a retry can cure: a lost connection or server shutdown, a deadlock, a serialization failure, a
    lock wait that timed out, an exhausted pool, a busy SQLite file, a transaction Optuna rolled back. A program
    limit or a data error is not: retried, it fails again, for ever."""
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
    if isinstance(error, TransactionAbortedError):
        # Optuna rolled back the whole transaction, nothing of it written: after an error that chain holds, or
        # after an integrity error Optuna itself takes for a race among processes, which a retry cures.
        return True
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

    Only idempotent calls, or calls that detect their own earlier success, may be passed here: a lost commit
    reply is not a failed commit (a second tell of a finished trial is skipped, a retried claim finds its token,
    a failure recorded again finds its trial marked counted).
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


def utc(moment: datetime | str) -> datetime:
    """`moment` as an aware UTC datetime."""
    # SQLite hands back naive UTC (or text, for CURRENT_TIMESTAMP); PostgreSQL hands back aware datetimes.
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


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


def _acquired(file_lock: FileLock, *, blocking: bool) -> bool:
    try:
        file_lock.acquire(blocking=blocking)
    except Timeout:
        return False
    return True


def _advisory_key(name: str) -> int:
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


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
