"""A study's lifecycle over REST: queue a configuration, change the budget, stop and resume, export the trials."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from service.core.config import Settings
from service.main import create_app
from studies.run.worker import WorkerSettings, one_at_a_time, run_worker
from studies.store import lifecycle, tokens
from tests.trial_runners import instant_runner

QUEUED = {"stage2.weight_decay": 0.01, "stage2.maxnorm_thresh": 0.5, "stage2.loss": "cb"}


@pytest.fixture
def client(storage_url: str, app_client: Callable[[str], TestClient]) -> TestClient:
    return app_client(storage_url)


def _run_worker(client: TestClient, name: str, tmp_path: Path) -> None:
    settings = WorkerSettings(heartbeat_interval=1, grace_period=3, device="cpu", handle_signals=False,
                              batch_trials=1)
    run_worker(client.app.state.database, study_names=[name], settings=settings, artifact_dir=tmp_path,
               runner=one_at_a_time(instant_runner))


def _trial_rows(client: TestClient) -> int:
    with client.app.state.database.engine.connect() as connection:
        return connection.execute(sa.text("SELECT count(*) FROM trials")).scalar_one()


def test_queued_params_run_first_once_and_the_budget_follows_patch(client: TestClient, tmp_path: Path) -> None:
    study_id = client.post("/studies", json={"name": "life", "n_trials": 1, "confirm": None}).json()["id"]
    _run_worker(client, "life", tmp_path)
    assert client.get(f"/studies/{study_id}").json()["state"] == "done"

    full = client.post(f"/studies/{study_id}/trials", json={"params": QUEUED})
    assert full.status_code == 409 and "raise n_trials" in full.json()["detail"]
    raised = client.patch(f"/studies/{study_id}", json={"n_trials": 2})
    assert raised.status_code == 200 and raised.json()["state"] == "active"
    queued = client.post(f"/studies/{study_id}/trials", json={"params": QUEUED})
    assert queued.status_code == 201 and queued.json()["number"] == 1
    again = client.post(f"/studies/{study_id}/trials", json={"params": dict(reversed(QUEUED.items()))})
    assert again.status_code == 200 and again.json()["number"] == 1 and not again.json()["created"]

    _run_worker(client, "life", tmp_path)  # one slot left: the queued trial must take it
    trials = client.get(f"/studies/{study_id}/trials").json()["items"]
    assert [(t["number"], t["state"]) for t in trials] == [(0, "complete"), (1, "complete")]
    assert trials[1]["params"].items() >= QUEUED.items()  # stage1.weight_decay, not given, was sampled

    below = client.patch(f"/studies/{study_id}", json={"n_trials": 1})
    assert below.status_code == 409 and "2 trials" in below.json()["detail"]
    assert client.get(f"/studies/{study_id}").json()["n_trials"] == 2

    exported = client.get(f"/studies/{study_id}/trials.csv")
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [(row["number"], row["state"]) for row in rows] == [("0", "complete"), ("1", "complete")]
    assert {name: rows[1][name] for name in QUEUED} == {name: str(value) for name, value in QUEUED.items()}
    # instant_runner's val All is the sum of the float params (not the loss, not the int epochs), so each column
    # must hold its trial's value.
    floats = [name for name in rows[1] if name.startswith("stage") and name not in ("stage2.loss", "stage1.epochs")]
    assert float(rows[1]["val_all"]) == pytest.approx(sum(float(rows[1][name]) for name in floats))
    assert rows[1]["val_medium"] == "" and float(rows[1]["duration_s"]) >= 0


BAD_PARAMS = [
    ({"stage9.lr": 0.1}, "stage9.lr"),
    ({"stage2.weight_decay": 500.0}, "outside"),
    ({"stage2.weight_decay": "high"}, "not a number"),
    ({"stage2.loss": "focal"}, "'focal' is not one of"),
    ({"stage2.loss": True}, "stage2.loss"),
    ({"stage1.epochs": 3}, "stage1.epochs"),
]


@pytest.mark.postgres
def test_bad_requests_are_refused_and_write_nothing_and_a_stopped_study_resumes(postgres_url: str,
                                                                                tmp_path: Path) -> None:
    app = create_app(Settings(database={"url": postgres_url}, artifact={"dir": tmp_path}, api={"token": "admin"}))
    with TestClient(app, headers={"Authorization": "Bearer admin"}) as client:
        study_id = client.post("/studies", json={"name": "strict", "n_trials": 3, "confirm": None}).json()["id"]
        for params, named in BAD_PARAMS:
            refused = client.post(f"/studies/{study_id}/trials", json={"params": params})
            # 409: a well-formed request that this study's space does not hold
            assert refused.status_code == 409 and named in refused.text, params
        assert client.post(f"/studies/{study_id}/trials", json={"params": {}, "priority": 1}).status_code == 422
        # JSON's true is no integer, though Python's bool is one (schemathesis sent it)
        for budget in (0, True, 2.5):
            assert client.patch(f"/studies/{study_id}", json={"n_trials": budget}).status_code == 422, budget
        assert client.post("/studies", json={"name": "boolean-budget", "n_trials": True}).status_code == 422
        # the one trial row is the study's recipe, WAITING as trial 0 since creation
        assert _trial_rows(client) == 1 and client.get(f"/studies/{study_id}").json()["n_trials"] == 3

        # The same params queued at once from four threads (a retried script, optuna #3616): one trial.
        with ThreadPoolExecutor(4) as pool:
            queued = list(pool.map(lambda _: lifecycle.queue_trial(app.state.database, study_id=study_id,
                                                                   params={"stage2.loss": "ce"}), range(4)))
        assert sorted(q.created for q in queued) == [False, False, False, True]
        assert {q.number for q in queued} == {1} and _trial_rows(client) == 2
        for path in ("/studies/424242/resume", "/studies/424242/trials"):
            assert client.post(path, json={"params": {}}).status_code == 404
        assert client.patch("/studies/424242", json={"n_trials": 2}).status_code == 404
        assert client.get("/studies/424242/trials.csv").status_code == 404

        assert client.post(f"/studies/{study_id}/stop").json()["state"] == "stopped"
        resumed = client.post(f"/studies/{study_id}/resume")
        assert resumed.status_code == 200 and resumed.json()["state"] == "active"
        assert resumed.json()["stop_reason"] is None

        # A read token may read and nothing else.
        _, secret = tokens.create_token(app.state.database, name="viewer", scope="read")
        assert client.get("/studies", headers={"Authorization": "Bearer wrong"}).status_code == 401
        viewer = {"Authorization": f"Bearer {secret}"}
        assert client.get("/studies", headers=viewer).status_code == 200
        assert client.post(f"/studies/{study_id}/stop", headers=viewer).status_code == 403
    app.state.database.dispose()
