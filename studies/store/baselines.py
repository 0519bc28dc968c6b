"""A study's simple baseline (trainers/baseline.py), fitted once per study by the first worker that claims it.

Stored as the study user attr `tailtune_baseline` (registry.BASELINE_ATTR: the registry reads it into records;
`optuna.load_study(...).user_attrs` shows it too): `{"state": "fitting", "worker", "claimed_at"}` while a worker
fits it, then `{"state": "done", "model", "val", "test", "fit_s"}`, `{"state": "skipped", "model", "reason"}`
(data too large) or `{"state": "failed", "reason"}`.
"""

from __future__ import annotations

import time
from typing import Any

from studies.store.db import Database, retry_transient
from studies.store.registry import BASELINE_ATTR, locked_study
from studies.store.storage import read_study_user_attr, write_study_user_attr

# A fit claimed but not stored this long after (its worker was killed) may be claimed by another worker; a fit
# takes seconds to a minute within trainers/baseline.py's bounds.
CLAIM_EXPIRES_S = 600.0


def claim_baseline(db: Database, *, study_id: int, worker_id: str) -> bool:
    """True when this worker is to fit the study's baseline: none is stored or being fitted (or a claim
    expired). Under the study's lock, so of many workers starting at once exactly one fits it."""
    def claim() -> bool:
        with locked_study(db, study_id=study_id) as (connection, row):
            if row is None:
                return False
            current = read_study_user_attr(connection, study_ids=[study_id], key=BASELINE_ATTR).get(study_id)
            # This worker's own claim is a retry's first attempt, committed before its reply was lost.
            if current is not None and not _expired(current) and current.get("worker") != worker_id:
                return False
            write_study_user_attr(connection, study_id=study_id, key=BASELINE_ATTR,
                                  value={"state": "fitting", "worker": worker_id, "claimed_at": time.time()})
            return True

    return retry_transient(claim, what="claim the study's baseline")


def store_baseline(db: Database, *, study_id: int, baseline: dict[str, Any]) -> None:
    """Stores the fitted (or skipped, or failed) baseline; `baseline` carries its `state`."""
    def store() -> None:
        with db.engine.begin() as connection:
            write_study_user_attr(connection, study_id=study_id, key=BASELINE_ATTR, value=baseline)

    retry_transient(store, what="store the study's baseline")


def _expired(current: dict[str, Any]) -> bool:
    return current.get("state") == "fitting" and time.time() - current.get("claimed_at", 0.0) > CLAIM_EXPIRES_S
