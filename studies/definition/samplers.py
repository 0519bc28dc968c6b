"""Optuna samplers and pruners from a study spec."""

from __future__ import annotations

import optuna

from studies.definition.space import Choices
from studies.definition.spec import StudySpec
from trainers.config import MAX_SEED


def build_sampler(spec: StudySpec, seed_offset: int = 0) -> optuna.samplers.BaseSampler:
    """`seed_offset` keeps concurrent workers from proposing identical start-up points with one seed."""
    # Wrapped: a seed near the top plus a worker's offset would leave the range numpy accepts and stop the worker.
    seed = (spec.seed + seed_offset) % (MAX_SEED + 1)
    if spec.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
    if spec.sampler == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    grid = {name: param.choices for name, param in spec.resolved_space().items() if isinstance(param, Choices)}
    return optuna.samplers.GridSampler(grid, seed=seed)


# Successive halving over stage-1 epochs: a trial is first judged after 10 epochs (earlier, val accuracy says more
# about the lr than about where a run ends), then at 30 and 90; at each rung it goes on only within the top third
# of the trials that reached it (reduction factor 3, the Hyperband paper's eta).
HALVING_MIN_EPOCHS = 10
HALVING_REDUCTION = 3


def build_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    pruner = spec.resolved_pruner
    if pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)
    if pruner == "successive-halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=HALVING_MIN_EPOCHS,
                                                      reduction_factor=HALVING_REDUCTION)
    if pruner == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()
