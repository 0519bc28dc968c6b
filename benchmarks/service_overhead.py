"""The same fixed-cost study run by raw in-process Optuna vs through tailtune (REST + PostgreSQL + worker).

    python benchmarks/service_overhead.py [--trials 10] [--trial-seconds 1.0] [--rounds 2]

Every trial samples the WB space and sleeps `--trial-seconds`. Variants, alternating round by round:
- optuna in memory: `study.optimize` with in-memory storage, what a single script does;
- optuna on PostgreSQL: the same on Optuna's RDBStorage (no tailtune), to separate the database's share;
- tailtune: POST /studies to the FastAPI app (in-process ASGI client), `run_worker` claiming each trial under
  the study's row lock with heartbeats and reaping, then GET /studies/{id}/trials to read the results.
PostgreSQL is the local server at 127.0.0.1:5432, in a database this script creates and drops.
Ends with `overhead_ratio: X` (tailtune wall time / in-memory Optuna wall time, medians over rounds).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from tempfile import TemporaryDirectory

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/<name>.py` from any directory

import optuna
from fastapi import FastAPI

with warnings.catch_warnings():
    # fastapi's TestClient still wraps httpx; the replacement it suggests is not released for our pins.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from fastapi.testclient import TestClient

from benchmarks._common import interleaved, parse_args, scratch_postgres_database, table
from service.core.config import Settings
from service.main import create_app
from studies.definition.space import sample_params
from studies.definition.spec import StudySpec, parse_spec
from studies.run.worker import WorkerSettings, one_at_a_time, run_worker
from studies.store.storage import params_written_together


def sleeping_objective(spec: StudySpec, seconds: float, *,
                       sampling: Callable[[optuna.Trial], AbstractContextManager[None]] = lambda _trial: nullcontext(),
                       ) -> Callable[[optuna.Trial], float]:
    def objective(trial: optuna.Trial) -> float:
        with sampling(trial):
            sample_params(trial, spec.resolved_space())
        time.sleep(seconds)
        return 0.0

    return objective


def raw_optuna(spec: StudySpec, seconds: float, storage: str | None, names: itertools.count) -> None:
    study = optuna.create_study(study_name=f"raw-{next(names)}", storage=storage, direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(sleeping_objective(spec, seconds), n_trials=spec.n_trials)


def through_tailtune(client: TestClient, app: FastAPI, spec: StudySpec, seconds: float, artifacts: Path,
                     names: itertools.count) -> None:
    body = spec.model_dump(mode="json") | {"name": f"served-{next(names)}"}
    study_id = client.post("/studies", json=body).json()["id"]
    # As the real objective samples (studies/run/objective.py): Optuna's own per-parameter writes fail on a trial
    # the worker claimed from the queue (the recipe), which its storage's cache has not seen.
    objective = sleeping_objective(spec, seconds, sampling=params_written_together)
    run_worker(app.state.database, study_names=[body["name"]],
               runner=one_at_a_time(lambda trial, _s, _c: [objective(trial)]),
               settings=WorkerSettings(handle_signals=False), artifact_dir=Path(artifacts))
    trials = client.get(f"/studies/{study_id}/trials", params={"limit": 500}).json()
    assert trials["total"] == spec.n_trials, f"the study ran {trials['total']} trials, not {spec.n_trials}"


# --tiny: a run of seconds, made by the test suite
TINY = {"trials": 2, "trial_seconds": 0.01, "rounds": 1}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--trial-seconds", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parse_args(parser, argv, tiny=TINY)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = parse_spec({"name": "overhead", "n_trials": args.trials, "sampler": "random"})
    names = itertools.count()
    with scratch_postgres_database() as url, TemporaryDirectory() as artifacts:
        app = create_app(Settings(database={"url": url}, artifact={"dir": Path(artifacts)}, api={"open": True}))
        with TestClient(app) as client:
            variants: dict[str, Callable[[StudySpec, float], None]] = {
                "optuna, in memory": lambda s, seconds: raw_optuna(s, seconds, None, names),
                "optuna, PostgreSQL": lambda s, seconds: raw_optuna(s, seconds, url, names),
                "tailtune: REST + PostgreSQL + worker": lambda s, seconds: through_tailtune(
                    client, app, s, seconds, Path(artifacts), names),
            }
            warm_up = spec.model_copy(update={"n_trials": 1})  # first use creates Optuna's tables, loads modules
            for run in variants.values():
                run(warm_up, 0.0)
            times = interleaved({name: lambda run=run: run(spec, args.trial_seconds)  # noqa: B023
                                 for name, run in variants.items()}, repeats=args.rounds)
        app.state.database.dispose()
    raw = times["optuna, in memory"]
    print(f"{args.trials} trials of {args.trial_seconds:.1f} s each, {args.rounds} rounds (median), PostgreSQL at "
          "127.0.0.1:5432")
    rows = [[name, seconds, f"{seconds / raw:.3f}", f"{(seconds - raw) / args.trials * 1000:.0f}"]
            for name, seconds in times.items()]
    print(table(["path", "wall s", "/ in memory", "overhead ms/trial"], rows))
    print(f"overhead_ratio: {times['tailtune: REST + PostgreSQL + worker'] / raw:.3f}")


if __name__ == "__main__":
    main()
