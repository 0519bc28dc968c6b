"""GET /healthz: is the database reachable? (No token needed: load balancers and Docker probe it.)"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from service.api.deps import get_database
from service.schemas import Health
from studies.store.db import Database

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}})
def healthz(db: Annotated[Database, Depends(get_database)]) -> JSONResponse:
    if db.ping():
        return JSONResponse({"database": "ok"})
    return JSONResponse({"database": "unreachable: check TAILTUNE_DATABASE_URL and the server"}, status_code=503)
