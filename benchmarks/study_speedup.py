"""The same WB study run naively (every trial trains stage 1 and stage 2) vs by tailtune's objective.

    python benchmarks/study_speedup.py [--trials 30] [--stage1-epochs 30]     # 3 values of lambda_1

Both use the same TPE seed and the same search space (lambda_1 over 3 values, lambda_2, MaxNorm t, loss) on
digits-lt, in one process. The naive study is what a user gets by wrapping a two-stage training script in
`study.optimize`; tailtune shares one cached backbone (and its feature bank) per lambda_1 value.
Ends with `study_speedup_vs_naive: X` (naive wall time / tailtune wall time).
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

import optuna

from studies.cache import Stage1Cache
from studies.objective import run_trial
from studies.space import sample_params
from studies.spec import parse_spec
from trainers.config import RunOptions
from trainers.device import resolve_runtime
from trainers.experiment import run_experiment


class _Context:
    def __init__(self, cache: Stage1Cache) -> None:
        self.cache = cache

    def should_stop(self) -> bool:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--stage1-epochs", type=int, default=30)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    runtime = resolve_runtime(RunOptions(device="auto"))
    spec = parse_spec({"name": "speedup", "method": "wb", "n_trials": args.trials, "seed": 0,
                       "fixed": {"stage1.epochs": args.stage1_epochs},
                       "search_space": {"stage1.weight_decay": {"type": "categorical",
                                                                "choices": [5e-4, 5e-3, 1e-2]}}})

    def naive(trial: optuna.Trial) -> float:
        config = spec.config_for(sample_params(trial, spec.resolved_space()))
        return run_experiment(config, runtime).stage2.val.all

    results = {}
    with tempfile.TemporaryDirectory() as artifacts:
        context = _Context(Stage1Cache(Path(artifacts), lambda name: contextlib.nullcontext(), runtime))
        for name, objective in (("naive", naive), ("tailtune", lambda t: run_trial(t, spec, context)[0])):
            study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
            started = time.perf_counter()
            study.optimize(objective, n_trials=args.trials)
            results[name] = (time.perf_counter() - started, study.best_value, len(context.cache.entries()))

    print(f"WB on digits-lt, {args.trials} trials, TPE seed 0, {args.stage1_epochs} stage-1 epochs, "
          f"device {runtime.device}")
    print(f"{'variant':<9} {'wall s':>8} {'s/trial':>8} {'best val All %':>15}")
    for name, (seconds, best, _) in results.items():
        print(f"{name:<9} {seconds:>8.1f} {seconds / args.trials:>8.2f} {best:>15.2f}")
    print(f"stage-1 backbones trained by tailtune: {results['tailtune'][2]}")
    print(f"study_speedup_vs_naive: {results['naive'][0] / results['tailtune'][0]:.1f}")


if __name__ == "__main__":
    main()
