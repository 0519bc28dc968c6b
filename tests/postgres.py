"""The one copy of the test-database logic, used by tests/conftest.py and benchmarks/_common.py.

- `PostgresServer.database()`: a fresh database, dropped afterwards, through pytest-postgresql's `DatabaseJanitor`
  (it creates the database, and on leaving refuses new connections, ends the open ones and drops it);
  `create_database(template=NAME)` clones a database instead (CREATE DATABASE ... TEMPLATE).
- `skip_commit_flushes(name)`: commits that do not wait for the disk, for the tests' copies (not the benchmarks').
- `LaterDrops`: drops databases on a thread of its own. A DROP DATABASE waits for a checkpoint (1-4 s measured on
  the shared machine), which the next test need not wait for.
- `local_or_throwaway()`: the machine's 127.0.0.1:5432 when it answers, else a `ThrowawayPostgres` for the block.
- `ThrowawayPostgres`: a server in a temp directory that tests may stop and start. Our own pg_ctl code, not
  pytest-postgresql's `PostgreSQLExecutor`: that runs initdb/pg_ctl as the current user, and both refuse to run
  as root, which is how this suite runs in CI and on the shared machine (we run them as the "postgres" user).
"""

from __future__ import annotations

import contextlib
import glob
import os
import queue
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg2
from pytest_postgresql.janitor import DatabaseJanitor

USER = "postgres"  # trust auth, no password


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int

    def url(self, database: str) -> str:
        return f"postgresql+psycopg2://{USER}@{self.host}:{self.port}/{database}"

    @contextlib.contextmanager
    def database(self, prefix: str = "tailtune_test") -> Iterator[str]:
        """A fresh database, dropped on leaving (its connections ended first); yields its URL."""
        name = self.create_database(prefix)
        try:
            yield self.url(name)
        finally:
            self.drop_database(name)

    def create_database(self, prefix: str = "tailtune_test", template: str | None = None) -> str:
        """A new database, empty or a copy of `template` (which must have no open connection); returns its name."""
        name = f"{prefix}_{uuid.uuid4().hex[:16]}"
        self._janitor(name, template).init()
        return name

    def skip_commit_flushes(self, name: str) -> None:
        """The database's commits no longer wait for their WAL to reach the disk (synchronous_commit off, as the
        throwaway server runs): 0.7-2 ms a commit on the shared machine, for data no test needs after a crash."""
        connection = psycopg2.connect(host=self.host, port=self.port, user=USER, dbname="postgres")
        try:
            connection.autocommit = True
            connection.cursor().execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
        finally:
            connection.close()

    def drop_database(self, name: str) -> None:
        """Ends the database's connections and drops it; nothing when it is gone already."""
        self._janitor(name).drop()

    def _janitor(self, name: str, template: str | None = None) -> DatabaseJanitor:
        return DatabaseJanitor(user=USER, host=self.host, port=self.port, dbname=name, template_dbname=template)


class LaterDrops:
    """Drops the databases handed to it on a thread of its own, in order; `close()` waits for the last one and
    raises if any drop failed (a database left behind)."""

    def __init__(self, server: PostgresServer) -> None:
        self.server = server
        self._failures: list[str] = []
        self._names: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._drop_each, name="drop-databases", daemon=True)
        self._thread.start()

    def drop(self, name: str) -> None:
        self._names.put(name)

    def close(self) -> None:
        self._names.put(None)
        self._thread.join()
        if self._failures:
            raise RuntimeError(f"databases left behind: {'; '.join(self._failures)}")

    def _drop_each(self) -> None:
        while (name := self._names.get()) is not None:
            try:
                self.server.drop_database(name)
            except Exception as error:  # reported by close(), after the other drops ran
                self._failures.append(f"{name}: {error}")


class ReadyCopies:
    """Copies of a template database made ahead on a thread of its own, `ahead` at a time: a test takes one at
    once, where CREATE DATABASE made it wait 0.3-0.4 s (the server copies the next while the test runs).
    `close()` drops the copies no test took."""

    def __init__(self, server: PostgresServer, template: str, ahead: int = 2) -> None:
        self.server, self.template = server, template
        self._ready: queue.Queue[str | Exception] = queue.Queue(maxsize=ahead)
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._copy_each, name="copy-databases", daemon=True)
        self._thread.start()

    def take(self) -> str:
        copy = self._ready.get()
        if isinstance(copy, Exception):
            raise copy
        return copy

    def close(self) -> None:
        self._closing.set()
        while self._thread.is_alive():  # a copy waiting for room gets it, then the thread sees the flag
            self._drop_ready()
            self._thread.join(0.1)
        self._drop_ready()

    def _drop_ready(self) -> None:
        while not self._ready.empty():
            copy = self._ready.get()
            if isinstance(copy, str):
                self.server.drop_database(copy)

    def _copy_each(self) -> None:
        while not self._closing.is_set():
            try:
                copy: str | Exception = self.server.create_database(template=self.template)
                self.server.skip_commit_flushes(copy)
            except Exception as error:  # raised by the take() that would have had this copy
                copy = error
            self._ready.put(copy)


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
        """A fresh database on this server, left for the server's removal to drop."""
        return self.server.url(self.server.create_database())

    def init(self) -> None:
        self.socket_dir.mkdir(parents=True)
        _hand_to_postgres_user(self.data_dir.parent)
        self._as_server_user([str(self.bin / "initdb"), "-D", str(self.data_dir), "-A", "trust",
                              "-U", USER, "--no-sync", "-E", "UTF8"])

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100")
        self._as_server_user([str(self.bin / "pg_ctl"), "-D", str(self.data_dir), "-o", options, "-w",
                              "-t", "30", "-l", str(self.data_dir.parent / "server.log"), "start"])

    def stop(self) -> None:
        # "fast" drops every client connection at once, as a crash or a failover would.
        self._as_server_user([str(self.bin / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"])

    def running(self) -> bool:
        return reachable("127.0.0.1", self.port)

    def _as_server_user(self, command: list[str]) -> None:
        # initdb and postgres refuse to run as root; run them as the "postgres" system user then.
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run(prefix + command, check=True, capture_output=True, timeout=60)


@contextlib.contextmanager
def throwaway_server() -> Iterator[ThrowawayPostgres]:
    """A started ThrowawayPostgres, stopped and removed on leaving."""
    # Not under pytest's tmp_path: the postgres system user must be able to reach the data directory.
    root = Path(tempfile.mkdtemp(prefix="tailtune-throwaway-pg-"))
    server = ThrowawayPostgres(root)
    try:
        server.init()
        server.start()
        yield server
    finally:
        if server.running():
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def local_or_throwaway() -> Iterator[PostgresServer]:
    """The machine's 127.0.0.1:5432 when it answers, else a throwaway server for the block."""
    if reachable("127.0.0.1", 5432):
        yield PostgresServer("127.0.0.1", 5432)
        return
    with throwaway_server() as server:
        yield server.server


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


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
