"""The objective of every tailtune study: sample a configuration, train it, report val accuracy per split.

The value(s) optimised are per-class-mean accuracies on the **val** split (never test); test accuracies are
stored beside them for reporting. Every trial records what produced its numbers as user attributes.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import optuna

from studies.cache import Stage1Cache
from studies.space import sample_params
from studies.spec import StudySpec
from trainers.experiment import run_stage2
from trainers.loop import EpochCallback
from trainers.provenance import provenance
from trainers.results import StageResult


class TrialContext(Protocol):
    """What the worker lends a trial: the shared stage-1 cache and a way to learn it must stop."""

    cache: Stage1Cache

    def should_stop(self) -> bool: ...


class StopRequested(Exception):
    """Raised at an epoch boundary when the worker was asked to stop (SIGTERM)."""


def run_trial(trial: optuna.Trial, spec: StudySpec, context: TrialContext) -> list[float]:
    started = time.perf_counter()
    config = spec.config_for(sample_params(trial, spec.resolved_space()))
    on_epoch = _epoch_callback(trial, context, prune=len(spec.objectives) == 1)
    cached = context.cache.backbone_for(config, on_epoch)
    stage2 = run_stage2(cached.backbone, config, context.cache.runtime, on_epoch)
    attributes = trial_attributes(cached.backbone.stage1, stage2, cached.backbone.data.class_counts)
    attributes |= {"config": config.model_dump(mode="json"), "stage1_key": cached.key,
                   "stage1_trained": cached.trained_here, "wall_time_s": time.perf_counter() - started,
                   "provenance": provenance(context.cache.runtime.device).model_dump()}
    for name, value in attributes.items():
        trial.set_user_attr(name, value)
    return [getattr(stage2.val, split) or 0.0 for split in spec.objectives]


def trial_attributes(stage1: StageResult, stage2: StageResult, class_counts: list[int]) -> dict[str, Any]:
    """Per-split accuracies (keys all/many/medium/few, percent) and diagnostics, as JSON-ready values.

    The per-split numbers are also stored flat (`val_all`, `test_few`, ...) so optuna-dashboard shows them as
    sortable columns.
    """
    flat = {f"{name}_{split}": value for name, result in (("val", stage2.val), ("test", stage2.test))
            for split, value in result.model_dump().items()}
    return flat | {
        "val": stage2.val.model_dump(), "test": stage2.test.model_dump(),
        "stage1_val": stage1.val.model_dump(), "stage1_test": stage1.test.model_dump(),
        "diagnostics": stage2.diagnostics.model_dump(),
        "stage1_weight_norms": stage1.diagnostics.weight_norms,
        "per_class_test": stage2.per_class_test, "class_counts": class_counts,
    }


def _epoch_callback(trial: optuna.Trial, context: TrialContext, *, prune: bool) -> EpochCallback:
    steps = {"count": 0}

    def on_epoch(stage: str, epoch: int, epochs: int, val_all: float) -> None:
        if context.should_stop():
            raise StopRequested(f"stop requested during {stage}, epoch {epoch}/{epochs}")
        steps["count"] += 1
        if prune:
            # Optuna prunes single-objective studies only; steps count epochs across both stages.
            trial.report(val_all, steps["count"])
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at {stage} epoch {epoch} with val All {val_all:.2f}%")

    return on_epoch
