"""Admission control: how a worker claims a trial so that a study ends with exactly its budget of trials.

The budget is derived, not reserved: nothing is counted up or down, so nothing leaks when a worker dies.
A claim (`_claim`, one function) runs in one transaction under the study's lock (`registry.locked_study`):

1. lock: the study row (PostgreSQL `FOR UPDATE`) or its file lock (SQLite);
2. reap: RUNNING trials whose heartbeat is older than the grace period become FAIL, each with a WAITING clone
   (same params and lineage, Optuna's `RetryHeartbeatStaleTrialCallback`);
3. count the study's COMPLETE + PRUNED + RUNNING trials; only if that is below `n_trials`
4. create: start trials, a WAITING retry or queued trial before a new one;
5. heartbeat: each started trial's first heartbeat row;
6. record: each one's worker and the claim's token; then all of it commits at once (Optuna's own calls join
   the transaction: studies/store/storage.py), so no trial exists without its heartbeat and none is orphaned.

The next claimer waits on the lock until the claim is committed, so it counts the new trials. FAIL trials do not
count: a trial that crashed is replaced, a killed one is retried by its clone. WAITING trials are not counted
either, because a claim pops them first: a clone only ever takes the place of the trial it retries.
PRUNED trials count as finished: they ran and were judged, and the budget is compute.

Once the search budget is met, a study with confirmation hands out its confirmation runs the same way, under the
same lock, from its linked Optuna study (studies/store/confirmation.py).

A claim is retried after a transient error, and it is not idempotent: the token lets a retry detect that its
first attempt committed before the connection dropped, and take that attempt's trials.

A claim is the hot path when trials are cheap (stage 2 on cached features), so it talks to the database in
few statements: reaping runs at most once per heartbeat interval per worker (a trial is reaped after the grace
period anyway), and only a retry looks for its token.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import optuna
import sqlalchemy as sa
from optuna.trial import TrialState

from studies.definition.samplers import build_pruner, build_sampler
from studies.definition.spec import StudySpec
from studies.store import confirmation, storage
from studies.store.db import Database, describe, is_transient, retry_transient
from studies.store.registry import locked_study, mark_done_if_finished, mark_stopped, stored_spec, trial_counts
from studies.store.storage import WORKER_ATTR, trial_heartbeats, trial_system_attrs, trials
from studies.store.tables import study_table

CLAIM_ATTR = "tailtune_claim"  # trial system attr: the token of the claim that started the trial
FAILURE_ATTR = "tailtune_failure_counted"  # trial system attr: its failure is in the study's failures in a row

log = logging.getLogger(__name__)


class StudyUnloadableError(Exception):
    """A study's stored spec no longer validates or builds (written by an older tailtune, or by hand)."""


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
        return storage.trial_id(self.trial)


class LoadedStudies:
    """The Optuna studies one worker claims from, kept across claims.

    A sampler rebuilt for every claim would restart its random stream and propose the same first point
    each time; `seed_offset` keeps concurrent workers with one study seed from proposing identical points.
    """

    def __init__(self, db: Database, *, heartbeat_interval: int, grace_period: int, max_retry: int,
                 seed_offset: int = 0) -> None:
        self.storage = db.optuna_storage(heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                                         max_retry=max_retry)
        self.reap_interval_s = heartbeat_interval
        self._seed_offset = seed_offset
        self._reaped_at: dict[int, float] = {}
        self._samplers: dict[tuple[int, str], optuna.samplers.BaseSampler] = {}
        self._studies: dict[tuple[int, str], tuple[optuna.Study, StudySpec]] = {}
        self._linked: dict[tuple[int, str], optuna.Study] = {}

    def get(self, row: Any) -> tuple[optuna.Study, StudySpec]:
        """The study and its spec; StudyUnloadableError when its stored spec no longer loads or builds."""
        # Keyed by name too: SQLite hands a deleted study's id to the next study created.
        key = (row.id, row.name)
        if key not in self._studies:
            try:
                spec = stored_spec(row)
                sampler = self._samplers.setdefault(key, build_sampler(spec, self._seed_offset))
                study = optuna.load_study(study_name=row.name, storage=self.storage, sampler=sampler,
                                          pruner=build_pruner(spec))
            except Exception as error:
                if is_transient(error):  # the database, not the study: retried like any other claim
                    raise
                raise StudyUnloadableError(f"a worker cannot load study {row.name!r}: {describe(error)}") from error
            self._studies[key] = (study, spec)
        return self._studies[key]

    def linked(self, row: Any) -> optuna.Study | None:
        """The Optuna study holding the study's confirmation runs (studies/store/confirmation.py); None without."""
        if row.confirm_study_id is None:
            return None
        key = (row.id, row.name)
        if key not in self._linked:
            self._linked[key] = confirmation.load_linked(self.storage, row.name)
        return self._linked[key]

    def forget(self, study_id: int) -> None:
        """Drops a study's Optuna objects (their cache of trials may hold ones a rolled-back claim created); the
        sampler stays, so its random stream goes on rather than proposing the same points again."""
        for cached in (self._studies, self._linked):
            for key in [key for key in cached if key[0] == study_id]:
                del cached[key]

    def reap_due(self, study_id: int) -> bool:
        """True at most once per heartbeat interval per study: then the caller reaps."""
        now = time.monotonic()
        if now - self._reaped_at.get(study_id, -float("inf")) < self.reap_interval_s:
            return False
        self._reaped_at[study_id] = now
        return True


def claim_next_trial(db: Database, *, study_ids: Sequence[int], studies: LoadedStudies,
                     worker_id: str) -> ClaimedTrial | None:
    """A RUNNING trial of the first study (in the order given) whose budget allows one more; None if none.
    A study that cannot be loaded is stopped with the reason, and the next one is tried: one bad spec must not
    stop every worker that serves it."""
    for study_id in study_ids:
        try:
            claimed = claim_trials(db, study_id=study_id, studies=studies, worker_id=worker_id, count=1)
        except StudyUnloadableError as error:
            log.error("study %d stopped: %s", study_id, error)
            mark_stopped(db, study_id=study_id, reason=str(error))
            continue
        if claimed:
            return claimed[0]
    return None


def claim_trials(db: Database, *, study_id: int, studies: LoadedStudies, worker_id: str,
                 count: int) -> list[ClaimedTrial]:
    """Up to `count` RUNNING trials of one study, as many as its budget allows, claimed in one transaction.

    Retried on transient errors, every attempt with the same claim token: a retry whose first attempt
    committed (the reply lost with the connection) gets that attempt's trials back, so a lost reply neither
    claims more trials nor leaves the first ones running with no worker that knows them.
    """
    token, attempts = uuid.uuid4().hex, itertools.count()
    claimed = retry_transient(lambda: _claim(db, study_id=study_id, studies=studies, worker_id=worker_id,
                                             count=count, token=token, retried=next(attempts) > 0),
                              what=f"claim trials of study {study_id}")
    if claimed is None:
        return []
    study, spec, trial_ids = claimed
    return [ClaimedTrial(study_id=study_id, spec=spec, study=study, trial=storage.new_trial(study, trial_id))
            for trial_id in trial_ids]


def _claim(db: Database, *, study_id: int, studies: LoadedStudies, worker_id: str, count: int, token: str,
           retried: bool) -> tuple[optuna.Study, StudySpec, list[int]] | None:
    """One attempt at a claim: lock, reap, count, create, heartbeat, record, all in one transaction.

    Invariants, each holding when the transaction commits and the next claimer gets the lock:
    - COMPLETE + PRUNED + RUNNING trials never exceed `n_trials`: every claimer counts under the study's lock,
      after reaping, and the count includes what the previous holder committed;
    - every trial set RUNNING has its heartbeat row (Optuna reaps only trials that have one) and carries its
      worker and this claim's token: none is ever orphaned, and a retry finds what its first attempt claimed;
    - any step failing, Optuna's own calls included, leaves nothing written (`Storage.one_transaction`).
    None when the study is gone or not active.
    """
    storage = studies.storage
    try:
        with locked_study(db, study_id=study_id, storage=storage) as (connection, row):
            if row is None or row.state != "active":
                return None
            study, spec = studies.get(row)
            linked = studies.linked(row)
            for claimed_from, claimed_id in ((study, row.id), (linked, row.confirm_study_id)):
                earlier = _claimed_under(connection, study_id=claimed_id, token=token) if retried else []
                if claimed_from is not None and earlier:  # the first attempt committed and its reply was lost
                    return claimed_from, spec, earlier
            if studies.reap_due(study_id):
                for reaped in filter(None, (study, linked)):
                    storage.fail_and_retry(connection, study=reaped, trial_ids=storage.stale_trial_ids(study=reaped))
            counts = trial_counts(connection, study_ids=[study_id])[study_id]
            allowed = min(count, row.n_trials - counts.finished - counts.running)
            if allowed > 0:
                trial_ids = storage.start_trials(connection, study=study, count=allowed)
            elif linked is not None and counts.finished >= row.n_trials:
                # The search is over (finished trials fill the budget, so none runs): its answer is confirmed.
                trial_ids = confirmation.start_runs(connection, storage=storage, search=study, linked=linked, row=row,
                                                   spec=spec, count=count)
                study = linked
            else:
                trial_ids = []
            if not trial_ids:
                mark_done_if_finished(connection, study_id=study_id)
                return study, spec, []
            _first_heartbeats(connection, trial_ids=trial_ids)
            _record_claim(connection, trial_ids=trial_ids, worker_id=worker_id, token=token)
    except BaseException:
        studies.forget(study_id)
        raise
    return study, spec, trial_ids


def _claimed_under(connection: sa.Connection, *, study_id: int, token: str) -> list[int]:
    """RUNNING trials of the study that the claim with this token started (none unless it committed)."""
    tokened = sa.and_(trial_system_attrs.c.trial_id == trials.c.trial_id, trial_system_attrs.c.key == CLAIM_ATTR,
                      trial_system_attrs.c.value_json == json.dumps(token))
    return list(connection.execute(sa.select(trials.c.trial_id).join(trial_system_attrs, tokened)
                                   .where(trials.c.study_id == study_id, trials.c.state == TrialState.RUNNING)
                                   .order_by(trials.c.trial_id)).scalars())


def _first_heartbeats(connection: sa.Connection, *, trial_ids: list[int]) -> None:
    connection.execute(trial_heartbeats.insert().values(heartbeat=sa.func.now()),
                       [{"trial_id": trial_id} for trial_id in trial_ids])


def _record_claim(connection: sa.Connection, *, trial_ids: list[int], worker_id: str, token: str) -> None:
    """Each trial's worker and claim token, as trial system attrs."""
    # A retry's clone inherits the failed trial's system attributes, these among them: replace them.
    connection.execute(trial_system_attrs.delete().where(trial_system_attrs.c.trial_id.in_(trial_ids),
                                                         trial_system_attrs.c.key.in_([WORKER_ATTR, CLAIM_ATTR])))
    connection.execute(trial_system_attrs.insert(), [
        {"trial_id": trial_id, "key": key, "value_json": json.dumps(value)}
        for trial_id in trial_ids for key, value in ((WORKER_ATTR, worker_id), (CLAIM_ATTR, token))])


# ---------------------------------------------------------------------------------------------- outcomes
def is_finished(db: Database, *, trial_id: int) -> bool:
    """Whether the trial left RUNNING (told, reaped, or deleted with its study): one column of one row."""
    with db.engine.connect() as connection:
        trials = storage.trials
        state = connection.execute(sa.select(trials.c.state).where(trials.c.trial_id == trial_id)).scalar()
    return state is None or state.is_finished()


def release_for_retry(db: Database, *, studies: LoadedStudies, claimed: ClaimedTrial) -> bool:
    """Fails an interrupted trial and queues a WAITING clone with its params, in one transaction under the study's
    lock (a claimer never sees the slot free without the clone); False if it had left RUNNING meanwhile (reaped).
    A retry after a lost commit reply finds it FAIL and returns False: the hand-back happened, uncounted."""
    def release() -> bool:
        with locked_study(db, study_id=claimed.study_id, storage=studies.storage) as (connection, _):
            return bool(studies.storage.fail_and_retry(connection, study=claimed.study, trial_ids=[claimed.trial_id]))

    return retry_transient(release, what=f"release trial {claimed.number} for retry")


def record_failure(db: Database, *, study_id: int, trial_id: int, error: str, limit: int) -> bool:
    """Counts a trial that failed by exception; stops the study after `limit` in a row. True if this stopped it.

    Retried on transient errors. The trial is marked counted in the same transaction, so a retry whose first
    attempt committed (its reply lost with the connection) counts nothing twice.
    """
    def record() -> bool:
        with db.engine.begin() as connection:
            counted = connection.execute(sa.select(trial_system_attrs.c.trial_id).where(
                trial_system_attrs.c.trial_id == trial_id, trial_system_attrs.c.key == FAILURE_ATTR)).first()
            if counted is None:
                connection.execute(trial_system_attrs.insert().values(trial_id=trial_id, key=FAILURE_ATTR,
                                                                      value_json=json.dumps(True)))
                connection.execute(study_table.update().where(study_table.c.id == study_id).values(
                    consecutive_failures=study_table.c.consecutive_failures + 1, updated_at=sa.func.now()))
            return _stop_after_failures(connection, study_id=study_id, error=error, limit=limit)

    return retry_transient(record, what=f"record a failed trial of study {study_id}")


def _stop_after_failures(connection: sa.Connection, *, study_id: int, error: str, limit: int) -> bool:
    """Stops an active study with `limit` or more failures in a row; True if this call stopped it."""
    failures = connection.execute(sa.select(study_table.c.consecutive_failures)
                                  .where(study_table.c.id == study_id)).scalar()
    if failures is None or failures < limit:
        return False
    reason = f"stopped after {failures} trials in a row failed; last error: {error[:500]}"
    stopped = connection.execute(study_table.update()
                                 .where(study_table.c.id == study_id, study_table.c.state == "active")
                                 .values(state="stopped", stop_reason=reason))
    return stopped.rowcount > 0


def record_success(db: Database, *, study_id: int) -> None:
    """Starts the study's count of failures in a row over, and marks it done if its budget is met (idempotent,
    so retried on transient errors)."""
    def record() -> None:
        with db.engine.begin() as connection:
            connection.execute(study_table.update()
                               .where(study_table.c.id == study_id, study_table.c.consecutive_failures > 0)
                               .values(consecutive_failures=0))
            mark_done_if_finished(connection, study_id=study_id)

    retry_transient(record, what=f"record a finished trial of study {study_id}")
