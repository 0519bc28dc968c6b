"""Authentication is explicit (issue 21 item 2): the API needs a token unless it was started open on purpose;
revoking or expiring tokens never opens it; named tokens may expire and record their last use."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from service.core.config import Settings
from service.main import create_app
from studies.store import tokens
from tailtune.commands import token as token_command


@pytest.fixture
def closed_app(sqlite_url: str, tmp_path: Path) -> Iterator[TestClient]:
    """No admin token, not started open: the set-up that opened the API when the last named token went."""
    app = create_app(Settings(database={"url": sqlite_url}, artifact={"dir": tmp_path}))
    with TestClient(app) as client:
        yield client
    app.state.database.dispose()


def test_without_any_token_the_api_is_closed_not_open(closed_app: TestClient) -> None:
    assert closed_app.get("/studies").status_code == 401
    assert closed_app.post("/studies", json={"name": "anon", "n_trials": 1}).status_code == 401
    assert closed_app.get("/healthz").status_code == 200


def test_revoking_the_last_named_token_never_opens_the_api(closed_app: TestClient) -> None:
    db = closed_app.app.state.database
    _, secret = tokens.create_token(db, name="only", scope="write")
    bearer = {"Authorization": f"Bearer {secret}"}
    study_id = closed_app.post("/studies", json={"name": "kept", "n_trials": 1}, headers=bearer).json()["id"]
    tokens.revoke_token(db, name="only")
    assert closed_app.get("/studies").status_code == 401
    assert closed_app.delete(f"/studies/{study_id}").status_code == 401
    assert closed_app.get("/studies", headers=bearer).status_code == 401  # the revoked token stays revoked


def test_an_api_started_open_takes_requests_without_a_token(sqlite_url: str, tmp_path: Path) -> None:
    app = create_app(Settings(database={"url": sqlite_url}, artifact={"dir": tmp_path}, api={"open": True}))
    with TestClient(app) as client:
        assert client.get("/studies").status_code == 200
    app.state.database.dispose()


def test_an_expired_token_is_refused_and_list_shows_expiry_and_last_use(closed_app: TestClient,
                                                                        sqlite_url: str) -> None:
    db = closed_app.app.state.database
    _, expired = tokens.create_token(db, name="old", scope="read", expires_at=datetime.now(UTC) - timedelta(seconds=1))
    _, live = tokens.create_token(db, name="live", scope="read", expires_at=datetime.now(UTC) + timedelta(days=1))
    assert closed_app.get("/studies", headers={"Authorization": f"Bearer {expired}"}).status_code == 401
    assert closed_app.get("/studies", headers={"Authorization": f"Bearer {live}"}).status_code == 200
    listed = {record.name: record for record in tokens.list_tokens(db)}
    assert listed["live"].last_used_at is not None and listed["old"].last_used_at is None
    assert listed["old"].expires_at < datetime.now(UTC) < listed["live"].expires_at
    table = CliRunner().invoke(token_command.app, ["list", "--storage", sqlite_url]).output
    assert "last used" in table and "expires" in table and "expired" in table


def test_token_create_takes_an_expiry_in_days(sqlite_url: str) -> None:
    created = CliRunner().invoke(token_command.app, ["create", "ci", "--expires-in-days", "30", "--storage",
                                                     sqlite_url])
    assert created.exit_code == 0, created.output
    listed = CliRunner().invoke(token_command.app, ["list", "--json", "--storage", sqlite_url]).output
    assert '"expires_at": "' in listed
    refused = CliRunner().invoke(token_command.app, ["create", "x", "--expires-in-days", "0", "--storage",
                                                     sqlite_url])
    assert refused.exit_code == 2
