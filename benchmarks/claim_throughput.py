"""Claims per second when 1, 4, 8 and 16 `tailtune worker` processes pull no-op trials from one study.

    python benchmarks/claim_throughput.py [--trials 300] [--workers 1 4 8 16]

For each worker count, in a fresh database on the local PostgreSQL (127.0.0.1:5432, trust auth) that it creates
and drops: start that many long-lived workers (`python -m tailtune.commands.worker --wait`, the deployment
form) with a no-op trial runner, wait until all have registered, create one study of `--trials` trials, wait
until its budget is met, then SIGTERM the workers. The rate is the trials over the span from the first trial's
start to the last one's completion (database timestamps), so process start-up is not counted. Duplicates are
trials beyond the budget, counted both as COMPLETE trials in the database and as trials the workers report
having run to the end (a trial claimed by two workers would count twice there); must be 0.
Ends with `claims_per_s_16: X` (the last worker count's rate).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from tempfile import TemporaryDirectory

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/<name>.py` from any directory

import optuna
import sqlalchemy as sa
from optuna.trial import TrialState

from benchmarks._common import parse_args, scratch_postgres_database, table
from studies.definition.space import sample_params
from studies.definition.spec import StudySpec, parse_spec
from studies.store import registry
from studies.store.db import Database
from studies.store.tables import worker_table

REPO = Path(__file__).resolve().parents[1]
STUDY = "claims"


def noop_runner(trial: optuna.Trial, spec: StudySpec, context: object) -> list[float]:
    """A trial that costs nothing but its sampling: what is left is the claim and report path."""
    params = sample_params(trial, spec.resolved_space())
    return [float(sum(v for v in params.values() if isinstance(v, float)))] * len(spec.objectives)


def start_workers(url: str, count: int, scratch: Path) -> list[subprocess.Popen]:
    """Worker processes whose output goes to scratch/worker-N.out and .err (a pipe could fill and block them)."""
    command = [sys.executable, "-m", "tailtune.commands.worker", "--storage", url, "--wait",
               "--artifact-dir", str(scratch), "--trial-runner", "benchmarks.claim_throughput:noop_runner"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    processes = []
    for index in range(count):
        with open(scratch / f"worker-{index}.out", "w") as out, open(scratch / f"worker-{index}.err", "w") as err:
            processes.append(subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=err))
    return processes


def wait_until(condition: Callable[[], bool], what: str, processes: list[subprocess.Popen], scratch: Path,
               timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        failed = [index for index, p in enumerate(processes) if p.poll() is not None]
        if failed:
            log = (scratch / f"worker-{failed[0]}.err").read_text()[-2000:]
            raise RuntimeError(f"worker {failed[0]} exited early:\n{log}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what} after {timeout_s:.0f} s")
        time.sleep(0.2)


def trials_run_by_workers(scratch: Path, count: int) -> int:
    """Trials the workers ran to the end, from their exit lines ("N complete, ... M late"): a trial claimed twice
    would be counted twice here."""
    total = 0
    for index in range(count):
        summary = re.search(r"(\d+) complete, .* (\d+) late", (scratch / f"worker-{index}.out").read_text())
        if summary is None:
            raise RuntimeError(f"worker {index} printed no summary line; see its log")
        total += int(summary[1]) + int(summary[2])
    return total


def registered_workers(db: Database) -> int:
    with db.engine.connect() as connection:
        return connection.execute(sa.select(sa.func.count()).select_from(worker_table)).scalar_one()


def completed(url: str) -> list[optuna.trial.FrozenTrial]:
    trials = optuna.load_study(study_name=STUDY, storage=url).get_trials(deepcopy=False)
    return [t for t in trials if t.state == TrialState.COMPLETE]


def measure(workers: int, trials: int) -> tuple[float, int, int]:
    """(claims/s, duplicates, trials not COMPLETE) for one worker count on a fresh database."""
    with scratch_postgres_database() as url, TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        db = Database.connect(url)  # creates the schema before the workers race to
        processes = start_workers(url, workers, scratch)
        try:
            wait_until(lambda: registered_workers(db) == workers, "the workers to register", processes, scratch)
            registry.create_study(db, spec=parse_spec({"name": STUDY, "n_trials": trials, "sampler": "random"}))
            wait_until(lambda: len(completed(url)) >= trials, "the budget to be met", processes, scratch)
        finally:
            for process in processes:
                process.send_signal(signal.SIGTERM)
            for process in processes:
                process.wait(timeout=60)
        done = completed(url)
        everything = optuna.load_study(study_name=STUDY, storage=url).get_trials(deepcopy=False)
        ran = trials_run_by_workers(scratch, workers)
        db.dispose()
    span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    duplicates = max(len(done), ran) - trials
    return len(done) / span, duplicates, len(everything) - len(done)


# --tiny: a run of seconds, made by the test suite
TINY = {"trials": 6, "workers": [2]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4, 8, 16])
    args = parse_args(parser, argv, tiny=TINY)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows, rates = [], {}
    for workers in args.workers:
        rates[workers], duplicates, not_complete = measure(workers, args.trials)
        rows.append([workers, f"{rates[workers]:.1f}", duplicates, not_complete])
    print(f"{args.trials} no-op trials per study, PostgreSQL at 127.0.0.1:5432, {os.cpu_count()} cores")
    print(table(["workers", "claims/s", "duplicates", "trials not COMPLETE"], rows))
    print(f"claims_per_s_{args.workers[-1]}: {rates[args.workers[-1]]:.1f}")


if __name__ == "__main__":
    main()
