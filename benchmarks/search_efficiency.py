"""Trials TPE, GP and random search need to come within 0.5 pt of an exhaustive grid's best val accuracy.

    python benchmarks/search_efficiency.py [--seeds 5] [--stage1-epochs 30]

On two data sets (digits-lt, and a folder data set written to a temp dir from scikit-learn's digits at 16 px):
one stage-1 backbone each, then the WB stage-2 space as a grid (lambda_2 x MaxNorm t x loss). Every grid cell's
val balanced accuracy is computed once (batched heads), so each sampler's trial is a lookup of the same value a
real trial would give. Also compares TPE and random by mean best val at equal trials (the issue-4 question).
Ends with `bayes_over_grid_trials: X` (the better Bayesian sampler's median trials / grid size).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
from pathlib import Path

import numpy as np
import optuna
from PIL import Image
from sklearn.datasets import load_digits

from trainers.config import RetrainConfig, RunOptions, with_fields
from trainers.device import resolve_runtime
from trainers.experiment import evaluate_head, train_backbone
from trainers.heads import train_heads
from trainers.presets import method_defaults

WEIGHT_DECAYS = [1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0]
THRESHOLDS = [0.0, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0]
LOSSES = ["ce", "cb"]


def write_folder_dataset(root: Path) -> str:
    """sklearn digits as 16 px PNGs in folder:PATH layout, long-tailed 60..3 per class, 15 test per class."""
    digits = load_digits()
    rng = np.random.default_rng(0)
    for label in range(10):
        images = digits.images[digits.target == label][rng.permutation(int((digits.target == label).sum()))]
        keep = round(60 * 20 ** (-label / 9))
        for split, chunk in (("train", images[:keep]), ("test", images[keep:keep + 15])):
            folder = root / split / f"digit{label}"
            folder.mkdir(parents=True, exist_ok=True)
            for index, image in enumerate(chunk):
                Image.fromarray((image * 16).astype(np.uint8)).resize((16, 16)).save(folder / f"{index}.png")
    return f"folder:{root}"


def grid_table(dataset: str, image_size: int | None, stage1_epochs: int) -> dict[tuple, float]:
    runtime = resolve_runtime(RunOptions(device="auto"))
    config = with_fields(method_defaults("wb"), {"data.name": dataset, "data.image_size": image_size,
                                                 "stage1.epochs": stage1_epochs})
    backbone = train_backbone(config, runtime)
    cells = list(itertools.product(WEIGHT_DECAYS, THRESHOLDS, LOSSES))
    configs = [RetrainConfig(weight_decay=wd, maxnorm_thresh=t, loss=loss) for wd, t, loss in cells]
    heads = train_heads(backbone.features, backbone.head, configs, backbone.data.class_counts, seed=0)
    return {cell: evaluate_head(backbone.features, head, backbone.rule, config, elapsed=0).val.all
            for cell, head in zip(cells, heads, strict=True)}


def trials_to_reach(table: dict[tuple, float], sampler: optuna.samplers.BaseSampler, target: float) -> int:
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for number in range(1, len(table) + 1):
        trial = study.ask()
        cell = (trial.suggest_categorical("stage2.weight_decay", WEIGHT_DECAYS),
                trial.suggest_categorical("stage2.maxnorm_thresh", THRESHOLDS),
                trial.suggest_categorical("stage2.loss", LOSSES))
        study.tell(trial, table[cell])
        if table[cell] >= target:
            return number
    return len(table)


def best_after(table: dict[tuple, float], sampler: optuna.samplers.BaseSampler, trials: int) -> float:
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(lambda t: table[(t.suggest_categorical("stage2.weight_decay", WEIGHT_DECAYS),
                                    t.suggest_categorical("stage2.maxnorm_thresh", THRESHOLDS),
                                    t.suggest_categorical("stage2.loss", LOSSES))], n_trials=trials)
    return study.best_value


SAMPLERS = {"tpe": lambda seed: optuna.samplers.TPESampler(seed=seed, n_startup_trials=5),
            "gp": lambda seed: optuna.samplers.GPSampler(seed=seed, n_startup_trials=5),
            "random": lambda seed: optuna.samplers.RandomSampler(seed=seed)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--stage1-epochs", type=int, default=30)
    parser.add_argument("--equal-trials", type=int, default=15, help="trials for the TPE-vs-random comparison")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ratios = []
    with tempfile.TemporaryDirectory() as folder_root:
        folder = write_folder_dataset(Path(folder_root))
        datasets = {"digits-lt": ("digits-lt", None), "folder (digits 16px)": (folder, 16)}
        for label, (dataset, size) in datasets.items():
            table = grid_table(dataset, size, args.stage1_epochs)
            grid_best = max(table.values())
            print(f"\n{label}: grid of {len(table)} stage-2 configs, best val All {grid_best:.2f}%")
            print(f"{'sampler':<8} {'median trials to within 0.5 pt':>31} {'per seed':>24} "
                  f"{f'mean best @{args.equal_trials}':>16}")
            medians = {}
            for name, make in SAMPLERS.items():
                counts = [trials_to_reach(table, make(seed), grid_best - 0.5) for seed in range(args.seeds)]
                best = statistics.mean(best_after(table, make(seed), args.equal_trials) for seed in range(args.seeds))
                medians[name] = statistics.median(counts)
                print(f"{name:<8} {medians[name]:>31.1f} {str(counts):>24} {best:>16.2f}")
            ratios.append(min(medians["tpe"], medians["gp"]) / len(table))
    print(f"\nbayes_over_grid_trials: {max(ratios):.3f}")


if __name__ == "__main__":
    main()
