"""Dependencies every route shares: the database and the bearer-token check."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.core.config import Settings
from studies.db import Database

_bearer = HTTPBearer(auto_error=False, description="TAILTUNE_API_TOKEN, when the server has one")


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_database(request: Request) -> Database:
    return request.app.state.database


def get_reachable_database(database: Annotated[Database, Depends(get_database)]) -> Database:
    # studies/ retries reads for up to a minute, which suits a worker; an HTTP client should hear at once that
    # the database is down (503) and retry itself, not hang past its load balancer's timeout.
    if not database.ping():
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            detail="database unreachable; retry later (GET /healthz reports when it is back)")
    return database


def require_token(settings: Annotated[Settings, Depends(get_settings)],
                  credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    if settings.api_token is None:
        return
    expected = settings.api_token.get_secret_value().encode()
    given = credentials.credentials.encode() if credentials is not None else b""
    # compare_digest: the time taken does not reveal how much of a guessed token was right.
    if credentials is None or not hmac.compare_digest(given, expected):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="missing or wrong token: send the header "
                            "'Authorization: Bearer <TAILTUNE_API_TOKEN>'", headers={"WWW-Authenticate": "Bearer"})


SettingsDep = Annotated[Settings, Depends(get_settings)]
DatabaseDep = Annotated[Database, Depends(get_reachable_database)]
TokenDep = Depends(require_token)
