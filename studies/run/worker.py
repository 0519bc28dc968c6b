"""The worker loop: claim a trial, run it, tell Optuna the outcome, until the studies' budgets are met.

    tailtune worker --storage postgresql://postgres@db/tailtune --study wb-digits

A worker heartbeats its trials and its own row (`tailtune_worker`) from a thread with its own connection, so
a long training step never looks like a dead worker (optuna #4234). Before every claim it reaps trials whose
heartbeat is older than the grace period (studies/store/claims.py). On SIGTERM it lets the current trial finish
for `stop_timeout_s`, then interrupts it at the next epoch boundary, fails it with a queued retry, exits 0.

Stage-2 trials that share a cached backbone cost milliseconds each; the objective may claim up to
`batch_trials - 1` more trials of the same study while it runs one (`RunContext.claim_more`) and train their
heads in one batched pass. Every claimed trial is heartbeated, told, or handed back like a lone one.

A trial that waits for a backbone another worker is training does not keep its worker idle: meanwhile the worker
claims and runs a trial of any study it serves (`_Worker._run_meanwhile`, one level deep), so a pool serving the
studies of a comparison, whose method studies share backbones, keeps every device busy while work is left.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState
from pydantic import BaseModel, Field

from studies.definition.spec import StudySpec
from studies.run.settings import WorkerSettings
from studies.store import baselines, claims, comparisons, registry, storage, workers
from studies.store.db import Database, describe, is_transient, retry_transient
from studies.store.workers import WorkerState

if TYPE_CHECKING:
    from studies.artifacts.cache import Stage1Cache

log = logging.getLogger(__name__)


class WorkerSummary(BaseModel):
    worker_id: str
    completed: int = 0
    pruned: int = 0
    failed: int = Field(0, description="trials whose runner raised (replaced by new trials)")
    interrupted: int = Field(0, description="trials failed by SIGTERM or a database error, queued for retry")
    late_tells: int = Field(0, description="results dropped because the trial was reaped while it ran")
    exit_reason: str = ""


class WorkerOutageError(RuntimeError):
    """The database stayed unreachable for longer than `outage_timeout_s`."""


@dataclass
class RunContext:
    """What a trial runner gets besides its trial: a stop signal to poll, the shared stage-1 cache, a way
    to claim more trials of the same study to run alongside it (at most `batch_limit` in all), and a way to fit
    the study's simple baseline if no worker has (`fit_baseline_once(fit)`: `fit` returns what the store keeps,
    studies/store/baselines.py)."""

    should_stop: Callable[[], bool]
    cache_factory: Callable[[], Stage1Cache] = field(repr=False)
    claim_more: Callable[[int], list[optuna.Trial]] = field(repr=False)
    batch_limit: int
    fit_baseline_once: Callable[[Callable[[], dict[str, Any]]], None] = field(repr=False)

    @cached_property
    def cache(self) -> Stage1Cache:
        return self.cache_factory()


# A trial's outcome: its objective values, or the exception that ended it (optuna.TrialPruned: pruned).
Outcome = Sequence[float] | Exception
# Runs one trial; returns its values.
TrialRunner = Callable[[optuna.Trial, StudySpec, RunContext], Sequence[float]]
# Runs one trial and those it claimed through `context.claim_more`; returns their outcomes in claim order.
BatchRunner = Callable[[optuna.Trial, StudySpec, RunContext], list[Outcome]]


def one_at_a_time(runner: TrialRunner) -> BatchRunner:
    """A BatchRunner that never claims more: for runners written for one trial."""
    return lambda trial, spec, context: [runner(trial, spec, context)]


def objective_runner(trial: optuna.Trial, spec: StudySpec, context: RunContext) -> list[Outcome]:
    """The real objective: trains the sampled configuration(s) (studies/run/objective.py)."""
    # Imported here: torch and the trainer take seconds to import, which `study status` should not pay.
    from studies.run.objective import run_trials

    return run_trials(trial, spec, context)


def run_worker(db: Database, *, study_names: list[str] | None, settings: WorkerSettings, artifact_dir: Path,
               runner: BatchRunner | None = None, data_roots: Sequence[Path] | None = None) -> WorkerSummary:
    """Runs trials of the named studies (all active ones when None) until their budgets are met or it is
    stopped; raises StudyNotFoundError for an unknown name before it claims anything. `artifact_dir` holds the
    stage-1 cache the workers of one machine share. With `data_roots` (the worker's TAILTUNE_DATA_ROOTS), every
    data folder and file a trial reads must lie under one of them, whatever the API checked at creation."""
    worker = _Worker(db, settings, artifact_dir, runner or objective_runner,
                     tuple(data_roots) if data_roots is not None else None)
    study_ids = None if study_names is None else [registry.study_id_by_name(db, name=name)
                                                  for name in study_names]
    with worker.registered(), worker.signals_handled():
        worker.run(study_ids)
    return worker.summary


# After SIGTERM a trial stops at its next epoch boundary once the stop timeout has passed. One that is not back
# this much later (a long epoch, a wait for another worker's stage-1 training, a hung call) is handed back from a
# thread and the process exits, so SIGTERM to exit takes the stop timeout plus about this, whatever the trial does.
STOP_MARGIN_S = 1.0


class _StopFlag:
    """Set by SIGTERM/SIGINT; the current trial may run on for `timeout_s` before it must stop."""

    def __init__(self, timeout_s: float) -> None:
        self.event = threading.Event()
        self._timeout_s = timeout_s
        self._requested_at: float | None = None

    def request(self, signum: int, frame: FrameType | None = None) -> None:
        if self._requested_at is None:
            log.warning("got %s: finishing the current trial for up to %.1f s, then exiting",
                        signal.Signals(signum).name, self._timeout_s)
            self._requested_at = time.monotonic()
        self.event.set()

    @property
    def requested(self) -> bool:
        return self._requested_at is not None

    def trial_must_stop(self) -> bool:
        return self._requested_at is not None and time.monotonic() - self._requested_at >= self._timeout_s


class _Heartbeat(threading.Thread):
    """Records the current trials' heartbeats and the worker's row in one transaction, on the side engine."""

    def __init__(self, db: Database, worker_id: str, interval_s: int) -> None:
        super().__init__(name="tailtune-heartbeat", daemon=True)
        self._db = db
        self._worker_id = worker_id
        self._interval_s = interval_s
        self._stopped = threading.Event()
        self.current: list[claims.ClaimedTrial] = []
        self.state: WorkerState = "idle"

    def run(self) -> None:
        while not self._stopped.wait(self._interval_s):
            self.beat()

    def beat(self) -> None:
        current = self.current
        first = current[0] if current else None
        try:
            workers.beat(self._db, worker_id=self._worker_id, state=self.state,
                         trial_ids=[claimed.trial_id for claimed in current],
                         current_study_id=first.study_id if first else None,
                         current_trial_number=first.number if first else None)
        except Exception as error:  # a missed beat is survivable; the grace period covers a few of them
            log.warning("heartbeat failed: %s", describe(error))

    def stop(self) -> None:
        """Stops beating and marks the worker exited."""
        self._stopped.set()
        self.join()
        self.state, self.current = "exited", []
        self.beat()


class _Worker:
    def __init__(self, db: Database, settings: WorkerSettings, artifact_dir: Path, runner: BatchRunner,
                 data_roots: tuple[Path, ...] | None) -> None:
        self.db, self.settings, self.artifact_dir, self.runner = db, settings, artifact_dir, runner
        self.data_roots = data_roots
        self.worker_id = uuid.uuid4().hex
        self.summary = WorkerSummary(worker_id=self.worker_id)
        self.stop = _StopFlag(settings.stop_timeout_s)
        self.studies = claims.LoadedStudies(db, heartbeat_interval=settings.heartbeat_interval,
                                            grace_period=settings.grace_period, max_retry=settings.max_retry,
                                            seed_offset=int(self.worker_id[:6], 16))
        self.heartbeat = _Heartbeat(db, self.worker_id, settings.heartbeat_interval)
        self._outage_since: float | None = None
        self._open: list[int] = []
        self._open_read_at = -float("inf")
        self._cache: Stage1Cache | None = None
        self._baselines_checked: set[int] = set()
        self._exiting = threading.Event()
        self._study_ids: list[int] | None = None
        self._running_meanwhile = False

    # ------------------------------------------------------------------------------------------ lifecycle
    @contextlib.contextmanager
    def registered(self) -> Iterator[None]:
        workers.register_worker(self.db, worker_id=self.worker_id, host=socket.gethostname(), pid=os.getpid(),
                                heartbeat_interval_s=self.settings.heartbeat_interval)
        self.heartbeat.start()
        try:
            yield
        finally:
            self._exiting.set()
            self.heartbeat.stop()
            log.info("worker %s exits: %s", self.worker_id, self.summary.exit_reason)

    @contextlib.contextmanager
    def signals_handled(self) -> Iterator[None]:
        if not self.settings.handle_signals or threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self.stop.requested:
            threading.Thread(target=self._enforce_stop_timeout, name="tailtune-stop-timeout", daemon=True).start()
        self.stop.request(signum, frame)

    def _enforce_stop_timeout(self) -> None:
        """Hands back the trials still running `stop_timeout_s + STOP_MARGIN_S` after the signal and ends the
        process (exit 0, as a worker that stopped by itself); nothing to do when the loop has exited by then."""
        if self._exiting.wait(self.settings.stop_timeout_s + STOP_MARGIN_S):
            return
        for claimed in list(self.heartbeat.current):
            try:
                self._hand_back(claimed, f"still running {self.settings.stop_timeout_s:g} s after the stop signal")
            except Exception as error:  # the reaper retries it after the grace period instead
                log.warning("could not hand back trial %d: %s", claimed.number, describe(error))
        self.heartbeat.stop()
        log.warning("worker %s exits: the stop timeout passed with a trial running; %d handed back",
                    self.worker_id, self.summary.interrupted)
        logging.shutdown()
        os._exit(0)

    # ------------------------------------------------------------------------------------------ loop
    def run(self, study_ids: list[int] | None) -> None:
        self._study_ids = study_ids
        while not self.stop.requested:
            try:
                if not self._step():
                    self.summary.exit_reason = "every study's budget is met or the study was stopped"
                    return
                self._outage_since = None
            except Exception as error:
                self._survive_outage(error)
        self.summary.exit_reason = "stopped by signal"

    def _step(self) -> bool:
        """Claims and runs one trial, or waits while others hold the rest of the budget; False when done."""
        targets, from_memory = self._open_studies()
        if not targets:
            if self.settings.wait_for_studies:
                self.stop.event.wait(self.settings.poll_interval_s)
            return self.settings.wait_for_studies
        claimed = claims.claim_next_trial(self.db, study_ids=targets, studies=self.studies,
                                          worker_id=self.worker_id)
        if claimed is None:
            self._open = []  # re-read: the study may be done, stopped or deleted
            if not from_memory:  # a list remembered from earlier is checked again at once, without waiting
                self.stop.event.wait(self.settings.poll_interval_s)
        elif self.stop.requested:  # signalled while it claimed: hand the trial back rather than start it
            self._hand_back(claimed, "the worker was asked to stop")
        else:
            self._run_batch(claimed)
        return True

    def _open_studies(self) -> tuple[list[int], bool]:
        """`registry.open_study_ids`, re-read at most once per poll interval while claims succeed (a claim
        re-checks its study under the lock anyway); also says whether the list is that remembered one."""
        fresh = time.monotonic() - self._open_read_at < self.settings.poll_interval_s
        if fresh and self._open:
            return self._open, True
        if self._study_ids is None:  # a worker serving every study starts a comparison's next studies
            retry_transient(lambda: comparisons.advance(self.db), what="start comparisons' next studies")
        self._open = registry.open_study_ids(self.db, among=self._study_ids)
        self._open_read_at = time.monotonic()
        return self._open, False

    def _survive_outage(self, error: Exception) -> None:
        if not is_transient(error):
            raise error
        now = time.monotonic()
        self._outage_since = self._outage_since or now
        if now - self._outage_since > self.settings.outage_timeout_s:
            limit = self.settings.outage_timeout_s
            raise WorkerOutageError(f"the database was unreachable for over {limit:.0f} s; "
                                    f"last error: {describe(error)}") from error
        log.warning("database unavailable (%s); trying again", describe(error))
        self.stop.event.wait(self.settings.poll_interval_s)

    # ------------------------------------------------------------------------------------------ one batch
    def _run_batch(self, first: claims.ClaimedTrial) -> None:
        log.info("worker %s runs trial %d of study %d", self.worker_id, first.number, first.study_id)
        waiting = self.heartbeat.current  # trials that wait for a backbone while this batch runs meanwhile
        batch = [first]
        self.heartbeat.current, self.heartbeat.state = waiting + batch, "running"

        def claim_more(count: int) -> list[optuna.Trial]:
            room = self.settings.batch_trials - len(batch)
            if self.stop.requested or room <= 0:
                return []
            more = claims.claim_trials(self.db, study_id=first.study_id, studies=self.studies,
                                       worker_id=self.worker_id, count=min(count, room))
            batch.extend(more)
            self.heartbeat.current = waiting + batch
            return [claimed.trial for claimed in more]

        context = RunContext(should_stop=self.stop.trial_must_stop, cache_factory=self._stage1_cache,
                             claim_more=claim_more, batch_limit=self.settings.batch_trials,
                             fit_baseline_once=lambda fit: self._fit_baseline_once(first.study_id, fit))
        try:
            outcomes: list[Outcome] = list(self.runner(first.trial, first.spec, context))
            if len(outcomes) != len(batch):
                raise RuntimeError(f"the trial runner returned {len(outcomes)} outcomes for {len(batch)} trials")
        except Exception as error:  # the whole batch shares its runner's fate
            outcomes = [error] * len(batch)
        try:
            for claimed, outcome in zip(batch, outcomes, strict=True):
                self._settle(claimed, outcome)
        finally:
            self.heartbeat.current = waiting
            self.heartbeat.state = "running" if waiting else "stopping" if self.stop.requested else "idle"

    def _run_meanwhile(self) -> bool:
        """While a trial waits for a backbone that another worker trains: claims and runs one trial of any study
        this worker serves, the waiting trial heartbeated all along; False when there was none to run. One level
        deep: a trial run meanwhile that waits in turn just waits. Any error is the trial's run meanwhile, never
        the waiting trial's: it is logged, and a trial left RUNNING is reaped and retried."""
        if self._running_meanwhile or self.stop.requested:
            return False
        self._running_meanwhile = True
        try:
            targets, _ = self._open_studies()
            claimed = claims.claim_next_trial(self.db, study_ids=targets, studies=self.studies,
                                              worker_id=self.worker_id) if targets else None
            if claimed is None:
                return False
            log.info("worker %s: a trial waits for a backbone another worker trains; meanwhile", self.worker_id)
            self._run_batch(claimed)
            return True
        except Exception as error:
            log.warning("a trial run while another waited failed: %s", describe(error))
            return False
        finally:
            self._running_meanwhile = False

    def _settle(self, claimed: claims.ClaimedTrial, outcome: Outcome) -> None:
        if isinstance(outcome, optuna.TrialPruned):
            self._finish(claimed, None, TrialState.PRUNED)
        elif isinstance(outcome, Exception):
            self._handle_failure(claimed, outcome)
        elif len(outcome) != len(claimed.spec.objectives):
            self._handle_failure(claimed, ValueError(
                f"the trial runner returned {len(outcome)} values for {len(claimed.spec.objectives)} "
                f"objectives {claimed.spec.objectives}"))
        else:
            self._finish(claimed, list(outcome), None)

    def _finish(self, claimed: claims.ClaimedTrial, values: list[float] | None,
                state: TrialState | None) -> None:
        told = self._tell(claimed, values, state)
        if told in (TrialState.COMPLETE, TrialState.PRUNED):
            self.summary.completed += told == TrialState.COMPLETE
            self.summary.pruned += told == TrialState.PRUNED
            claims.record_success(self.db, study_id=claimed.study_id)
        elif told == TrialState.FAIL:  # values Optuna cannot store (NaN): the trial's own failure
            self._count_failure(claimed, f"trial {claimed.number} returned values Optuna rejects: {values}")

    def _handle_failure(self, claimed: claims.ClaimedTrial, error: Exception) -> None:
        if self.stop.trial_must_stop() or is_transient(error):
            # Not the trial's fault: run the same params again, and do not count it towards the failure limit.
            self._hand_back(claimed, describe(error))
            return
        if isinstance(error, optuna.exceptions.UpdateFinishedTrialError):
            # Its results could not be stored because it was reaped while it ran (its heartbeats lapsed in an
            # outage): a late tell, not a failure of the trial; the reaper queued its retry.
            self._dropped_late(claimed)
            return
        log.error("trial %d of study %d failed", claimed.number, claimed.study_id, exc_info=error)
        if self._tell(claimed, None, TrialState.FAIL) == TrialState.FAIL:
            self._count_failure(claimed, f"{type(error).__name__}: {describe(error)}")

    def _hand_back(self, claimed: claims.ClaimedTrial, reason: str) -> None:
        log.warning("trial %d interrupted (%s); queued for retry", claimed.number, reason)
        if claims.release_for_retry(self.db, studies=self.studies, claimed=claimed):
            self.summary.interrupted += 1

    def _count_failure(self, claimed: claims.ClaimedTrial, message: str) -> None:
        self.summary.failed += 1
        limit = self.settings.max_consecutive_failures
        if claims.record_failure(self.db, study_id=claimed.study_id, trial_id=claimed.trial_id, error=message,
                                 limit=limit):
            log.error("study %d stopped: %d trials failed in a row; last: %s", claimed.study_id, limit,
                      message)

    def _tell(self, claimed: claims.ClaimedTrial, values: list[float] | None,
              state: TrialState | None) -> TrialState | None:
        """Stores the outcome; None when the trial was already finished, i.e. reaped while it ran."""
        def tell() -> TrialState:
            # Optuna refuses a trial that is no longer RUNNING, so no check of ours comes first.
            return storage.tell(claimed.study, claimed.trial, values, state)

        try:
            told = retry_transient(tell, deadline_s=self.settings.outage_timeout_s,
                                   what=f"tell trial {claimed.number}")
        except (optuna.exceptions.UpdateFinishedTrialError, KeyError):
            told = None  # reaped between Optuna's read and its write, or the study was deleted meanwhile
        except ValueError:  # "Cannot tell a FAIL trial": reaped before Optuna's read (or a retried tell's
            # first attempt had committed); any other ValueError is a real error
            if not claims.is_finished(self.db, trial_id=claimed.trial_id):
                raise
            told = None
        if told is None:
            self._dropped_late(claimed)
        return told

    def _dropped_late(self, claimed: claims.ClaimedTrial) -> None:
        self.summary.late_tells += 1
        log.warning("trial %d had been finished elsewhere (reaped after its heartbeat lapsed, or deleted); "
                    "this result is dropped and its retry runs the same params again", claimed.number)

    def _fit_baseline_once(self, study_id: int, fit: Callable[[], dict[str, Any]]) -> None:
        """Fits and stores the study's baseline when this worker wins its claim; asks once per study. A fit that
        raises is stored as failed with its message: the baseline is a comparison, never a reason to fail a trial."""
        if study_id in self._baselines_checked:
            return
        self._baselines_checked.add(study_id)
        if not baselines.claim_baseline(self.db, study_id=study_id, worker_id=self.worker_id):
            return
        log.info("worker %s fits the baseline of study %d", self.worker_id, study_id)
        try:
            result = fit()
        except Exception as error:
            log.warning("the baseline of study %d failed: %s", study_id, describe(error), exc_info=error)
            result = {"state": "failed", "reason": f"{type(error).__name__}: {describe(error)}"}
        baselines.store_baseline(self.db, study_id=study_id, baseline=result)

    def _stage1_cache(self) -> Stage1Cache:
        from studies.artifacts.cache import Stage1Cache  # torch: see objective_runner
        from trainers.config import RunOptions
        from trainers.device import resolve_runtime

        if self._cache is None:
            runtime = resolve_runtime(RunOptions(device=self.settings.device, data_roots=self.data_roots,
                                                 stage1_processes=self.settings.stage1_processes,
                                                 tf32=self.settings.tf32))
            self._cache = Stage1Cache(self.artifact_dir, self.db.named_lock, runtime, meanwhile=self._run_meanwhile)
        return self._cache
