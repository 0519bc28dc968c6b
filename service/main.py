"""The FastAPI application: `create_app(settings)`; `tailtune serve` runs it with uvicorn."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from optuna.exceptions import StorageInternalError
from sqlalchemy.exc import DBAPIError

from service.api.deps import TokenDep
from service.api.limits import BodySizeLimit, WriteRateLimit, WritesBusyError, bounded_validation_errors
from service.api.options import SchemaOptions
from service.api.routes import comparisons, health, studies, workers
from service.core.config import Settings
from service.reports import ReportPages, ReportsBusyError
from service.schemas import Message
from studies.definition.errors import (
    ModelFilesMissingError,
    NoFinishedTrialsError,
    TrialNotExportableError,
    TrialNotFoundError,
)
from studies.store.comparisons import ComparisonExistsError, ComparisonNotFoundError
from studies.store.db import Database, DatabaseUnavailableError, describe, is_transient
from studies.store.lifecycle import BudgetConflictError, ParamsMismatchError
from studies.store.registry import StudyBusyError, StudyExistsError, StudyNotFoundError, StudyUnreadableError
from trainers.errors import UserInputError

log = logging.getLogger(__name__)

_STATUS_OF = [(StudyNotFoundError, status.HTTP_404_NOT_FOUND), (StudyExistsError, status.HTTP_409_CONFLICT),
              (ComparisonNotFoundError, status.HTTP_404_NOT_FOUND), (ComparisonExistsError, status.HTTP_409_CONFLICT),
              (StudyBusyError, status.HTTP_409_CONFLICT), (StudyUnreadableError, status.HTTP_409_CONFLICT),
              (BudgetConflictError, status.HTTP_409_CONFLICT),
              (TrialNotExportableError, status.HTTP_409_CONFLICT),
              (TrialNotFoundError, status.HTTP_404_NOT_FOUND), (ParamsMismatchError, status.HTTP_409_CONFLICT),
              (NoFinishedTrialsError, status.HTTP_409_CONFLICT), (ModelFilesMissingError, status.HTTP_404_NOT_FOUND),
              (UserInputError, status.HTTP_422_UNPROCESSABLE_CONTENT)]
# An outage usually ends with a restart or failover, seconds away; clients wait this long before they retry.
RETRY_AFTER_S = 5
# The body of every 503: it names no database user, host, port or name (the server log has the cause).
UNAVAILABLE = "database unavailable; retry later (GET /healthz reports when it is back)"
# Every route behind the token may answer these; documented so clients (and schemathesis) expect them.
_PROTECTED_RESPONSES: dict[int | str, dict] = {
    status.HTTP_401_UNAUTHORIZED: {"model": Message, "description": "missing, wrong or revoked bearer token"},
    status.HTTP_403_FORBIDDEN: {"model": Message, "description": "a read-only token on a method that writes"},
    status.HTTP_503_SERVICE_UNAVAILABLE: {"model": Message, "description": "the database is unreachable; "
                                          "the Retry-After header says when to try again"},
}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = FastAPI(title="tailtune", version="0.1.0",
                  description="Launch and follow long-tailed recognition tuning studies. Trials are run by "
                              "`tailtune worker` processes pulling from the same database.")
    app.state.settings = settings
    app.state.database = Database.connect(settings.database.url, pool_size=settings.database.pool_size)
    app.state.reports = ReportPages(builds=settings.api.report_builds, waiting=settings.api.report_waiting)
    app.state.write_limit = WriteRateLimit(settings.api.writes_per_minute)
    app.include_router(health.router)
    for router in (studies.router, comparisons.router, workers.router):
        app.include_router(router, dependencies=[TokenDep], responses=_PROTECTED_RESPONSES)
    app.add_middleware(BodySizeLimit, max_bytes=settings.api.max_request_bytes)
    app.add_middleware(SchemaOptions, api=app)
    app.add_exception_handler(RequestValidationError, bounded_validation_errors)
    app.add_exception_handler(UserInputError, _user_error)
    app.add_exception_handler(DatabaseUnavailableError, _unavailable)
    app.add_exception_handler(ReportsBusyError, _busy)
    app.add_exception_handler(WritesBusyError, _writes_busy)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(StorageInternalError, _database_error)
    return app


def _user_error(_request: Request, error: Exception) -> JSONResponse:
    code = next(code for kind, code in _STATUS_OF if isinstance(error, kind))
    return JSONResponse({"detail": str(error)}, status_code=code)


def _unavailable(request: Request, error: Exception) -> JSONResponse:
    log.warning("%s %s: %s", request.method, request.url.path, error)
    return JSONResponse({"detail": UNAVAILABLE}, status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
                        headers={"Retry-After": str(RETRY_AFTER_S)})


def _busy(_request: Request, error: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(error)}, status_code=status.HTTP_429_TOO_MANY_REQUESTS,
                        headers={"Retry-After": str(RETRY_AFTER_S)})


def _writes_busy(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, WritesBusyError)
    return JSONResponse({"detail": str(error)}, status_code=status.HTTP_429_TOO_MANY_REQUESTS,
                        headers={"Retry-After": str(error.retry_after_s)})


def _database_error(request: Request, error: Exception) -> JSONResponse:
    # studies/ already retried transient errors; one still here means the database went away mid-request.
    # Anything else is a bug, and stays a 500 so it is seen.
    if not is_transient(error):
        raise error
    return _unavailable(request, DatabaseUnavailableError(describe(error)))
