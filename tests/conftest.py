"""Shared fixtures: real PostgreSQL databases (one fresh database per test), SQLite files, and a throwaway
PostgreSQL server the suite owns and may stop and start. The server and database logic is tests/postgres.py,
shared with benchmarks/_common.py.

    postgres_url        postgresql+psycopg2://postgres@HOST:PORT/tailtune_test_<uuid>, dropped afterwards; a copy
                        of a template holding the schema (tailtune's and Optuna's tables, no study), made once
                        per test process: 0.2 s instead of 1-2 s of table creation; copied ahead and dropped
                        afterwards on threads of their own, so a test waits for neither
    empty_postgres_url  the same without the template: no table at all
    sqlite_url          sqlite:///<tmp_path>/tailtune.db, a copy of a file holding the schema, made once per test
                        process: 0.05 s instead of 0.15 s, most of it Optuna loading its migration scripts
    storage_url         parametrised over ["postgres", "sqlite"] for contract tests (optuna's StorageSupplier)
    database            studies.store.db.Database connected to storage_url (schema created), disposed afterwards
    postgres_database   the same on postgres_url only
    throwaway_postgres  a server run by pg_ctl on a temp dir: .url, .stop(), .start() (restarts_postgres)

The server behind `postgres_url` is the machine's 127.0.0.1:5432 when it answers, else one the suite starts.
Under pytest-xdist every worker process has its own template and databases (uuid names); the tests marked
`multiprocess` or using `throwaway_postgres` run one after another in one worker (xdist_group "processes",
`--dist loadgroup`), so they share one such server and never start their worker processes at the same time.
From pytest-postgresql we use `DatabaseJanitor` (each test's database created, then dropped with its
connections ended). Not its `postgresql_proc` / `postgresql_noproc` fixtures: a noproc fixture is bound to one
host:port fixed at configuration time, not "5432 if it answers, else start one", and its proc executor runs
initdb/pg_ctl as the current user, which both refuse when that is root (this suite runs as root here and in
CI; tests/postgres.py runs them as the "postgres" user). Nor its `postgresql` fixture: that one connects with
psycopg 3, while the tests need a URL for SQLAlchemy/psycopg2 and for the worker processes they start.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from studies.store.db import Database
from tests.postgres import (
    LaterDrops,
    PostgresServer,
    ReadyCopies,
    ThrowawayPostgres,
    local_or_throwaway,
    throwaway_server,
)

# Two torch threads per process on a shared two-core machine thrash (small convs ran 50x slower); tests and the
# worker processes they start use one. Set before any test imports torch.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_configure(config: pytest.Config) -> None:
    # A test process imports torch, optuna, hypothesis and the rest: a million objects that live as long as it
    # does, which every full pass of the garbage collector walked (7-10 s of each xdist worker's run, measured
    # with gc.callbacks). Full passes now run a tenth as often, and what collection imported is frozen (below).
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, 100)


def pytest_collection_finish(session: pytest.Session) -> None:
    gc.collect()
    gc.freeze()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Under `--dist loadgroup`, one xdist worker runs these one after another: tests that start worker processes
    # (heartbeats every second, a grace of three, checked against the clock) never run two at a time on the
    # shared cores, and the tests of the throwaway server pay one initdb, not one per worker.
    for item in items:
        if item.get_closest_marker("multiprocess") or "throwaway_postgres" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("processes"))


@pytest.fixture
def optuna_verbosity() -> Iterator[None]:
    """For tests that run a command or script in this process that quiets Optuna's log for its whole process:
    the tests after it get Optuna's verbosity back."""
    verbosity = optuna.logging.get_verbosity()
    yield
    optuna.logging.set_verbosity(verbosity)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with local_or_throwaway() as server:
        yield server


@pytest.fixture(scope="session")
def _later_drops(postgres_server: PostgresServer) -> Iterator[LaterDrops]:
    drops = LaterDrops(postgres_server)
    yield drops
    drops.close()


@pytest.fixture(scope="session")
def _schema_template(postgres_server: PostgresServer) -> Iterator[str]:
    name = postgres_server.create_database("tailtune_template")
    try:
        Database.connect(postgres_server.url(name)).dispose()  # disposed: a template must have no open connection
        yield name
    finally:
        postgres_server.drop_database(name)


@pytest.fixture(scope="session")
def _template_copies(postgres_server: PostgresServer, _schema_template: str) -> Iterator[ReadyCopies]:
    copies = ReadyCopies(postgres_server, _schema_template)
    yield copies
    copies.close()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer, _template_copies: ReadyCopies,
                 _later_drops: LaterDrops) -> Iterator[str]:
    name = _template_copies.take()
    yield postgres_server.url(name)
    _later_drops.drop(name)


@pytest.fixture
def empty_postgres_url(postgres_server: PostgresServer, _later_drops: LaterDrops) -> Iterator[str]:
    name = postgres_server.create_database()
    yield postgres_server.url(name)
    _later_drops.drop(name)


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "tailtune.db"
    Database.connect(f"sqlite:///{path}").dispose()  # disposed: the last connection's close folds the WAL in
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path, _sqlite_template: Path) -> str:
    path = tmp_path / "tailtune.db"
    shutil.copyfile(_sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres), "sqlite"])
def storage_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("postgres_url" if request.param == "postgres" else "sqlite_url")


@contextlib.contextmanager
def _connected(url: str) -> Iterator[Database]:
    db = Database.connect(url)
    try:
        yield db
    finally:
        db.dispose()


@pytest.fixture
def database(storage_url: str) -> Iterator[Database]:
    with _connected(storage_url) as db:
        yield db


@pytest.fixture
def postgres_database(postgres_url: str) -> Iterator[Database]:
    with _connected(postgres_url) as db:
        yield db


@pytest.fixture(scope="session")
def _throwaway_server() -> Iterator[ThrowawayPostgres]:
    with throwaway_server() as server:
        yield server


@pytest.fixture
def throwaway_postgres(_throwaway_server: ThrowawayPostgres) -> Iterator[ThrowawayPostgres]:
    """The suite's own server, running when the test starts; a test that stops it should start it again."""
    if not _throwaway_server.running():
        _throwaway_server.start()
    yield _throwaway_server
    if not _throwaway_server.running():
        _throwaway_server.start()
