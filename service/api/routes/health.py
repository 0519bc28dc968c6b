"""GET /healthz: is the database reachable? (No token needed: load balancers and Docker probe it.)"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.api.deps import DatabaseDep
from service.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}})
def healthz(db: DatabaseDep) -> JSONResponse:
    if db.ping():
        return JSONResponse({"database": "ok"})
    return JSONResponse({"database": "unreachable: check TAILTUNE_DATABASE_URL and the server"}, status_code=503)
