"""What one request may cost: a bounded body (413), bounded 422s, checked names, small list pages."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.core.config import Settings
from service.main import create_app
from studies.definition.spec import MAX_SEARCHED_PARAMS

pytestmark = pytest.mark.postgres

SPEC = {"name": "bounded", "dataset": "digits-lt", "method": "wb", "n_trials": 3}
SHORT = 1000  # characters: a 413 or a 422 that quotes its input stays well under this


@pytest.fixture
def client(postgres_url: str, app_client: Callable[[str], TestClient]) -> TestClient:
    return app_client(postgres_url)


def test_a_body_over_the_limit_is_413_with_a_short_message(client: TestClient, postgres_url: str,
                                                           tmp_path: Path) -> None:
    five_mb = json.dumps(SPEC | {"data_root": "x" * 5_000_000}).encode()
    response = client.post("/studies", content=five_mb, headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and len(response.text) < SHORT
    assert "TAILTUNE_API_MAX_REQUEST_BYTES" in response.json()["detail"]
    chunks = (b" " * 65_536 for _ in range(40))  # no Content-Length: 2.6 MB counted as it arrives
    assert client.post("/studies", content=chunks, headers={"Content-Type": "application/json"}).status_code == 413

    app = create_app(Settings(database={"url": postgres_url}, artifact={"dir": tmp_path},
                              api={"max_request_bytes": 2048, "open": True}))
    with TestClient(app) as small:
        assert small.post("/studies", json=SPEC | {"data_root": "x" * 3000}).status_code == 413
        assert small.post("/studies", json=SPEC).status_code == 201
    app.state.database.dispose()


def test_422s_quote_excerpts_and_name_unknown_search_space_names(client: TestClient) -> None:
    response = client.post("/studies", json=SPEC | {"name": "x" * 500_000, "n_trials": 0})
    assert response.status_code == 422 and len(response.text) < 2 * SHORT
    assert {tuple(error["loc"]) for error in response.json()["detail"]} >= {("body", "name"), ("body", "n_trials")}

    unknown = {f"stage2.knob{n}": {"type": "float", "low": 0, "high": 1} for n in range(2000)}
    response = client.post("/studies", json=SPEC | {"search_space": unknown})
    assert response.status_code == 422 and len(response.text) < 2 * SHORT
    assert "'stage2.knob0'" in response.text and "1995 more" in response.text and "e.g. stage1" in response.text
    assert client.get("/studies").json()["total"] == 0


def test_more_searched_parameters_than_the_cap_are_422(client: TestClient) -> None:
    fields = [f"stage2.{name}" for name in ("cb_beta", "over_smoothing", "weight_decay", "maxnorm_thresh", "lr",
                                            "momentum", "epochs", "batch_size", "feature_views")]
    fields += [f"stage1.{name}" for name in ("epochs", "lr", "momentum", "batch_size", "weight_decay", "feature_reg")]
    fields += ["seed", "data.split_seed", "data.imbalance_factor", "data.image_size"]
    # A value each field takes (every choice must make a valid config): 1, but a momentum is < 1 and images >= 4 px.
    valid = {"stage2.momentum": 0.5, "stage1.momentum": 0.5, "data.image_size": 8}
    space = {name: {"type": "categorical", "choices": [valid.get(name, 1)]} for name in fields}
    assert client.post("/studies", json=SPEC | {"search_space": space}).status_code == 201
    many = {f"{field}": {"type": "categorical", "choices": [1]} for field in [*fields, "stage2.loss",
            "stage2.maxnorm", "stage2.maxnorm_every", "stage2.layers", "stage2.bn_mode", "stage2.maxnorm_radius",
            "stage1.classifier", "model.arch", "eval.flip_tta", "data.cifar_counts", "data.download",
            "data.root", "data.name", "method"]}
    assert len(many) > MAX_SEARCHED_PARAMS
    response = client.post("/studies", json=SPEC | {"name": "too-many", "search_space": many})
    assert response.status_code == 422 and f"at most {MAX_SEARCHED_PARAMS}" in response.text


def test_the_list_shows_summaries_and_the_study_its_spec(client: TestClient) -> None:
    created = client.post("/studies", json=SPEC | {"fixed": {"stage1.epochs": 2}})
    assert created.status_code == 201
    listed = client.get("/studies").json()["items"]
    assert [item["name"] for item in listed] == ["bounded"] and "spec" not in listed[0]
    study = client.get(f"/studies/{created.json()['id']}").json()
    assert study["spec"]["fixed"] == {"stage1.epochs": 2}
