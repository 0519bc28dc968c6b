"""Property-based run over the OpenAPI schema: no 5xx, and every response matches the schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.core.config import Settings
from service.main import create_app

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def api_schema(postgres_url: str, tmp_path: Path) -> Iterator[schemathesis.schemas.BaseSchema]:
    app = create_app(Settings(database_url=postgres_url, artifact_dir=tmp_path))
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    app.state.database.dispose()


def test_api_never_errors_and_conforms_to_its_schema(api_schema: schemathesis.schemas.BaseSchema) -> None:
    # schemathesis' pytest plugin does not run under pytest 9 yet, so drive its strategies with hypothesis.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 8
    for operation in operations:
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy())
        def conforms(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=[not_a_server_error, status_code_conformance, content_type_conformance,
                                           response_schema_conformance])

        conforms()
