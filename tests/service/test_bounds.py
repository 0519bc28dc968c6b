"""Every number a request can set is bounded, the bound is in the OpenAPI schema, and no body is a 500
(issue 21 items 5 and 8)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

HUGE = 10**400  # a whole number of 400 digits: Python parses it, float() and the database cannot hold it


@pytest.fixture
def client(sqlite_url: str, app_client: Callable[[str], TestClient]) -> TestClient:
    return app_client(sqlite_url)


@pytest.mark.parametrize(("overrides", "field"), [
    ({"seed": 2**32}, "seed"),
    ({"seed": -1}, "seed"),
    ({"fixed": {"stage1.epochs": 10**12}}, "epochs"),
    ({"fixed": {"stage2.epochs": 10**6}}, "epochs"),
    ({"fixed": {"stage1.batch_size": 1e20}}, "batch_size"),
    ({"fixed": {"stage1.batch_size": 10**7}}, "batch_size"),
    ({"fixed": {"data.split_seed": 2**32}}, "split_seed"),
    ({"fixed": {"stage2.feature_views": 10**6}}, "feature_views"),
    ({"fixed": {"stage1.epochs": HUGE}}, "fixed"),
    ({"image_size": 10**6}, "image_size"),
    ({"imbalance_factor": 1e300}, "imbalance_factor"),
    ({"preset": [1]}, "preset"),
    ({"preset": {"a": 1}}, "preset"),
    ({"search_space": {"stage2.weight_decay": {"type": "float", "low": -5.0, "high": 1.0}}}, "weight_decay"),
    ({"search_space": {"stage2.maxnorm_thresh": {"type": "float", "low": 0.0, "high": 1e30}}}, "high"),
    ({"search_space": {"stage2.loss": {"type": "categorical", "choices": ["ce", "nope"]}}}, "stage2.loss"),
    ({"search_space": {"stage1.epochs": {"type": "categorical", "choices": [1, 10**9]}}}, "epochs"),
])
def test_out_of_bound_numbers_and_wrong_types_are_422(client: TestClient, overrides: dict, field: str) -> None:
    body = {"name": "bounded", "n_trials": 2} | overrides
    response = client.post("/studies", json=body)
    assert response.status_code == 422, response.text
    assert field in response.text
    assert client.get("/studies").json()["total"] == 0


def test_the_largest_seed_is_accepted() -> None:
    from studies.definition.samplers import build_sampler
    from studies.definition.spec import parse_spec

    spec = parse_spec({"name": "top", "n_trials": 1, "seed": 2**32 - 1})
    build_sampler(spec, seed_offset=16**6 - 1)  # a worker's offset on top of the largest seed still seeds numpy


def test_a_queued_param_of_400_digits_is_422_not_500(client: TestClient) -> None:
    study = client.post("/studies", json={"name": "queue", "n_trials": 3}).json()
    for value in (HUGE, -HUGE):
        response = client.post(f"/studies/{study['id']}/trials", json={"params": {"stage2.weight_decay": value}})
        assert response.status_code == 422, response.text


def test_the_bounds_are_in_the_openapi_schema(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    seed = schemas["StudySpec"]["properties"]["seed"]
    assert (seed["minimum"], seed["maximum"]) == (0, 2**32 - 1)
    assert schemas["StudySpec"]["properties"]["objectives"]["uniqueItems"] is True
    float_range = schemas["FloatRange"]["properties"]
    assert float_range["low"]["maximum"] == float_range["high"]["maximum"] > 0
    assert schemas["Choices"]["properties"]["choices"]["maxItems"] > 0
    text = str(schemas["StudySpec"]["properties"]["fixed"])
    assert "maximum" in text and "maxLength" in text  # every fixed value is a bounded number or string
