"""Faults during one study of real (tiny) trials: workers killed with SIGKILL at random points and the suite's
own PostgreSQL restarted. The study still ends with exactly its budget, no trial run twice, none failed by the
stage-1 cache; the faults are counted in the output (pytest -s shows them)."""

from __future__ import annotations

import random
import re
import time
from pathlib import Path

import pytest

from studies.store import registry
from studies.store.db import Database
from tests.integration.workers import (
    WorkerProcess,
    assert_budget_met_with_retries,
    create_study,
    trials_of,
    wait_for,
)
from tests.postgres import ThrowawayPostgres

pytestmark = [pytest.mark.postgres, pytest.mark.multiprocess, pytest.mark.restarts_postgres, pytest.mark.slow]

N_TRIALS, WORKERS, KILLS = 6, 2, 2
# One epoch of each stage on digits-lt and one cached view: a trial is well under a second once its backbone is
# cached; two stage-1 weight decays make two cache entries, written while workers die and the server restarts.
TINY = {"stage1.epochs": 1, "stage1.lr": 0.01, "stage2.epochs": 1, "stage2.feature_views": 1}
SPACE = {"stage1.weight_decay": {"type": "categorical", "choices": [5e-4, 5e-3]}}
# No worker may log a trial that failed by itself (studies.run.worker._handle_failure): the cache's errors would.
TRIAL_FAILED = re.compile(r"trial \d+ of study \d+ failed")


def test_sigkills_and_a_postgres_restart_during_a_study_leave_the_budget_exact(
        throwaway_postgres: ThrowawayPostgres, tmp_path: Path) -> None:
    url = throwaway_postgres.new_database_url()
    db = Database.connect(url)
    study_id = create_study(db, "faults", N_TRIALS, dataset="digits-lt", method="wb", fixed=TINY,
                            search_space=SPACE)
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    logs = tmp_path / "logs"
    logs.mkdir()
    started = 0

    def start_worker() -> WorkerProcess:
        nonlocal started
        started += 1
        return WorkerProcess(url, "faults", None, logs / f"worker-{started}.log", "--device", "cpu",
                             "--artifact-dir", str(tmp_path / "artifacts"), "--batch-trials", "1")

    workers = [start_worker() for _ in range(WORKERS)]
    finished = lambda: sum(t.state == "complete" for t in trials_of(db, study_id))  # noqa: E731
    wait_for(lambda: finished() >= 1, 300, "a first finished trial", workers)
    killed, restarts = 0, 0
    while killed < KILLS and finished() < N_TRIALS:
        time.sleep(rng.uniform(0.2, 1.5))  # a random point: claiming, training, caching, telling
        victim = rng.choice(workers)
        victim.process.kill()
        victim.process.wait(10)
        killed += 1
        workers[workers.index(victim)] = start_worker()
        if restarts == 0:
            throwaway_postgres.stop()
            time.sleep(1.0)
            throwaway_postgres.start()
            restarts += 1
    for worker in workers:
        assert worker.wait(300) == 0, worker.log()

    trials = trials_of(db, study_id)
    assert_budget_met_with_retries(trials, N_TRIALS)  # exactly n COMPLETE, no params completed twice
    worker_logs = [path.read_text(errors="replace") for path in sorted(logs.iterdir())]
    failed_by_a_trial = sum(len(TRIAL_FAILED.findall(log)) for log in worker_logs)
    assert failed_by_a_trial == 0, [log[-3000:] for log in worker_logs if TRIAL_FAILED.search(log)]
    assert registry.get_study(db, study_id=study_id).state == "done"
    print(f"\nfault run (seed {seed}): {killed} workers SIGKILLed, {restarts} PostgreSQL restart, "
          f"{started} worker processes; {sum(t.state == 'complete' for t in trials)} COMPLETE, "
          f"{sum(t.state == 'fail' for t in trials)} FAIL (each retried or replaced), 0 duplicates, "
          f"{failed_by_a_trial} failed by the cache or the trial itself")
    db.dispose()
