"""Trials TPE, GP and random search need to come within 0.5 pt of an exhaustive grid's best val accuracy.

    python benchmarks/search_efficiency.py [--seeds 5] [--stage1-epochs 100] [--equal-trials 20] [--threads N]

Two data sets: digits-lt, and a folder:PATH data set this script writes to a temp dir (scikit-learn's digits as
16 px PNGs in train/val/test class folders, train long-tailed 80..4 per class, val 20 and test 40 per class).
On each, one WB stage-1 backbone is trained and cached; every trial is then a real stage-2 trial on its feature
bank (`run_stage2`, tens of milliseconds), so samplers search the real WB stage-2 space of studies/definition/space.py
(lambda_2 log 1e-4..1, MaxNorm t 0..1, loss CE/CB) with the samplers a study uses (studies/definition/samplers.py: TPE
multivariate with constant liar, GP, random; 10 start-up trials each). The grid is 9 log-spaced lambda_2 x 11 t x
2 losses = 198 cells (`--weight-decays`, `--thresholds`), all trained in one batched pass. A sampler's count is
the trial at which its best val balanced accuracy first comes within 0.5 pt of the grid's best (capped at the
grid's size); medians over seeds.
Also the median trials to reach the grid's best itself (a harder target that separates the samplers where many
cells lie within 0.5 pt), and, for the TPE-vs-random question, the mean best val after `--equal-trials` trials.
Searches differ only in the sampler's seed; every trial trains with seed 0, as the grid's cells do.
Ends with `bayes_over_grid_trials: X` (the better Bayesian sampler's median trials / grid cells, the worse data set).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/<name>.py` from any directory

import numpy as np
import optuna
import torch
from PIL import Image

from benchmarks._common import add_stage1_epochs_flag, add_threads_flag, apply_threads, parse_args, table
from studies.definition.samplers import build_sampler
from studies.definition.space import sample_params
from studies.definition.spec import StudySpec, parse_spec
from trainers.config import RetrainConfig, RunOptions
from trainers.device import Runtime, resolve_runtime
from trainers.experiment import Backbone, evaluate_head, run_stage2, train_backbone
from trainers.heads import train_heads

LOSSES = ["ce", "cb"]
SAMPLERS = ["tpe", "gp", "random"]
WITHIN = 0.5


def write_folder_dataset(root: Path) -> str:
    """scikit-learn's digits as 16 px PNGs: train 80..4 per class (IF 20), val 20, test 40 per class."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(0)
    for label in range(10):
        members = digits.images[digits.target == label]
        members = members[rng.permutation(len(members))]
        train_count = round(80 * 20 ** (-label / 9))
        splits = {"test": members[:40], "val": members[40:60], "train": members[60:60 + train_count]}
        for split, images in splits.items():
            folder = root / split / f"digit{label}"
            folder.mkdir(parents=True, exist_ok=True)
            for index, image in enumerate(images):
                pixels = np.rint(image * 255 / 16).astype(np.uint8)
                Image.fromarray(pixels).resize((16, 16), Image.BILINEAR).save(folder / f"{index}.png")
    return f"folder:{root}"


def grid_cells(weight_decays: int, thresholds: int) -> list[tuple[float, float, str]]:
    """(lambda_2, MaxNorm t, loss) cells: lambda_2 log-spaced over 1e-4..1, t evenly over 0..1."""
    lambdas = [float(v) for v in np.logspace(-4, 0, weight_decays)]
    ts = [round(k / (thresholds - 1), 3) for k in range(thresholds)]
    return list(itertools.product(lambdas, ts, LOSSES))


def stage2_spec(dataset: str, image_size: int | None, stage1_epochs: int, sampler: str, trials: int) -> StudySpec:
    """The WB space with stage 1 fixed: every trial re-uses one backbone. Training seed 0, as the grid's: only
    the sampler's seed varies between searches, so a search can reach exactly the grid's numbers."""
    return parse_spec({"name": "search", "method": "wb", "dataset": dataset, "image_size": image_size,
                       "sampler": sampler, "seed": 0, "n_trials": trials,
                       "fixed": {"stage1.weight_decay": 5e-3, "stage1.lr": 0.01, "stage1.epochs": stage1_epochs}})


def grid_values(backbone: Backbone, spec: StudySpec, grid: list[tuple[float, float, str]]) -> list[float]:
    config = spec.base_config()
    cells = [RetrainConfig(weight_decay=wd, maxnorm_thresh=t, loss=loss, epochs=config.stage2.epochs)
             for wd, t, loss in grid]
    heads = train_heads(backbone.features, backbone.head, cells, backbone.data.class_counts, seed=config.seed)
    return [evaluate_head(backbone.features, head, backbone.rule, config, elapsed=0).val.all for head in heads]


def search(backbone: Backbone, spec: StudySpec, sampler_seed: int, runtime: Runtime, trials: int,
           target: float, min_trials: int) -> list[float]:
    """Best val after each real stage-2 trial, for up to `trials` trials; stops once at least `min_trials` ran
    and the best reached `target`. Every count a table shows is read off this one curve."""
    study = optuna.create_study(direction="maximize", sampler=build_sampler(spec, seed_offset=sampler_seed))
    curve: list[float] = []
    while len(curve) < trials and (len(curve) < min_trials or curve[-1] < target):
        trial = study.ask()
        config = spec.config_for(sample_params(trial, spec.resolved_space()))
        study.tell(trial, run_stage2(backbone, config, runtime).val.all)
        curve.append(study.best_value)
    return curve


def trials_to_reach(curve: list[float], target: float, cap: int) -> int:
    """The trial at which the best first reached `target`; `cap` when it did not within `cap` trials."""
    return next((number for number, best in enumerate(curve[:cap], start=1) if best >= target), cap)


def dataset_rows(label: str, dataset: str, image_size: int | None, args: argparse.Namespace,
                 runtime: Runtime) -> float:
    configs = grid_cells(args.weight_decays, args.thresholds)
    base = stage2_spec(dataset, image_size, args.stage1_epochs, "random", len(configs))
    backbone = train_backbone(base.base_config(), runtime)
    grid = grid_values(backbone, base, configs)
    grid_best, cells = max(grid), len(grid)
    near = sum(value >= grid_best - WITHIN for value in grid)
    print(f"\n{label}: {len(backbone.data.train)} train images; grid of {cells} stage-2 configs, best val All "
          f"{grid_best:.2f}%, {near} cells within {WITHIN} pt of it")
    rows, medians, mean_best = [], {}, {}
    for sampler in SAMPLERS:
        spec = stage2_spec(dataset, image_size, args.stage1_epochs, sampler, cells)
        curves = [search(backbone, spec, seed, runtime, max(cells, args.equal_trials), grid_best, args.equal_trials)
                  for seed in range(args.seeds)]
        counts = [trials_to_reach(curve, grid_best - WITHIN, cells) for curve in curves]
        to_best = [trials_to_reach(curve, grid_best, cells) for curve in curves]
        bests = [curve[args.equal_trials - 1] for curve in curves]
        medians[sampler], mean_best[sampler] = statistics.median(counts), statistics.mean(bests)
        rows.append([sampler, f"{medians[sampler]:.0f}", f"{medians[sampler] / cells:.1%}", str(counts),
                     f"{statistics.median(to_best):.0f}", f"{mean_best[sampler]:.2f}", f"{min(bests):.2f}"])
    rows.append(["grid", str(cells), "100%", "-", str(cells), "-", "-"])
    print(table(["sampler", "median trials", "/ grid", "trials per seed", "median to the grid's best",
                 f"mean best @{args.equal_trials}", f"worst best @{args.equal_trials}"], rows))
    print(f"TPE vs random at {args.equal_trials} trials ({label}): mean best val {mean_best['tpe']:.2f} vs "
          f"{mean_best['random']:.2f} ({mean_best['tpe'] - mean_best['random']:+.2f} pt)")
    return min(medians["tpe"], medians["gp"]) / cells


# --tiny: a run of seconds, made by the test suite
TINY = {"seeds": 1, "stage1_epochs": 1, "equal_trials": 2, "weight_decays": 2, "thresholds": 2, "threads": 1}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    add_stage1_epochs_flag(parser)
    parser.add_argument("--equal-trials", type=int, default=20, help="trials for the TPE-vs-random comparison")
    parser.add_argument("--weight-decays", type=int, default=9, help="lambda_2 values in the grid")
    parser.add_argument("--thresholds", type=int, default=11, help="MaxNorm t values in the grid")
    add_threads_flag(parser)
    args = parse_args(parser, argv, tiny=TINY)
    threads = apply_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    runtime = resolve_runtime(RunOptions(device="auto"))
    print(f"WB stage-2 search, {args.seeds} seeds, target: within {WITHIN} pt of the grid's best val All, "
          f"device {runtime.device}, torch {torch.__version__}, {threads} threads")
    ratios = []
    with tempfile.TemporaryDirectory() as folder_root:
        datasets = {"digits-lt": ("digits-lt", None),
                    "folder (digits, 16 px PNG)": (write_folder_dataset(Path(folder_root)), 16)}
        for label, (dataset, size) in datasets.items():
            ratios.append(dataset_rows(label, dataset, size, args, runtime))
    print(f"bayes_over_grid_trials: {max(ratios):.3f}")


if __name__ == "__main__":
    main()
