"""The FastAPI application: `create_app(settings)`; `tailtune serve` runs it with uvicorn."""

from __future__ import annotations

from fastapi import Depends, FastAPI, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError

from service.api.deps import require_token
from service.api.routes import health, studies, workers
from service.core.config import Settings
from studies.db import Database, DatabaseUnavailableError
from studies.registry import StudyBusyError, StudyExistsError, StudyNotFoundError
from trainers.errors import UserInputError

_STATUS_OF = [(DatabaseUnavailableError, status.HTTP_503_SERVICE_UNAVAILABLE),
              (StudyNotFoundError, status.HTTP_404_NOT_FOUND), (StudyExistsError, status.HTTP_409_CONFLICT),
              (StudyBusyError, status.HTTP_409_CONFLICT), (UserInputError, status.HTTP_422_UNPROCESSABLE_CONTENT)]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = FastAPI(title="tailtune", version="0.1.0",
                  description="Launch and follow long-tailed recognition tuning studies. Trials are run by "
                              "`tailtune worker` processes pulling from the same database.")
    app.state.settings = settings
    app.state.database = Database.connect(settings.database_url)
    protected = [Depends(require_token)]
    app.include_router(health.router)
    app.include_router(studies.router, dependencies=protected)
    app.include_router(workers.router, dependencies=protected)
    app.add_exception_handler(UserInputError, _user_error)
    app.add_exception_handler(DBAPIError, _database_error)
    return app


def _user_error(_request: Request, error: Exception) -> JSONResponse:
    code = next(code for kind, code in _STATUS_OF if isinstance(error, kind))
    return JSONResponse({"detail": str(error)}, status_code=code)


def _database_error(_request: Request, error: Exception) -> JSONResponse:
    # Transient outages already got retries in studies/; what reaches here is the database being down.
    return JSONResponse({"detail": f"database unavailable ({type(error).__name__}); retry later"},
                        status_code=status.HTTP_503_SERVICE_UNAVAILABLE)
