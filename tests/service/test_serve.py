"""`tailtune serve` as a real process: the database from TAILTUNE_DATABASE_URL, the token, the bind warning."""

from __future__ import annotations

import httpx
import optuna
import pytest

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

WARNING = "without TAILTUNE_API_TOKEN"


def test_open_server_on_all_interfaces_warns_and_serves_the_env_database(serve, postgres_url: str) -> None:
    served = serve("0.0.0.0", token=None)
    created = httpx.post(f"{served.base_url}/studies", json={"name": "over-http", "n_trials": 2})
    assert created.status_code == 201, created.text
    assert optuna.get_all_study_names(storage=postgres_url) == ["over-http"]
    assert WARNING in served.log.read_text()


def test_token_server_on_localhost_needs_the_token_and_does_not_warn(serve) -> None:
    served = serve("127.0.0.1", token="s3cret")
    assert httpx.get(f"{served.base_url}/studies").status_code == 401
    authorised = httpx.get(f"{served.base_url}/studies", headers={"Authorization": "Bearer s3cret"})
    assert authorised.status_code == 200 and authorised.json()["total"] == 0
    assert WARNING not in served.log.read_text()
