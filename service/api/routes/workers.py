"""GET /workers: the workers that have not exited; one silent for three heartbeat intervals is shown gone."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import DatabaseDep
from studies.definition.records import WorkerRecord
from studies.store import workers

router = APIRouter(prefix="/workers", tags=["workers"])


@router.get("", response_model=list[WorkerRecord])
def list_workers(db: DatabaseDep) -> list[WorkerRecord]:
    return workers.list_workers(db)
