"""Responses name no secret and no server path (issue 21 item 6): links come from a configured public base URL
or are relative, never from the request's Host; the dashboard link is a configured address or absent.
(Every response of the in-process API tests is also scanned for the database URL and the artifact directory:
tests/service/conftest.py, `responses_name_no_secret`.)"""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from service.core.config import Settings
from service.main import create_app

BODY = {"name": "linked", "n_trials": 1}


def _created(url: str, tmp_path: Path, **api: object) -> dict:
    app = create_app(Settings(database={"url": url}, artifact={"dir": tmp_path}, api={"open": True, **api}))
    with TestClient(app, base_url="http://evil.example:9999") as client:
        response = client.post("/studies", json=BODY, headers={"Host": "attacker.example"})
    app.state.database.dispose()
    assert response.status_code == 201, response.text
    return response.json()


def test_without_a_public_url_links_are_relative_and_there_is_no_dashboard_link(sqlite_url: str,
                                                                               tmp_path: Path) -> None:
    created = _created(sqlite_url, tmp_path)
    assert created["urls"]["self"] == f"/studies/{created['id']}"
    assert created["urls"]["trials"] == f"/studies/{created['id']}/trials"
    assert created["urls"]["dashboard"] is None
    assert "example" not in str(created) and "sqlite" not in str(created)


def test_links_use_the_configured_public_url_and_dashboard(sqlite_url: str, tmp_path: Path) -> None:
    created = _created(sqlite_url, tmp_path, public_url="https://tailtune.example.org/api/",
                       dashboard_url="https://dashboard.example.org")
    assert created["urls"]["self"] == f"https://tailtune.example.org/api/studies/{created['id']}"
    assert created["urls"]["report"] == f"https://tailtune.example.org/api/studies/{created['id']}/report"
    assert created["urls"]["dashboard"] == "https://dashboard.example.org"
    assert "attacker" not in str(created) and "evil" not in str(created)
