"""`tailtune serve` as a real process: the database from TAILTUNE_DATABASE_URL, the token, the mode it states."""

from __future__ import annotations

import subprocess
import sys

import httpx
import optuna
import pytest

from tests.service.conftest import serve_env

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_without_any_token_on_all_interfaces_it_is_closed_and_says_so(serve) -> None:
    served = serve("0.0.0.0", token=None)
    assert httpx.get(f"{served.base_url}/studies").status_code == 401
    assert httpx.post(f"{served.base_url}/studies", json={"name": "anon", "n_trials": 2}).status_code == 401
    log = served.log.read_text()
    assert "API mode: token required" in log and "no token exists yet" in log


def test_token_server_on_localhost_needs_the_token(serve) -> None:
    served = serve("127.0.0.1", token="s3cret")
    assert httpx.get(f"{served.base_url}/studies").status_code == 401
    authorised = httpx.get(f"{served.base_url}/studies", headers={"Authorization": "Bearer s3cret"})
    assert authorised.status_code == 200 and authorised.json()["total"] == 0
    assert "API mode: token required on 127.0.0.1: the admin token" in served.log.read_text()


def test_open_on_loopback_serves_without_a_token_and_says_so(serve, postgres_url: str) -> None:
    served = serve("127.0.0.1", None, "--open")
    created = httpx.post(f"{served.base_url}/studies", json={"name": "over-http", "n_trials": 2,
                                                                    "confirm": None})
    assert created.status_code == 201, created.text
    assert optuna.get_all_study_names(storage=postgres_url) == ["over-http"]
    assert "API mode: OPEN on 127.0.0.1" in served.log.read_text()


def test_open_beyond_loopback_is_refused_unless_asked_twice(serve, postgres_url: str) -> None:
    refused = subprocess.run([sys.executable, "-m", "tailtune", "serve", "--host", "0.0.0.0", "--port", "0",
                              "--open"], env=serve_env(postgres_url), capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "--open-beyond-loopback" in refused.stderr, refused.stderr
    served = serve("0.0.0.0", None, "--open", "--open-beyond-loopback")
    assert httpx.get(f"{served.base_url}/studies").status_code == 200
    assert "API mode: OPEN on 0.0.0.0" in served.log.read_text()
