"""Admission control: how a worker claims a trial so that a study ends with exactly its budget of trials.

The budget is derived, not reserved: nothing is counted up or down, so nothing leaks when a worker dies.
Under the study's lock (`registry.locked_study`) a claimer

1. reaps stale trials: RUNNING trials whose heartbeat is older than the grace period become FAIL and
   Optuna's `RetryHeartbeatStaleTrialCallback` queues a WAITING clone with the same params and lineage;
2. counts the study's COMPLETE + PRUNED + RUNNING trials, and only if that is below `n_trials`
3. asks for trials (a WAITING retry is popped before a new trial is created), records each one's first
   heartbeat and its worker in the same transaction, and commits.

The next claimer waits on the lock until the new trial is committed, so it counts it. FAIL trials do not
count: a trial that crashed is replaced, a killed one is retried by its clone. WAITING trials are not counted
either, because `ask` pops them first: a clone only ever takes the place of the trial it retries.
PRUNED trials count as finished: they ran and were judged, and the budget is compute.

A claim is the hot path when trials are cheap (stage 2 on cached features), so it talks to the database in
few statements: reaping runs at most once per heartbeat interval per worker (a trial is reaped after the grace
period anyway), and the heartbeat and worker rows go into the claim's own transaction.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import optuna
import sqlalchemy as sa
from optuna.storages import RDBStorage, fail_stale_trials
from optuna.trial import TrialState

from studies.db import (
    Database,
    retry_callback,
    retry_transient,
    study_table,
    trial_heartbeats,
    trial_system_attrs,
    trials,
)
from studies.registry import WORKER_ATTR, locked_study, mark_done_if_finished, trial_counts
from studies.samplers import build_pruner, build_sampler
from studies.spec import StudySpec


@dataclass(frozen=True)
class ClaimedTrial:
    study_id: int
    spec: StudySpec
    study: optuna.Study
    trial: optuna.Trial

    @property
    def number(self) -> int:
        return self.trial.number

    @property
    def trial_id(self) -> int:
        return self.trial._trial_id


class LoadedStudies:
    """The Optuna studies one worker claims from, kept across claims.

    A sampler rebuilt for every claim would restart its random stream and propose the same first point
    each time; `seed_offset` keeps concurrent workers with one study seed from proposing identical points.
    """

    def __init__(self, db: Database, *, heartbeat_interval: int, grace_period: int, max_retry: int = 3,
                 seed_offset: int = 0) -> None:
        self.storage: RDBStorage = db.optuna_storage(heartbeat_interval=heartbeat_interval,
                                                     grace_period=grace_period, max_retry=max_retry)
        self.max_retry = max_retry
        self.reap_interval_s = heartbeat_interval
        self._seed_offset = seed_offset
        self._reaped_at: dict[int, float] = {}
        self._studies: dict[tuple[int, str], tuple[optuna.Study, StudySpec]] = {}

    def get(self, row: Any) -> tuple[optuna.Study, StudySpec]:
        # Keyed by name too: SQLite hands a deleted study's id to the next study created.
        key = (row.id, row.name)
        if key not in self._studies:
            spec = StudySpec.model_validate_json(row.spec_json)
            sampler = build_sampler(spec, self._seed_offset)
            study = optuna.load_study(study_name=row.name, storage=self.storage, sampler=sampler,
                                      pruner=build_pruner(spec))
            self._studies[key] = (study, spec)
        return self._studies[key]

    def reap_due(self, study_id: int) -> bool:
        """True at most once per heartbeat interval per study: then the caller reaps."""
        now = time.monotonic()
        if now - self._reaped_at.get(study_id, -float("inf")) < self.reap_interval_s:
            return False
        self._reaped_at[study_id] = now
        return True


def claim_next_trial(db: Database, *, study_ids: Sequence[int], studies: LoadedStudies,
                     worker_id: str) -> ClaimedTrial | None:
    """A RUNNING trial of the first study (in the order given) whose budget allows one more; None if none."""
    for study_id in study_ids:
        claimed = claim_trials(db, study_id=study_id, studies=studies, worker_id=worker_id, count=1)
        if claimed:
            return claimed[0]
    return None


def claim_trials(db: Database, *, study_id: int, studies: LoadedStudies, worker_id: str,
                 count: int) -> list[ClaimedTrial]:
    """Up to `count` RUNNING trials of one study, as many as its budget allows, claimed in one transaction."""
    return retry_transient(lambda: _claim_in(db, study_id, studies, worker_id, count),
                           what=f"claim trials of study {study_id}")


def _claim_in(db: Database, study_id: int, studies: LoadedStudies, worker_id: str,
              count: int) -> list[ClaimedTrial]:
    with locked_study(db, study_id) as (connection, row):
        if row is None or row.state != "active":
            return []
        study, spec = studies.get(row)
        if studies.reap_due(study_id):
            _reap(connection, study)
        counts = trial_counts(connection, [study_id])[study_id]
        allowed = min(count, row.n_trials - counts.finished - counts.running)
        trial_ids = _start_trials(study, connection, allowed) if allowed > 0 else []
        if trial_ids:
            _record_claims(connection, trial_ids, worker_id)
    if not trial_ids and counts.finished >= row.n_trials:
        with db.engine.begin() as connection:
            mark_done_if_finished(connection, study_id=study_id)
    return [ClaimedTrial(study_id=study_id, spec=spec, study=study, trial=_trial(study, trial_id))
            for trial_id in trial_ids]


def record_heartbeats(connection: sa.Connection, trial_ids: Sequence[int]) -> None:
    """Optuna's `record_heartbeat` in the caller's transaction (the claim wrote each trial's heartbeat row)."""
    connection.execute(trial_heartbeats.update().where(trial_heartbeats.c.trial_id.in_(trial_ids))
                       .values(heartbeat=sa.func.now()))


def _start_trials(study: optuna.Study, connection: sa.Connection, count: int) -> list[int]:
    """Ids of `count` trials set RUNNING: WAITING retries first, oldest first, then new trials.

    What `Study.ask` does, minus two costs that matter under the study's lock: its search for WAITING trials
    reads every trial changed since its last call, and it runs the sampler's relative sampling (for TPE, a
    read of the whole study), which `_trial` does after the lock is released.
    """
    waiting = connection.execute(sa.select(trials.c.trial_id)
                                 .where(trials.c.study_id == study._study_id, trials.c.state == TrialState.WAITING)
                                 .order_by(trials.c.trial_id).limit(count)).scalars().all()
    started = [trial_id for trial_id in waiting
               if study._storage.set_trial_state_values(trial_id, TrialState.RUNNING)]
    return started + [study._storage.create_new_trial(study._study_id) for _ in range(count - len(started))]


def _trial(study: optuna.Study, trial_id: int) -> optuna.Trial:
    study._thread_local.cached_all_trials = None  # as `ask` does: the sampler re-reads the trials once
    return optuna.Trial(study, trial_id)


def _record_claims(connection: sa.Connection, trial_ids: list[int], worker_id: str) -> None:
    """Each claimed trial's first heartbeat (Optuna reaps only trials that have one) and its worker, written
    before the lock is released; Optuna has committed the trials themselves already."""
    connection.execute(trial_heartbeats.insert().values(heartbeat=sa.func.now()),
                       [{"trial_id": trial_id} for trial_id in trial_ids])
    # A retry's clone inherits the failed trial's system attributes, this one among them: replace it.
    connection.execute(trial_system_attrs.delete().where(trial_system_attrs.c.trial_id.in_(trial_ids),
                                                         trial_system_attrs.c.key == WORKER_ATTR))
    connection.execute(trial_system_attrs.insert(), [{"trial_id": trial_id, "key": WORKER_ATTR,
                                                      "value_json": json.dumps(worker_id)}
                                                     for trial_id in trial_ids])


# ---------------------------------------------------------------------------------------------- reaping
def _reap(connection: sa.Connection, study: optuna.Study) -> None:
    _adopt_orphans(connection, study)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        fail_stale_trials(study)


def _adopt_orphans(connection: sa.Connection, study: optuna.Study) -> None:
    """Gives RUNNING trials that have no heartbeat row one stamped now, so the grace period applies to them.

    Such a trial was asked for by a process that died (or lost its connection) before its first heartbeat;
    Optuna never reaps a trial without a heartbeat row, so it would stay RUNNING forever. Claims write the
    first heartbeat under the study lock, which the caller holds, so no live claim is in that state now.
    The heartbeat goes through Optuna's connection: one more of ours would make the pool a deadlock.
    """
    no_heartbeat = ~sa.exists().where(trial_heartbeats.c.trial_id == trials.c.trial_id)
    orphans = connection.execute(sa.select(trials.c.trial_id).where(
        trials.c.study_id == study._study_id, trials.c.state == TrialState.RUNNING, no_heartbeat)).scalars()
    for trial_id in orphans.all():
        study._storage.record_heartbeat(trial_id)


# ---------------------------------------------------------------------------------------------- outcomes
def is_finished(db: Database, trial_id: int) -> bool:
    """Whether the trial left RUNNING (told, reaped, or deleted with its study): one column of one row."""
    with db.engine.connect() as connection:
        state = connection.execute(sa.select(trials.c.state).where(trials.c.trial_id == trial_id)).scalar()
    return state is None or state.is_finished()


def release_for_retry(db: Database, claimed: ClaimedTrial, *, max_retry: int) -> bool:
    """Fails an interrupted trial and queues a WAITING clone with its params; False if it was reaped."""
    def release() -> bool:
        with locked_study(db, claimed.study_id):
            storage = claimed.study._storage
            if storage.get_trial(claimed.trial_id).state != TrialState.RUNNING:
                return False  # reaped while it ran: the reaper queued its retry
            # FAIL first, clone second: dying between the two loses the lineage, never duplicates a run.
            storage.set_trial_state_values(claimed.trial_id, TrialState.FAIL)
            retry_callback(max_retry)(claimed.study, storage.get_trial(claimed.trial_id))
            return True

    return retry_transient(release, what=f"release trial {claimed.number} for retry")


def record_failure(db: Database, *, study_id: int, error: str, limit: int) -> bool:
    """Counts a trial that failed by exception; stops the study after `limit` in a row. True if it stopped."""
    with db.engine.begin() as connection:
        failures = connection.execute(
            study_table.update().where(study_table.c.id == study_id)
            .values(consecutive_failures=study_table.c.consecutive_failures + 1, updated_at=sa.func.now())
            .returning(study_table.c.consecutive_failures)).scalar_one_or_none()
        if failures is None or failures < limit:
            return False
        reason = f"stopped after {failures} trials in a row failed; last error: {error[:500]}"
        stopped = connection.execute(study_table.update()
                                     .where(study_table.c.id == study_id, study_table.c.state == "active")
                                     .values(state="stopped", stop_reason=reason))
    return stopped.rowcount > 0


def record_success(db: Database, *, study_id: int) -> None:
    with db.engine.begin() as connection:
        connection.execute(study_table.update()
                           .where(study_table.c.id == study_id, study_table.c.consecutive_failures > 0)
                           .values(consecutive_failures=0))
        mark_done_if_finished(connection, study_id=study_id)
