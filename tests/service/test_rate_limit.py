"""A per-token limit on study creation and trial queueing (issue 21, optional): 429 with Retry-After beyond it,
counted per token, configurable with TAILTUNE_API_WRITES_PER_MINUTE."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from service.core.config import Settings
from service.main import create_app
from studies.store import tokens


def test_writes_beyond_the_limit_are_429_per_token(sqlite_url: str, tmp_path: Path) -> None:
    app = create_app(Settings(database={"url": sqlite_url}, artifact={"dir": tmp_path},
                              api={"token": "admin", "writes_per_minute": 3}))
    _, other = tokens.create_token(app.state.database, name="other", scope="write")
    admin, second = {"Authorization": "Bearer admin"}, {"Authorization": f"Bearer {other}"}
    with TestClient(app) as client:
        study_id = client.post("/studies", json={"name": "s0", "n_trials": 9}, headers=admin).json()["id"]
        assert client.post(f"/studies/{study_id}/trials", json={"params": {"stage2.loss": "ce"}},
                           headers=admin).status_code == 201
        assert client.post("/studies", json={"name": "s1", "n_trials": 2}, headers=admin).status_code == 201
        refused = client.post("/studies", json={"name": "s2", "n_trials": 2}, headers=admin)
        assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 60
        assert "TAILTUNE_API_WRITES_PER_MINUTE" in refused.json()["detail"]
        assert client.post(f"/studies/{study_id}/trials", json={"params": {"stage2.loss": "cb"}},
                           headers=admin).status_code == 429
        assert client.get("/studies", headers=admin).status_code == 200  # reads are not limited
        assert client.post("/studies", json={"name": "s3", "n_trials": 2}, headers=second).status_code == 201
    schema = app.openapi()["paths"]
    assert "429" in schema["/studies"]["post"]["responses"]
    assert "429" in schema["/studies/{study_id}/trials"]["post"]["responses"]
    app.state.database.dispose()
