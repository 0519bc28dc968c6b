"""`tailtune worker` processes for the integration tests, and the queries their assertions need."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from studies.definition.records import TrialRecord
from studies.definition.spec import parse_spec
from studies.store import registry
from studies.store.db import Database
from studies.store.workers import list_workers

REPO = Path(__file__).resolve().parents[2]
# `tailtune worker` itself, started as a module so that a test does not wait for the other commands' imports.
TAILTUNE_WORKER = [sys.executable, "-m", "tailtune.commands.worker"]
HEARTBEAT_S, GRACE_S = 1, 3
# Several workers share two cores here: one math thread each keeps them from thrashing.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class WorkerProcess:
    """One `tailtune worker` subprocess, its log in a file (shown when an assertion fails)."""

    def __init__(self, url: str, study: str, runner: str | None, log_path: Path, *extra: str) -> None:
        command = [*TAILTUNE_WORKER, "--storage", url, "--study", study,
                   "--heartbeat-interval", str(HEARTBEAT_S), "--grace-period", str(GRACE_S), *extra]
        if runner is not None:
            command += ["--trial-runner", f"tests.trial_runners:{runner}"]
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                            env={**os.environ, "PYTHONPATH": str(REPO), **ONE_THREAD})

    @property
    def pid(self) -> int:
        return self.process.pid

    def signal(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout_s: float, state: Callable[[], object] | None = None) -> int:
        """Its exit code; past the timeout, an AssertionError with its threads' stacks, its log and `state()`
        (what the test's database holds)."""
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGUSR1)  # its threads' stacks, into the log shown below
            time.sleep(1)
            self.process.kill()
            shown = "" if state is None else f"\nstate: {state()}"
            raise AssertionError(f"worker {self.pid} still ran after {timeout_s} s; log:\n{self.log()}{shown}") \
                from None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-12000:]


def start_workers(url: str, study: str, runner: str | None, tmp_path: Path, count: int,
                  *extra: str) -> list[WorkerProcess]:
    return [WorkerProcess(url, study, runner, tmp_path / f"worker-{i}.log", *extra) for i in range(count)]


def create_study(db: Database, name: str, n_trials: int, **fields: object) -> int:
    spec = parse_spec({"name": name, "n_trials": n_trials, "sampler": "random", "confirm": None, **fields})
    return registry.create_study(db, spec=spec).id


def trials_of(db: Database, study_id: int) -> list[TrialRecord]:
    return registry.list_trials(db, study_id=study_id, offset=0, limit=10_000).items


def worker_pid_of(db: Database, trial: TrialRecord) -> int | None:
    pids = {w.id: w.pid for w in list_workers(db)}
    return pids.get(trial.worker or "")


def wait_for(condition: Callable[[], object], timeout_s: float, what: str,
             workers: Sequence[WorkerProcess] = ()) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if found := condition():
            return found
        for worker in workers:
            if worker.process.poll() is not None:
                raise AssertionError(f"worker {worker.pid} exited with {worker.process.returncode} while "
                                     f"waiting for {what}; log:\n{worker.log()}")
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def running_trial_of(db: Database, study_id: int, pid: int) -> TrialRecord | None:
    """A trial the worker with this pid is running right now, if any."""
    running = [t for t in trials_of(db, study_id) if t.state == "running"]
    return next((t for t in running if worker_pid_of(db, t) == pid), None)


def assert_budget_met_with_retries(trials: list[TrialRecord], n_trials: int) -> None:
    """Exactly n COMPLETE, nothing RUNNING or WAITING, every failed trial retried once with its params.

    A trial interrupted while it sampled has only some params; its retry keeps those and samples the rest.
    """
    complete = [t for t in trials if t.state == "complete"]
    assert len(complete) == n_trials, [(t.number, t.state) for t in trials]
    assert not [t for t in trials if t.state in ("running", "waiting")]
    distinct_params = {json.dumps(t.params, sort_keys=True) for t in complete}
    assert len(distinct_params) == n_trials, "one claim's params were completed twice"
    by_number = {t.number: t for t in trials}
    retried = [t.retried_from for t in complete if t.retried_from is not None]
    assert len(retried) == len(set(retried)), "one failed trial was completed twice"
    for number in retried:
        assert by_number[number].state == "fail"
        retry = next(t for t in complete if t.retried_from == number)
        assert by_number[number].params.items() <= retry.params.items()
