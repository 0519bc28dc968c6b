"""Claims per second when 1, 4, 8 and 16 `tailtune worker` processes pull no-op trials from one study.

    python benchmarks/claim_throughput.py [--trials 300] [--workers 1 4 8 16]

Runs against the local PostgreSQL (127.0.0.1:5432, trust auth) in a database it creates and drops. The rate is
the study's trials over the span from the first trial's start to the last one's completion (process start-up
excluded); duplicates are COMPLETE trials beyond the budget (must be 0). Ends with `claims_per_s_16: X`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import optuna

from benchmarks._common import scratch_postgres_database
from studies import registry
from studies.db import Database
from studies.space import sample_params
from studies.spec import StudySpec, parse_spec

REPO = Path(__file__).resolve().parents[1]


def noop_runner(trial: optuna.Trial, spec: StudySpec, context: object) -> list[float]:
    """A trial that costs nothing but its sampling: what is left is the claim and report path."""
    params = sample_params(trial, spec.resolved_space())
    return [float(sum(v for v in params.values() if isinstance(v, float)))] * len(spec.objectives)


def measure(workers: int, trials: int) -> tuple[float, int]:
    with scratch_postgres_database() as url:
        db = Database.connect(url)
        registry.create_study(db, spec=parse_spec({"name": "claims", "n_trials": trials, "sampler": "random"}))
        command = [sys.executable, "-m", "tailtune.commands.worker", "--storage", url, "--study", "claims",
                   "--trial-runner", "benchmarks.claim_throughput:noop_runner"]
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
        processes = [subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL) for _ in range(workers)]
        for process in processes:
            process.wait(timeout=600)
        done = [t for t in optuna.load_study(study_name="claims", storage=url).trials
                if t.state == optuna.trial.TrialState.COMPLETE]
        span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
        db.dispose()
    return len(done) / span, len(done) - trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4, 8, 16])
    args = parser.parse_args()
    print(f"{args.trials} no-op trials per run, PostgreSQL at 127.0.0.1:5432, {os.cpu_count()} cores")
    print(f"{'workers':>7} {'claims/s':>9} {'duplicates':>10}")
    rates = {}
    for workers in args.workers:
        rates[workers], duplicates = measure(workers, args.trials)
        print(f"{workers:>7} {rates[workers]:>9.1f} {duplicates:>10}")
    print(f"claims_per_s_{args.workers[-1]}: {rates[args.workers[-1]]:.1f}")


if __name__ == "__main__":
    main()
