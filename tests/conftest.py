"""Shared fixtures: real PostgreSQL databases (one fresh database per test), SQLite files, and a throwaway
PostgreSQL server the suite owns and may stop and start.

    postgres_url        postgresql+psycopg2://postgres@HOST:PORT/tailtune_test_<uuid>, dropped afterwards
    sqlite_url          sqlite:///<tmp_path>/tailtune.db
    storage_url         parametrised over ["postgres", "sqlite"] for contract tests (optuna's StorageSupplier)
    database            studies.db.Database connected to storage_url (schema created), disposed afterwards
    postgres_database   the same on postgres_url only
    throwaway_postgres  a server run by pg_ctl on a temp dir: .url, .stop(), .start() (restarts_postgres)

The server behind `postgres_url` is the machine's 127.0.0.1:5432 when it answers, else one the suite starts.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from studies.db import Database

# Two torch threads per process on a shared two-core machine thrash (small convs ran 50x slower); tests and the
# worker processes they start use one. Set before any test imports torch.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int

    def url(self, database: str) -> str:
        return f"postgresql+psycopg2://postgres@{self.host}:{self.port}/{database}"

    def create_database(self) -> str:
        name = f"tailtune_test_{uuid.uuid4().hex[:16]}"
        self._admin(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _admin(self, statement: str) -> None:
        # CREATE/DROP DATABASE cannot run inside a transaction block, hence AUTOCOMMIT.
        engine = sa.create_engine(self.url("postgres"), isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
        try:
            with engine.connect() as connection:
                connection.exec_driver_sql(statement)
        finally:
            engine.dispose()


class ThrowawayPostgres:
    """A PostgreSQL server in a temp directory, run by pg_ctl, that tests may stop and start at will."""

    def __init__(self, root: Path) -> None:
        self.bin = _postgres_bin_dir()
        self.data_dir = root / "data"
        self.socket_dir = root / "socket"
        self.port = _free_port()
        self.server = PostgresServer("127.0.0.1", self.port)

    @property
    def url(self) -> str:
        return self.server.url("postgres")

    def new_database_url(self) -> str:
        return self.server.url(self.server.create_database())

    def init(self) -> None:
        self.socket_dir.mkdir(parents=True)
        _hand_to_postgres_user(self.data_dir.parent)
        self._as_server_user([str(self.bin / "initdb"), "-D", str(self.data_dir), "-A", "trust",
                              "-U", "postgres", "--no-sync", "-E", "UTF8"])

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100")
        self._as_server_user([str(self.bin / "pg_ctl"), "-D", str(self.data_dir), "-o", options, "-w",
                              "-t", "30", "-l", str(self.data_dir.parent / "server.log"), "start"])

    def stop(self) -> None:
        # "fast" drops every client connection at once, as a crash or a failover would.
        self._as_server_user([str(self.bin / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"])

    def _as_server_user(self, command: list[str]) -> None:
        # initdb and postgres refuse to run as root; run them as the "postgres" system user then.
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run(prefix + command, check=True, capture_output=True, timeout=60)


def _postgres_bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise RuntimeError("no initdb found: install PostgreSQL server binaries (apt-get install postgresql)")
    return Path(initdb).parent


def _hand_to_postgres_user(directory: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(directory, user="postgres", group="postgres")
        for path in directory.rglob("*"):
            shutil.chown(path, user="postgres", group="postgres")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _started_server(root: Path) -> ThrowawayPostgres:
    server = ThrowawayPostgres(root)
    server.init()
    server.start()
    return server


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    if _reachable("127.0.0.1", 5432):
        yield PostgresServer("127.0.0.1", 5432)
        return
    server = _started_server(Path(tempfile.mkdtemp(prefix="tailtune-pg-")))
    try:
        yield server.server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    name = postgres_server.create_database()
    try:
        yield postgres_server.url(name)
    finally:
        postgres_server.drop_database(name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tailtune.db'}"


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
    # Not under pytest's tmp_path: the postgres system user must be able to reach the data directory.
    root = Path(tempfile.mkdtemp(prefix="tailtune-throwaway-pg-"))
    server = _started_server(root)
    try:
        yield server
    finally:
        if _reachable("127.0.0.1", server.port):
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def throwaway_postgres(_throwaway_server: ThrowawayPostgres) -> Iterator[ThrowawayPostgres]:
    """The suite's own server, running when the test starts; a test that stops it should start it again."""
    if not _reachable("127.0.0.1", _throwaway_server.port):
        _throwaway_server.start()
    yield _throwaway_server
    if not _reachable("127.0.0.1", _throwaway_server.port):
        _throwaway_server.start()
