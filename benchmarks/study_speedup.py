"""The same WB study run naively (every trial trains stage 1 and stage 2) vs by tailtune's objective, in one run.

    python benchmarks/study_speedup.py [--trials 30] [--stage1-epochs 30] [--threads N]    # --trials 90: 3 x 30

Both studies use TPE with seed 0 over the same space on digits-lt: lambda_1 over 3 values (5e-4, 5e-3, 1e-2),
lambda_2, MaxNorm t and the loss. The naive study is what a user gets by wrapping a two-stage training script in
`study.optimize`: every trial calls `trainers.experiment.run_experiment`. tailtune's is `studies.objective.run_trial`
with a `Stage1Cache` on a temp dir and a file lock, as a worker runs it: one backbone (and its feature bank) per
lambda_1 value, shared by all trials. (The worker claims one trial at a time, so batched heads are not used.)
The two studies advance trial by trial in turn (ask, run, tell), so the machine's load hits both alike; stage 1
is deterministic on one device, so both see the same values and TPE proposes the same trials to both.
Ends with `study_speedup_vs_naive: X` (naive wall time / tailtune wall time).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/<name>.py` from any directory

import optuna
import torch
from filelock import FileLock

from benchmarks._common import add_threads_flag, apply_threads, table
from studies.cache import Stage1Cache
from studies.objective import run_trial
from studies.space import sample_params
from studies.spec import StudySpec, parse_spec
from trainers.config import RunOptions
from trainers.data import load_dataset
from trainers.device import Runtime, resolve_runtime
from trainers.experiment import run_experiment

LAMBDA_1_VALUES = [5e-4, 5e-3, 1e-2]

Objective = Callable[[optuna.Trial], float]


class InProcessContext:
    """What a worker lends `run_trial`: the stage-1 cache, and a stop flag that never rises here."""

    def __init__(self, cache: Stage1Cache) -> None:
        self.cache = cache

    def should_stop(self) -> bool:
        return False


def naive_objective(spec: StudySpec, runtime: Runtime) -> Objective:
    def objective(trial: optuna.Trial) -> float:
        config = spec.config_for(sample_params(trial, spec.resolved_space()))
        return run_experiment(config, runtime).stage2.val.all

    return objective


def tailtune_objective(spec: StudySpec, runtime: Runtime, artifacts: Path) -> tuple[Objective, Stage1Cache]:
    locks = artifacts / "locks"
    locks.mkdir()
    cache = Stage1Cache(artifacts, lambda name: FileLock(locks / f"{name.replace(':', '-')}.lock"), runtime)
    context = InProcessContext(cache)
    return (lambda trial: run_trial(trial, spec, context)[0]), cache


def run_side_by_side(objectives: dict[str, Objective], trials: int) -> dict[str, tuple[float, optuna.Study]]:
    """Each study asks, runs and tells one trial in turn; returns wall seconds and the study per variant."""
    studies = {name: optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
               for name in objectives}
    seconds = dict.fromkeys(objectives, 0.0)
    for _ in range(trials):
        for name, objective in objectives.items():
            started = time.perf_counter()
            trial = studies[name].ask()
            studies[name].tell(trial, objective(trial))
            seconds[name] += time.perf_counter() - started
    return {name: (seconds[name], studies[name]) for name in objectives}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30, help="trials per study (30: about 10 per lambda_1)")
    parser.add_argument("--stage1-epochs", type=int, default=30)
    add_threads_flag(parser)
    args = parser.parse_args()
    threads = apply_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    runtime = resolve_runtime(RunOptions(device="auto"))
    spec = parse_spec({"name": "speedup", "method": "wb", "n_trials": args.trials, "seed": 0,
                       "fixed": {"stage1.epochs": args.stage1_epochs},
                       "search_space": {"stage1.weight_decay": {"type": "categorical",
                                                                "choices": LAMBDA_1_VALUES}}})
    load_dataset(spec.data_config())  # warm-up: the first load pays scikit-learn's import
    with tempfile.TemporaryDirectory() as artifacts:
        tailtune, cache = tailtune_objective(spec, runtime, Path(artifacts))
        results = run_side_by_side({"naive": naive_objective(spec, runtime), "tailtune": tailtune}, args.trials)
        backbones = len(cache.entries())

    print(f"WB on digits-lt, {args.trials} trials, TPE seed 0, lambda_1 in {LAMBDA_1_VALUES}, "
          f"{args.stage1_epochs} stage-1 epochs, device {runtime.device}, torch {torch.__version__}, "
          f"{threads} threads")
    rows = [[name, seconds, seconds / args.trials, f"{study.best_value:.2f}", study.best_trial.number]
            for name, (seconds, study) in results.items()]
    print(table(["variant", "wall s", "s/trial", "best val All %", "best trial"], rows))
    naive_params = [t.params for t in results["naive"][1].trials]
    same = naive_params == [t.params for t in results["tailtune"][1].trials]
    print(f"stage-1 backbones trained by tailtune: {backbones}; both studies ran the same trials: {same}")
    print(f"study_speedup_vs_naive: {results['naive'][0] / results['tailtune'][0]:.1f}")


if __name__ == "__main__":
    main()
