"""Workers' rows (`tailtune_worker`) and their trials' heartbeats: what a worker writes about itself, and the
list of live workers the API shows.

A worker registers once, then beats from its own thread on the side connection (`Database.side_engine`), so a
long training step holding the pool's connection never looks like a dead worker (optuna #4234).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Literal

import sqlalchemy as sa

from studies.definition.records import WorkerRecord
from studies.store.db import Database, retry_transient, utc
from studies.store.storage import trial_heartbeats
from studies.store.tables import worker_table

WorkerState = Literal["idle", "running", "stopping", "exited"]
# A worker whose last heartbeat is older than this many of its intervals is shown gone: killed, or cut off from
# the database (the grace period before its trial is retried is three intervals by default too).
GONE_AFTER_HEARTBEATS = 3
# Gone workers stay in the list this long after their last heartbeat, then drop out of it.
GONE_LISTED_FOR_S = 24 * 3600


def register_worker(db: Database, *, worker_id: str, host: str, pid: int, heartbeat_interval_s: int) -> None:
    """The worker's row, idle; retried on transient errors (a retry whose first attempt committed before the
    connection dropped finds its own row, which the ignored IntegrityError stands for)."""
    def insert() -> None:
        with contextlib.suppress(sa.exc.IntegrityError), db.engine.begin() as connection:
            connection.execute(worker_table.insert().values(id=worker_id, host=host, pid=pid, state="idle",
                                                            heartbeat_interval_s=heartbeat_interval_s))

    retry_transient(insert, what="register the worker")


def beat(db: Database, *, worker_id: str, state: WorkerState, trial_ids: Sequence[int],
         current_study_id: int | None, current_trial_number: int | None) -> None:
    """One heartbeat, on the side connection, in one transaction: the running trials' (Optuna's heartbeat
    rows, which the claim wrote) and the worker row's, with what it runs now."""
    with db.side_engine.begin() as connection:
        if trial_ids:
            connection.execute(trial_heartbeats.update().where(trial_heartbeats.c.trial_id.in_(trial_ids))
                               .values(heartbeat=sa.func.now()))
        connection.execute(worker_table.update().where(worker_table.c.id == worker_id).values(
            last_seen=sa.func.now(), state=state, current_study_id=current_study_id,
            current_trial_number=current_trial_number))


def list_workers(db: Database) -> list[WorkerRecord]:
    """Workers that have not exited, oldest first: live ones with their state, silent ones as gone."""
    def read() -> list[WorkerRecord]:
        with db.engine.connect() as connection:
            now = utc(connection.execute(sa.select(sa.func.current_timestamp())).scalar_one())
            rows = connection.execute(sa.select(worker_table).where(worker_table.c.state != "exited")
                                      .order_by(worker_table.c.started_at)).all()
        records = []
        for row in rows:
            silent_s = (now - utc(row.last_seen)).total_seconds()
            if silent_s <= GONE_LISTED_FOR_S:
                gone = silent_s > GONE_AFTER_HEARTBEATS * row.heartbeat_interval_s
                records.append(WorkerRecord(**{**row._asdict(), "state": "gone" if gone else row.state,
                                               "started_at": utc(row.started_at), "last_seen": utc(row.last_seen)}))
        return records

    return retry_transient(read, what="list workers")
