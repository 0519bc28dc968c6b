"""The same fixed-cost study run by raw in-process Optuna vs through tailtune (REST + PostgreSQL + worker).

    python benchmarks/service_overhead.py [--trials 10] [--trial-seconds 1.0]

tailtune's path: POST /studies to the FastAPI app, a worker claiming each trial under the study's row lock with
heartbeats, results read back with GET /studies/{id}/trials; PostgreSQL at 127.0.0.1:5432 in a database this
script creates and drops. Ends with `overhead_ratio: X` (tailtune wall time / raw Optuna wall time).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import optuna
from fastapi.testclient import TestClient

from benchmarks._common import scratch_postgres_database
from service.core.config import Settings
from service.main import create_app
from studies.space import sample_params
from studies.spec import StudySpec, parse_spec
from studies.worker import WorkerSettings, run_worker


def raw_optuna(spec: StudySpec, seconds: float) -> float:
    def objective(trial: optuna.Trial) -> float:
        sample_params(trial, spec.resolved_space())
        time.sleep(seconds)
        return 0.0

    started = time.perf_counter()
    optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0)).optimize(
        objective, n_trials=spec.n_trials)
    return time.perf_counter() - started


def through_tailtune(spec: StudySpec, seconds: float) -> float:
    def runner(trial: optuna.Trial, study_spec: StudySpec, context: object) -> list[float]:
        sample_params(trial, study_spec.resolved_space())
        time.sleep(seconds)
        return [0.0]

    with scratch_postgres_database() as url, TemporaryDirectory() as artifacts:
        app = create_app(Settings(database_url=url, artifact_dir=Path(artifacts)))
        with TestClient(app) as client:
            started = time.perf_counter()
            study_id = client.post("/studies", json=spec.model_dump(mode="json")).json()["id"]
            run_worker(app.state.database, study_names=[spec.name], trial_runner=runner,
                       settings=WorkerSettings(artifact_dir=Path(artifacts), handle_signals=False))
            trials = client.get(f"/studies/{study_id}/trials", params={"limit": 500}).json()
            elapsed = time.perf_counter() - started
        app.state.database.dispose()
    assert trials["total"] == spec.n_trials
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--trial-seconds", type=float, default=1.0)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = parse_spec({"name": "overhead", "n_trials": args.trials, "sampler": "random"})
    raw = raw_optuna(spec, args.trial_seconds)
    served = through_tailtune(spec, args.trial_seconds)
    per_trial_ms = (served - raw) / args.trials * 1000
    print(f"{args.trials} trials of {args.trial_seconds:.1f} s each")
    print(f"{'path':<28} {'wall s':>8}")
    print(f"{'raw in-process optuna':<28} {raw:>8.2f}")
    print(f"{'REST + PostgreSQL + worker':<28} {served:>8.2f}")
    print(f"overhead per trial: {per_trial_ms:.0f} ms")
    print(f"overhead_ratio: {served / raw:.3f}")


if __name__ == "__main__":
    main()
