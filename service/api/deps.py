"""Dependencies every route shares: the database and the bearer-token check (admin, write or read)."""

from __future__ import annotations

import hmac
from typing import Annotated, Literal

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.core.config import Settings
from studies.store import tokens
from studies.store.db import Database
from studies.store.tokens import Scope

_bearer = HTTPBearer(auto_error=False, description="TAILTUNE_API_TOKEN, or a named token from `tailtune token "
                     "create` (a read token may only GET)")
READ_METHODS = {"GET", "HEAD", "OPTIONS"}


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_database(request: Request) -> Database:
    return request.app.state.database


def get_reachable_database(database: Annotated[Database, Depends(get_database)]) -> Database:
    # studies/ retries reads for up to a minute, which suits a worker; an HTTP client should hear at once that
    # the database is down (503) and retry itself, not hang past its load balancer's timeout.
    database.check_reachable()
    return database


def require_token(request: Request, settings: Annotated[Settings, Depends(get_settings)],
                  db: Annotated[Database, Depends(get_database)],
                  credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    """TAILTUNE_API_TOKEN may do anything; a named token (studies/store/tokens.py) what its scope allows. Only an
    API started open (`tailtune serve --open`, TAILTUNE_API_OPEN) takes requests without one: a server with no
    token left (all revoked or expired) refuses every request instead of opening."""
    scope = _scope(settings, db, credentials.credentials if credentials is not None else None)
    if scope is None:
        # The same answer for a wrong, a revoked and a missing token, which is never repeated back.
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="missing, wrong or revoked token: send the "
                            "header 'Authorization: Bearer <token>'", headers={"WWW-Authenticate": "Bearer"})
    if scope == "read" and request.method not in READ_METHODS:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=f"this token is read-only; {request.method} needs "
                            "a write token (tailtune token create NAME --storage URL)")


def _scope(settings: Settings, db: Database, given: str | None) -> Scope | Literal["admin"] | None:
    if settings.api.open:
        return "admin"
    admin = settings.api.token.get_secret_value() if settings.api.token is not None else None
    if given is None:
        return None
    # compare_digest: the time taken does not reveal how much of a guessed token was right.
    if admin is not None and hmac.compare_digest(given.encode(), admin.encode()):
        return "admin"
    return tokens.scope_of(db, secret=given)


def limit_writes(request: Request,
                 credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    """Counts a study creation or queued trial against its token's per-minute limit (429 beyond it)."""
    request.app.state.write_limit.admit(credentials.credentials if credentials is not None else None)


SettingsDep = Annotated[Settings, Depends(get_settings)]
DatabaseDep = Annotated[Database, Depends(get_reachable_database)]
TokenDep = Depends(require_token)
WriteLimitDep = Depends(limit_writes)
