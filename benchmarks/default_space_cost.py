"""What the new-data default search space costs: a 16-trial default WB study on digits-lt, before and after.

    python benchmarks/default_space_cost.py [--trials 16] [--tiny] [--threads N]

Before: the space every study without a preset had until issue 24 (stage-1 weight decay over 4 choices, stage 1
otherwise at its recipe: lr 0.01, 100 epochs; no pruner). After: today's default without a preset (stage-1 lr,
weight decay and epochs on log grids, successive halving over stage-1 epochs). Both run one in-process worker on
SQLite with an empty stage-1 cache, TPE seed 0, one after the other on the same machine; each prints its wall
time, stage-1 trainings, pruned trials, best val All, that trial's test All and the study's linear baseline.
`--tiny` (the suite's smoke run) fixes 1 stage-1 epoch and runs 2 trials. Ends with `default_space_cost_ratio:
X` (after / before wall time).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/<name>.py` from any directory

import optuna
from optuna.trial import TrialState

from benchmarks._common import add_threads_flag, apply_threads, parse_args, table
from studies.definition.spec import parse_spec
from studies.run.worker import WorkerSettings, run_worker
from studies.store import registry
from studies.store.db import Database

BEFORE = {"search_space": {"stage1.weight_decay": {"type": "categorical", "choices": [5e-4, 2e-3, 5e-3, 1e-2]}},
          "fixed": {"stage1.lr": 0.01, "stage1.epochs": 100}, "pruner": "none"}
AFTER: dict = {"fixed": {}}


def run_study(name: str, variant: dict, trials: int, tiny: bool) -> list[object]:
    fixed = {**variant["fixed"], **({"stage1.epochs": 1} if tiny else {})}
    spec = parse_spec({"name": name, "method": "wb", "n_trials": trials, "seed": 0, **variant, "fixed": fixed})
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{Path(scratch) / 'study.db'}"
        db = Database.connect(url)
        registry.create_study(db, spec=spec)
        started = time.perf_counter()
        run_worker(db, study_names=[name], artifact_dir=Path(scratch) / "artifacts",
                   settings=WorkerSettings(device="cpu", handle_signals=False))
        seconds = time.perf_counter() - started
        record = registry.get_study_by_name(db, name=name)
        db.dispose()
        study = optuna.load_study(study_name=name, storage=url)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    trained = sum(t.user_attrs.get("stage1_trained", False) for t in complete)
    pruned = sum(t.state == TrialState.PRUNED for t in study.trials)
    baseline = record.baseline.test["all"] if record.baseline and record.baseline.test else None
    return [name, seconds, trained, pruned, record.best_val["all"], record.best_test["all"], baseline]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    add_threads_flag(parser)
    args = parse_args(parser, argv, tiny={"trials": 2})  # and 1 stage-1 epoch (run_study)
    threads = apply_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Warm-up outside the timings: the objective's imports (torch, the trainer) and scikit-learn's, which the
    # first study would pay alone.
    import studies.run.objective  # noqa: F401
    from trainers.baseline import fit_linear_baseline
    from trainers.config import DataConfig
    from trainers.data import load_dataset

    fit_linear_baseline(load_dataset(DataConfig(name="digits-lt")))
    rows = [run_study("before", BEFORE, args.trials, args.tiny), run_study("after", AFTER, args.trials, args.tiny)]
    print(f"WB on digits-lt, {args.trials} trials, TPE seed 0, CPU, {threads} threads")
    print(table(["space", "wall s", "stage-1 trainings (complete)", "pruned", "best val All %",
                 "its test All %", "baseline test All %"], rows))
    print(f"default_space_cost_ratio: {rows[1][1] / rows[0][1]:.2f}")


if __name__ == "__main__":
    main()
