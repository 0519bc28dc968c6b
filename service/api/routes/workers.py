"""GET /workers: the workers whose heartbeats the database has seen."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import DatabaseDep
from studies import registry
from studies.records import WorkerRecord

router = APIRouter(prefix="/workers", tags=["workers"])


@router.get("", response_model=list[WorkerRecord])
def list_workers(db: DatabaseDep) -> list[WorkerRecord]:
    return registry.live_workers(db)
