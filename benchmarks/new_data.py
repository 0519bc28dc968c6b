"""New data: on each panel set (benchmarks/panel.py), the default run, a 16-trial default study and the linear
baseline, and by how much the study beats the baseline.

    python benchmarks/new_data.py [--trials 16] [--method wb] [--sets digits16,glyphs,textures] [--tiny] [--threads N]

Each set is written to a scratch folder, then studied as a user would study a folder data set no one tuned for:
`tailtune study create NAME --dataset folder:DIR --image-size 16 --n-trials 16` (the method's defaults, the default
search space for data without a preset, the default pruner, TPE seed 0) run by one in-process worker on SQLite.
Per set it prints the default run (the recipe, trial 0: tailtune's defaults), the study's best trial by val, and
the study's baseline (trainers/baseline.py), each as test All %, with best - baseline. `--tiny` (the suite's
smoke run) runs 1 trial (the recipe, confirmed) of 1 stage-1 epoch on sets of 20 .. 1 train images per class.
Ends with `min_margin_over_baseline: <points>` (the smallest best - baseline on test All over the panel; the goal
is >= 3 on every set).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/<name>.py` from any directory

import optuna

from benchmarks._common import add_threads_flag, apply_threads, parse_args, table
from benchmarks.panel import PANEL, SIDE
from studies.definition.records import StudyRecord
from studies.definition.spec import parse_spec
from studies.run.worker import WorkerSettings, run_worker
from studies.store import registry
from studies.store.db import Database

TINY_N_MAX = 20


def study_panel_set(name: str, folder: Path, scratch: Path, method: str, trials: int, tiny: bool) -> StudyRecord:
    spec = parse_spec({"name": name, "method": method, "dataset": f"folder:{folder}", "image_size": SIDE,
                       "n_trials": trials, "seed": 0, "fixed": {"stage1.epochs": 1} if tiny else {}})
    db = Database.connect(f"sqlite:///{scratch / f'{name}.db'}")
    registry.create_study(db, spec=spec)
    run_worker(db, study_names=[name], artifact_dir=scratch / "artifacts",
               settings=WorkerSettings(device="cpu", handle_signals=False))
    record = registry.get_study_by_name(db, name=name)
    db.dispose()
    return record


def row(name: str, record: StudyRecord, seconds: float) -> list[object]:
    recipe = record.recipe.test["all"] if record.recipe else None
    baseline = record.baseline.test["all"] if record.baseline and record.baseline.test else None
    best = record.best_test["all"]
    margin = best - baseline if baseline is not None else None
    walls = ", ".join(f"{wall.param} {wall.side}" for wall in record.walls) or "-"
    return [name, recipe, record.best_val["all"], best, baseline, margin, seconds, walls]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--method", default="wb")
    parser.add_argument("--sets", default=",".join(PANEL), help="comma-separated panel sets to run")
    add_threads_flag(parser)
    args = parse_args(parser, argv, tiny={"trials": 1})  # and 1 stage-1 epoch on smaller sets (below)
    threads = apply_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.sets.split(","):
            write = PANEL[name]
            sizes = {"n_max": TINY_N_MAX} if args.tiny else {}
            folder = write(Path(scratch) / "data" / name, **sizes)
            started = time.perf_counter()
            record = study_panel_set(name, folder, Path(scratch), args.method, args.trials, args.tiny)
            rows.append(row(name, record, time.perf_counter() - started))
            print("done:", *rows[-1], sep="  ", flush=True)  # a full set takes minutes: show each as it ends
    print(f"{args.method} on the panel ({args.sets}; {SIDE} px, IF 20, 10 classes), {args.trials} trials, "
          f"TPE seed 0, CPU, {threads} threads; accuracies are test All %")
    print(table(["set", "default run", "study best val", "study best test", "baseline", "best - baseline",
                 "study s", "walls"], rows))
    margins = [r[5] for r in rows if r[5] is not None]
    print(f"min_margin_over_baseline: {min(margins):.2f}" if margins else "min_margin_over_baseline: nan")


if __name__ == "__main__":
    main()
