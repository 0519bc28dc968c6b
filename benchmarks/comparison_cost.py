"""A 4-method comparison vs the same budget as 4 separate studies, on digits-lt, in one run.

    python benchmarks/comparison_cost.py [--trials 8] [--seeds 3] [--top-k 3] [--stage1-epochs 100] [--tiny]

Both variants search WB, τ-norm, LOS and EWB with `--trials` trials each and confirm the top `--top-k`
configurations and the recipe of each over `--seeds` seeds, on a SQLite file and one in-process worker that
serves every study, each from an empty stage-1 cache. The comparison (`tailtune compare create`) searches each
network's stage-1 knobs once (cross-entropy + weight decay for WB, τ-norm and LOS; EWB's own) and the methods'
stage-2 knobs on the cached backbones; the separate studies (`tailtune study create` x 4) each search their own
stage 1. Prints the stage-1 trainings (trials that
trained their backbone rather than reading it from the cache) and the wall time of each, then both per Optuna
study (search, and confirmation in `<name>~confirm`), and ends with
`comparison_cost_vs_separate: X` (comparison wall time / separate studies' wall time; goal <= 0.5).
`--tiny` is the suite's size (2 trials, 2 seeds, top 1, 1 stage-1 epoch).
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
from studies.definition.comparison import METHODS, ComparisonSpec
from studies.run.worker import WorkerSettings, run_worker
from studies.store import comparisons, registry
from studies.store.db import Database

COMPLETE, PRUNED = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED
TINY = {"trials": 2, "seeds": 2, "top_k": 1, "stage1_epochs": 1}


def comparison(spec: ComparisonSpec, db: Database) -> None:
    comparisons.create_comparison(db, spec=spec)


def separate(spec: ComparisonSpec, db: Database) -> None:
    """The same budget as studies of their own: each method's full default space, stage 1 included."""
    for method in spec.methods:
        registry.create_study(db, spec=spec.method_spec(method, {}))


def run_variant(create: Callable[[ComparisonSpec, Database], None], spec: ComparisonSpec,
                scratch: Path) -> tuple[float, dict[str, tuple[int, int, int, float]]]:
    """Wall seconds, and per Optuna study (confirmation runs in `<name>~confirm`) its stage-1 trainings, its
    COMPLETE and PRUNED trials and the seconds its trials ran, of one variant from an empty cache."""
    url = f"sqlite:///{scratch / 'studies.db'}"
    db = Database.connect(url)
    started = time.perf_counter()
    create(spec, db)
    settings = WorkerSettings(device="auto", handle_signals=False, poll_interval_s=0.1)
    run_worker(db, study_names=None, settings=settings, artifact_dir=scratch / "artifacts")
    seconds = time.perf_counter() - started
    db.dispose()
    per_study = {}
    for name in optuna.get_all_study_names(storage=url):
        finished = optuna.load_study(study_name=name, storage=url).get_trials(states=(COMPLETE, PRUNED))
        per_study[name] = (sum(bool(t.user_attrs.get("stage1_trained")) for t in finished),
                           sum(t.state == COMPLETE for t in finished), sum(t.state == PRUNED for t in finished),
                           sum(t.duration.total_seconds() for t in finished))
    return seconds, per_study


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8, help="search trials per method")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per confirmed configuration")
    parser.add_argument("--top-k", type=int, default=3, help="configurations per method confirmed")
    add_stage1_epochs_flag(parser)
    add_threads_flag(parser)
    args = parse_args(parser, argv, tiny=TINY)
    threads = apply_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = ComparisonSpec(name="cost", dataset="digits-lt", n_trials=args.trials, seeds=args.seeds,
                          top_k=args.top_k, fixed={"stage1.epochs": args.stage1_epochs})
    rows, seconds, studies = [], {}, []
    for name, create in (("comparison", comparison), ("4 separate studies", separate)):
        with tempfile.TemporaryDirectory() as scratch:
            seconds[name], per_study = run_variant(create, spec, Path(scratch))
        trainings, complete, pruned, _ = map(sum, zip(*per_study.values(), strict=True))
        rows.append([name, seconds[name], trainings, complete + pruned])
        studies += [[name, study, *counts] for study, counts in per_study.items()]

    print(f"{', '.join(METHODS)} on digits-lt, {args.trials} trials each, top {args.top_k} + recipe confirmed "
          f"over {args.seeds} seeds, {args.stage1_epochs} stage-1 epochs, torch {torch.__version__}, "
          f"{threads} threads, one worker")
    print(table(["variant", "wall s", "stage-1 trainings", "trials (search + confirmation)"], rows))
    print(table(["variant", "Optuna study", "stage-1 trainings", "complete", "pruned", "trial s"], studies))
    print(f"comparison_cost_vs_separate: {seconds['comparison'] / seconds['4 separate studies']:.2f}")


if __name__ == "__main__":
    main()
