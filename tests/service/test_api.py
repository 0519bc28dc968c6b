"""The REST API against the real PostgreSQL: create, run, read, stop, delete, errors and auth."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from service.core.config import Settings
from service.main import create_app
from studies.run.worker import WorkerSettings, run_worker
from tests.studies.run.test_poisoned_study import poison

pytestmark = pytest.mark.postgres

QUICK = {"stage1.epochs": 2}


@pytest.fixture
def client(postgres_url: str, app_client: Callable[[str], TestClient]) -> TestClient:
    return app_client(postgres_url)


def _create(client: TestClient, **overrides: object) -> dict:
    body = {"name": "wb-api", "dataset": "digits-lt", "method": "wb", "n_trials": 3, "fixed": QUICK,
            "confirm": None} | overrides
    response = client.post("/studies", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def _run_worker(client: TestClient, name: str, tmp_path: Path) -> None:
    settings = WorkerSettings(heartbeat_interval=1, grace_period=3, device="cpu", handle_signals=False)
    run_worker(client.app.state.database, study_names=[name], settings=settings, artifact_dir=tmp_path)


@pytest.mark.slow
def test_create_run_and_read_per_split_results_over_http(client: TestClient, tmp_path: Path) -> None:
    created = _create(client)
    assert created["urls"]["self"].endswith(f"/studies/{created['id']}")
    _run_worker(client, "wb-api", tmp_path)

    study = client.get(f"/studies/{created['id']}").json()
    assert study["state"] == "done" and study["counts"]["complete"] == 3
    assert set(study["best_val"]) == set(study["best_test"]) == {"all", "many", "medium", "few"}
    trials = client.get(f"/studies/{created['id']}/trials", params={"order": "value"}).json()
    assert trials["total"] == 3
    values = [t["values"][0] for t in trials["items"]]
    assert values == sorted(values, reverse=True)
    for trial in trials["items"]:
        assert set(trial["val"]) == set(trial["test"]) == {"all", "many", "medium", "few"}
        assert trial["val"]["all"] == pytest.approx(trial["values"][0])
        assert trial["worker"] and trial["duration_s"] > 0
    assert study["best_val"]["all"] == pytest.approx(values[0])
    page = client.get(f"/studies/{created['id']}/trials", params={"offset": 1, "limit": 1}).json()
    assert [t["number"] for t in page["items"]] == [1]
    listed = client.get("/studies", params={"state": "done"}).json()
    assert [s["name"] for s in listed["items"]] == ["wb-api"]


def test_stop_blocks_new_trials_and_delete_refuses_while_a_trial_runs(client: TestClient, postgres_url: str,
                                                                     tmp_path: Path) -> None:
    created = _create(client, name="to-stop")
    running = optuna.load_study(study_name="to-stop", storage=postgres_url).ask()  # a real RUNNING trial
    stopped = client.post(f"/studies/{created['id']}/stop").json()
    assert stopped["state"] == "stopped"
    _run_worker(client, "to-stop", tmp_path)  # claims nothing: the study is stopped
    assert client.get(f"/studies/{created['id']}").json()["counts"]["complete"] == 0

    refused = client.delete(f"/studies/{created['id']}")
    assert refused.status_code == 409 and "running" in refused.json()["detail"]
    assert running.number == 0
    assert client.delete(f"/studies/{created['id']}", params={"force": True}).status_code == 204
    assert client.get(f"/studies/{created['id']}").status_code == 404


def test_duplicate_name_is_409_and_unknown_id_is_404(client: TestClient) -> None:
    _create(client, name="twice")
    duplicate = client.post("/studies", json={"name": "twice", "dataset": "digits-lt", "method": "wb",
                                              "n_trials": 2})
    assert duplicate.status_code == 409 and "twice" in duplicate.json()["detail"]
    missing = client.get("/studies/987654")
    assert missing.status_code == 404 and "987654" in missing.json()["detail"]


def _row_counts(postgres_url: str) -> tuple[int, int]:
    engine = sa.create_engine(postgres_url, poolclass=sa.NullPool)
    with engine.connect() as connection:
        optuna_rows = connection.execute(sa.text("SELECT count(*) FROM studies")).scalar_one()
        our_rows = connection.execute(sa.text("SELECT count(*) FROM tailtune_study")).scalar_one()
    engine.dispose()
    return optuna_rows, our_rows


@pytest.mark.parametrize(("body", "field"), [
    ({"dataset": "digits-lt", "method": "wb", "n_trials": 3}, "name"),
    ({"name": "bad", "method": "magic", "n_trials": 3}, "method"),
    ({"name": "bad", "n_trials": 0}, "n_trials"),
    ({"name": "bad", "n_trials": 3, "search_space": {"stage2.weight_decay": {"type": "float", "low": 1,
                                                                                "high": 0.1}}}, "low"),
    ({"name": "bad", "n_trials": 3, "search_space": {"stage2.weight_decay": {"type": "float", "low": 0,
                                                                                "high": 1, "log": True}}}, "log"),
    ({"name": "bad", "n_trials": 3, "fixed": {"stage9.nothing": 1}}, "stage9.nothing"),
    ({"name": "bad", "n_trials": 3, "search_space": {"stage2.loss": {"type": "categorical", "choices": []}}},
     "choices"),
    ({"name": "bad", "n_trials": 3, "dataset": "digits\u0000lt"}, "NUL"),
    ({"name": "bad", "n_trials": 3, "dataset": "mnist-lt"}, "unknown data set"),
    # CIFAR-10-LT has no class under 20 train images: a Few objective would score nothing
    ({"name": "bad", "n_trials": 3, "dataset": "cifar10-lt", "objectives": ["few"]}, "objective few"),
])
def test_bad_spec_is_422_naming_the_field_and_writes_nothing(client: TestClient, postgres_url: str,
                                                            body: dict, field: str) -> None:
    before = _row_counts(postgres_url)
    response = client.post("/studies", json=body)
    assert response.status_code == 422
    assert field in response.text
    assert _row_counts(postgres_url) == before


def test_a_token_protects_every_route_but_healthz(postgres_url: str, tmp_path: Path) -> None:
    app = create_app(Settings(database={"url": postgres_url}, artifact={"dir": tmp_path}, api={"token": "s3cret"}))
    routes = [r for r in app.routes if isinstance(r, APIRoute)]
    with TestClient(app) as client:
        for route in routes:
            path = route.path.replace("{study_id}", "1")
            for method in route.methods:
                for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
                    status = client.request(method, path, headers=headers).status_code
                    expected = 200 if route.path == "/healthz" else 401
                    assert status == expected, (method, path, headers)
        authorised = client.get("/studies", headers={"Authorization": "Bearer s3cret"})
        assert authorised.status_code == 200
    app.state.database.dispose()


@pytest.mark.restarts_postgres
def test_healthz_is_503_while_the_database_is_down_and_recovers(throwaway_postgres, tmp_path: Path) -> None:
    app = create_app(Settings(database={"url": throwaway_postgres.new_database_url()}, artifact={"dir": tmp_path},
                              api={"open": True}))
    with TestClient(app) as client:
        study_id = _create(client, name="outlives-outage")["id"]
        assert client.get("/healthz").status_code == 200
        throwaway_postgres.stop()
        try:
            down = client.get("/healthz")
            assert down.status_code == 503 and "unreachable" in down.json()["database"]
            started = time.monotonic()
            for method, path in [("GET", "/studies"), ("GET", f"/studies/{study_id}"),
                                 ("GET", f"/studies/{study_id}/trials"), ("GET", "/workers"),
                                 ("POST", f"/studies/{study_id}/stop")]:
                response = client.request(method, path)
                assert response.status_code == 503 and "retry later" in response.json()["detail"], path
            created = client.post("/studies", json={"name": "during-outage", "n_trials": 2})
            assert created.status_code == 503
            # A client hears at once; it is not held for the minute a worker's reads keep retrying.
            assert time.monotonic() - started < 10
        finally:
            throwaway_postgres.start()
        assert client.get("/healthz").status_code == 200
        listed = client.get("/studies").json()
        assert [s["name"] for s in listed["items"]] == ["outlives-outage"]
    app.state.database.dispose()


def test_the_api_pool_size_comes_from_the_settings(postgres_url: str, tmp_path: Path) -> None:
    app = create_app(Settings(database={"url": postgres_url, "pool_size": 12}, artifact={"dir": tmp_path}))
    assert app.state.database.engine.pool.size() == 12  # a worker-sized pool (2) would queue requests
    app.state.database.dispose()


def test_a_lost_database_is_503_with_retry_after_and_a_body_that_names_no_database(
        postgres_server, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    name = postgres_server.create_database()
    url = sa.make_url(postgres_server.url(name))
    app = create_app(Settings(database={"url": url.render_as_string(hide_password=False)}, artifact={"dir": tmp_path},
                              api={"open": True}))
    with TestClient(app) as client:
        study_id = _create(client, name="lost")["id"]
        postgres_server.drop_database(name)  # terminates the pool's connections; the server says why, naming it
        for path in ("/studies", f"/studies/{study_id}", f"/studies/{study_id}/report", "/workers"):
            response = client.get(path)
            assert response.status_code == 503 and response.headers["Retry-After"].isdigit(), path
            body = response.text
            for secret in (url.username, url.host, str(url.port), url.database):
                assert secret not in body, (path, secret, body)
        assert client.post("/studies", json={"name": "x", "n_trials": 2}).status_code == 503
        assert client.get("/healthz").status_code == 503
    assert any(name in record.getMessage() for record in caplog.records), "the server log keeps the cause"
    app.state.database.dispose()


def test_a_study_whose_stored_spec_no_longer_validates_is_a_409_naming_the_field(client: TestClient) -> None:
    """A spec written by an older tailtune or by hand (here a seed above today's bound) was a 500 on every route
    that answers with the study; the list, which reads no spec, kept working."""
    created = _create(client)
    poison(client.app.state.database, created["id"])
    for response in (client.get(f"/studies/{created['id']}"), client.post(f"/studies/{created['id']}/stop")):
        assert response.status_code == 409, response.text
        assert "seed" in response.json()["detail"] and "no longer" in response.json()["detail"]
    assert client.get("/studies").json()["items"][0]["name"] == "wb-api"
