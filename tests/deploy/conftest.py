"""Fixtures for the deployment tests: run a container health check for real against a local HTTP server.

No docker engine or cluster is needed: the files are parsed, and the `python -c` health checks they carry
are run with this machine's Python against a server that answers with a chosen status.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

HealthCheckRunner = Callable[[list[str], int, int], int]


def _status_server(status: list[int]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(status[0])
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


@pytest.fixture
def run_health_check() -> Iterator[HealthCheckRunner]:
    """`run(command, container_port, status)`: exit code of `command` when the server answers `status`."""
    status = [200]
    server = _status_server(status)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def run(command: list[str], container_port: int, answer: int) -> int:
        assert command[:2] == ["python", "-c"], f"health check {command} is not `python -c CODE`"
        target = f"127.0.0.1:{container_port}/"
        assert target in command[2], f"health check does not probe port {container_port}: {command[2]}"
        status[0] = answer
        code = command[2].replace(target, f"127.0.0.1:{server.server_address[1]}/")
        return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30).returncode

    yield run
    server.shutdown()
    server.server_close()
