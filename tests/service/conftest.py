"""The API in-process (`app_client`: a TestClient on a given database) and a real `tailtune serve` process on a
fresh PostgreSQL database, for tests that talk to it over HTTP."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from service.core.config import Settings
from service.main import create_app


def secrets_of(settings: Settings) -> list[str]:
    """What no response may name: the database URL and its parts, and paths into the artifact directory (the
    directory itself may be the test's tmp_path, under which a test also keeps the data it names)."""
    url = sa.make_url(settings.database.url)
    artifacts = settings.artifact.dir.resolve()
    parts = [url.render_as_string(hide_password=False), url.render_as_string(hide_password=True), url.database,
             str(artifacts / "stage1"), str(artifacts / "stage2")]
    if url.host is not None:
        parts += [url.username, url.host, f":{url.port or 5432}", url.password]
    return [part for part in parts if part]


@pytest.fixture(autouse=True)
def responses_name_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every response an in-process API test receives is scanned for the app's secrets (issue 21)."""
    request = TestClient.request

    def scanned(client: TestClient, *args: object, **kwargs: object) -> httpx.Response:
        response = request(client, *args, **kwargs)
        settings = getattr(getattr(client.app, "state", None), "settings", None)
        if isinstance(settings, Settings):
            body = response.text if not response.headers.get("content-type", "").startswith(
                "application/octet-stream") else ""
            leaked = [secret for secret in secrets_of(settings) if secret in body]
            assert not leaked, f"{response.request.method} {response.request.url.path} names {leaked}: {body[:500]}"
        return response

    monkeypatch.setattr(TestClient, "request", scanned)


@pytest.fixture
def app_client(tmp_path: Path) -> Iterator[Callable[[str], TestClient]]:
    """`app_client(url)`: a TestClient of the app on that database (artifacts under tmp_path), closed and its
    database disposed when the test ends. The app is started open (no token), as `tailtune serve --open`:
    tests of authentication build their own."""
    with contextlib.ExitStack() as stack:
        def open_client(url: str) -> TestClient:
            app = create_app(Settings(database={"url": url}, artifact={"dir": tmp_path}, api={"open": True}))
            stack.callback(app.state.database.dispose)
            return stack.enter_context(TestClient(app))
        yield open_client


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Served:
    """A `tailtune serve` process, its combined log file and its address."""

    def __init__(self, process: subprocess.Popen, log: Path, port: int) -> None:
        self.process, self.log, self.base_url = process, log, f"http://127.0.0.1:{port}"

    def wait_healthy(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"tailtune serve did not answer /healthz in {timeout_s} s: {self.log.read_text()}")


def serve_env(database_url: str, token: str | None = None, **env_vars: str) -> dict[str, str]:
    """The environment of a `tailtune serve` process: none of the caller's TAILTUNE_ settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAILTUNE_")}
    env["TAILTUNE_DATABASE_URL"] = database_url
    if token is not None:
        env["TAILTUNE_API_TOKEN"] = token
    return env | env_vars


@pytest.fixture
def serve(postgres_url: str, tmp_path: Path) -> Iterator:
    started: list[Served] = []

    def start(host: str = "127.0.0.1", token: str | None = None, *flags: str, **env_vars: str) -> Served:
        port = _free_port()
        env = serve_env(postgres_url, token, **env_vars)
        log = tmp_path / f"serve-{port}.log"
        with log.open("w") as out:
            process = subprocess.Popen([sys.executable, "-m", "tailtune", "serve", "--host", host, "--port",
                                        str(port), *flags], cwd=tmp_path, env=env, stdout=out,
                                       stderr=subprocess.STDOUT)
        started.append(Served(process, log, port))
        started[-1].wait_healthy()
        return started[-1]

    yield start
    for served in started:
        served.process.terminate()
        served.process.wait(timeout=30)
