"""The same WB study run naively (every trial trains stage 1 and stage 2) vs by tailtune's worker, in one run.

    python benchmarks/study_speedup.py [--trials 90] [--stage1-epochs 100] [--threads N]

All studies use TPE with seed 0 over the same space on digits-lt: lambda_1 over 3 values (5e-4, 5e-3, 1e-2),
lambda_2, MaxNorm t and the loss. The naive study is what a user gets by wrapping a two-stage training script in
`study.optimize`: every trial calls `trainers.experiment.run_experiment`. tailtune's is `tailtune worker`
in-process: a SQLite study, `run_worker` with its stage-1 cache (one backbone and feature bank per lambda_1
value) and batched heads (`--batch-trials 8`, the default), and once more with `--batch-trials 1` to show what
batching adds. Each variant starts from an empty cache. The variants run one after the other (a worker runs a
whole study), so their sampled trials differ; the best val of each is printed beside its time.
Ends with `study_speedup_vs_naive: X` (naive wall time / tailtune wall time at the default batch size).
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

from benchmarks._common import add_stage1_epochs_flag, add_threads_flag, apply_threads, parse_args, table
from studies.definition.samplers import build_sampler
from studies.definition.space import sample_params
from studies.definition.spec import StudySpec, parse_spec
from studies.run.worker import WorkerSettings, run_worker
from studies.store import registry
from studies.store.db import Database
from trainers.config import RunOptions
from trainers.data import load_dataset
from trainers.device import Runtime, resolve_runtime
from trainers.experiment import run_experiment

LAMBDA_1_VALUES = [5e-4, 5e-3, 1e-2]


def naive_study(spec: StudySpec, runtime: Runtime) -> optuna.Study:
    def objective(trial: optuna.Trial) -> float:
        config = spec.config_for(sample_params(trial, spec.resolved_space()))
        return run_experiment(config, runtime).stage2.val.all

    study = optuna.create_study(direction="maximize", sampler=build_sampler(spec))  # the workers' TPE settings
    study.optimize(objective, n_trials=spec.n_trials)
    return study


def tailtune_study(spec: StudySpec, batch_trials: int, scratch: Path) -> tuple[optuna.Study, int]:
    """The study and the number of backbones its worker trained."""
    url = f"sqlite:///{scratch / 'study.db'}"
    db = Database.connect(url)
    registry.create_study(db, spec=spec)
    settings = WorkerSettings(device="auto", handle_signals=False, batch_trials=batch_trials)
    run_worker(db, study_names=[spec.name], settings=settings, artifact_dir=scratch / "artifacts")
    db.dispose()
    study = optuna.load_study(study_name=spec.name, storage=url)
    return study, sum(t.user_attrs["stage1_trained"] for t in study.trials)


# --tiny: a run of seconds, made by the test suite
TINY = {"trials": 3, "stage1_epochs": 1, "threads": 1}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=90, help="trials per study (90: about 30 per lambda_1)")
    add_stage1_epochs_flag(parser)
    add_threads_flag(parser)
    args = parse_args(parser, argv, tiny=TINY)
    threads = apply_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    runtime = resolve_runtime(RunOptions(device="auto"))
    spec = parse_spec({"name": "speedup", "method": "wb", "n_trials": args.trials, "seed": 0, "sampler": "tpe",
                       "fixed": {"stage1.epochs": args.stage1_epochs, "stage1.lr": 0.01}, "pruner": "none",
                       "search_space": {"stage1.weight_decay": {"type": "categorical",
                                                                "choices": LAMBDA_1_VALUES}}})
    load_dataset(spec.base_config().data)  # warm-up: the first load pays scikit-learn's import
    variants: dict[str, Callable[[Path], tuple[optuna.Study, int]]] = {
        "tailtune, batches of 8": lambda scratch: tailtune_study(spec, 8, scratch),
        "naive study.optimize": lambda _scratch: (naive_study(spec, runtime), spec.n_trials),
        "tailtune, one at a time": lambda scratch: tailtune_study(spec, 1, scratch),
    }
    rows, seconds = [], {}
    for name, run in variants.items():
        with tempfile.TemporaryDirectory() as scratch:
            started = time.perf_counter()
            study, backbones = run(Path(scratch))
            seconds[name] = time.perf_counter() - started
        rows.append([name, seconds[name], seconds[name] / args.trials, f"{study.best_value:.2f}", backbones])

    print(f"WB on digits-lt, {args.trials} trials, TPE seed 0, lambda_1 in {LAMBDA_1_VALUES}, "
          f"{args.stage1_epochs} stage-1 epochs, device {runtime.device}, torch {torch.__version__}, "
          f"{threads} threads")
    print(table(["variant", "wall s", "s/trial", "best val All %", "stage-1 trainings"], rows))
    naive = seconds["naive study.optimize"]
    print(f"batching's share: one at a time / batches of 8 = "
          f"{seconds['tailtune, one at a time'] / seconds['tailtune, batches of 8']:.2f}")
    print(f"study_speedup_vs_naive: {naive / seconds['tailtune, batches of 8']:.1f}")


if __name__ == "__main__":
    main()
