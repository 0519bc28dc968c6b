"""The OpenAPI schema tells what the API does: OPTIONS names the schema's methods, the 4xx rules are in it."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient


@pytest.fixture
def client(sqlite_url: str, app_client: Callable[[str], TestClient]) -> TestClient:
    return app_client(sqlite_url)


def test_options_names_exactly_the_schemas_methods_on_every_path(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert len(paths) >= 6
    for template, operations in paths.items():
        response = client.options(re.sub(r"\{[^}]+\}", "1", template))
        assert response.status_code == 204, template
        allowed = sorted(method.strip() for method in response.headers["allow"].split(","))
        assert allowed == sorted([method.upper() for method in operations] + ["OPTIONS"]), template
    assert client.options("/no-such-path").status_code == 404


def test_the_documented_4xx_rules_are_in_the_schema(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    create = schema["paths"]["/studies"]["post"]["responses"]
    assert {"400", "409", "413", "422"} <= set(create)
    assert "grid" in create["422"]["description"] and "search_space" in create["422"]["description"]
    assert "grid" in schema["components"]["schemas"]["StudySpec"]["properties"]["sampler"]["description"]
    report = schema["paths"]["/studies/{study_id}/report"]["get"]["responses"]
    assert "no finished trial" in report["409"]["description"]
    assert list(report["200"]["content"]) == ["text/html"]  # the page, not JSON
    assert all(list(report[code]["content"]) == ["application/json"] for code in ("404", "409", "429"))  # errors
