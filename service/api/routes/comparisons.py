"""/comparisons: the methods compared on one data set (studies/definition/comparison.py), and their table."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, status
from fastapi.responses import Response

from service.api.deps import DatabaseDep, SettingsDep, WriteLimitDep
from service.api.routes.studies import BAD_BODY, NOT_FOUND, TOO_MANY
from service.data_paths import check_data_paths
from service.schemas import Message, ValidationErrors
from studies.definition.comparison import ComparisonRecord, ComparisonSpec
from studies.definition.spec import NAME_PATTERN
from studies.store import comparisons

router = APIRouter(prefix="/comparisons", tags=["comparisons"])

ComparisonId = Annotated[int, Path(ge=1, le=2**31 - 1, description="the comparison's id, as POST returned it")]
MEDIA = {"markdown": "text/markdown", "latex": "application/x-latex", "csv": "text/csv", "png": "image/png"}


# One comparison creates a study per method: it counts as a write like POST /studies.
@router.post("", status_code=status.HTTP_201_CREATED, response_model=ComparisonRecord, dependencies=[WriteLimitDep],
             responses={**BAD_BODY, **TOO_MANY,
                        409: {"model": Message, "description": "the name, or one of its study names, is taken"},
                        422: {"model": ValidationErrors | Message,
                              "description": "a message per bad field, or one naming a data path outside the "
                                             "allowed roots"}})
def create_comparison(spec: ComparisonSpec, db: DatabaseDep, settings: SettingsDep) -> ComparisonRecord:
    """One study per method on the same data, split and budget; workers serving every study run them."""
    for method in spec.methods:
        check_data_paths(spec.method_spec(method, {}), settings.data.roots)
    return comparisons.create_comparison(db, spec=spec)


@router.get("", response_model=ComparisonRecord, responses=NOT_FOUND)
def get_comparison_by_name(name: Annotated[str, Query(pattern=NAME_PATTERN, description="the comparison's name")],
                           db: DatabaseDep) -> ComparisonRecord:
    """The comparison of that name (names are unique)."""
    return comparisons.get_comparison_by_name(db, name=name)


@router.get("/{comparison_id}", response_model=ComparisonRecord, responses=NOT_FOUND)
def get_comparison(comparison_id: ComparisonId, db: DatabaseDep) -> ComparisonRecord:
    return comparisons.get_comparison(db, comparison_id=comparison_id)


# response_class=Response, as the report route: a text response class would document the JSON errors as text.
@router.get("/{comparison_id}/table", response_class=Response, responses={
    200: {"content": {media: {} for media in MEDIA.values()}, "description": "the paper-style table"}, **NOT_FOUND})
def comparison_table_text(comparison_id: ComparisonId, db: DatabaseDep,
                          format: Annotated[Literal["markdown", "latex", "csv", "png"], Query()] = "markdown",
                          ) -> Response:
    """The table as Markdown, LaTeX or CSV, or its bars with error bars as PNG."""
    from studies.reports import comparison_table  # matplotlib: the API starts without it (tests/test_architecture.py)

    record = comparisons.get_comparison(db, comparison_id=comparison_id)
    return Response(comparison_table.rendered(record, format), media_type=MEDIA[format])
