"""The objective of every tailtune study: sample a configuration, train it, report val accuracy per split.

The value(s) optimised are per-class-mean accuracies on the **val** split (never test); test accuracies are
stored beside them for reporting. Every trial records what produced its numbers as user attributes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import optuna

from studies.artifacts.cache import CachedBackbone, Stage1Cache, stage1_key
from studies.artifacts.trial_models import store_trial_model
from studies.definition.confirmation import CONFIRMS_ATTR, SEED_ATTR
from studies.definition.space import sample_params
from studies.definition.spec import StudySpec
from studies.store.storage import params_written_together, set_trial_user_attrs
from trainers.baseline import fit_linear_baseline
from trainers.config import ExperimentConfig, with_fields
from trainers.data import load_dataset
from trainers.experiment import Stage2Output, data_summary, runs_on_cached_features, stage2_output, stage2_outputs
from trainers.loop import EpochCallback
from trainers.provenance import provenance
from trainers.results import SplitRule, StageResult


class TrialContext(Protocol):
    """What the worker lends a trial: the shared stage-1 cache, a way to learn it must stop, and a way to
    claim more trials of the study to run beside it (`batch_limit` trials in all)."""

    cache: Stage1Cache
    batch_limit: int

    def should_stop(self) -> bool: ...

    def claim_more(self, count: int) -> list[optuna.Trial]: ...

    def fit_baseline_once(self, fit: Callable[[], dict[str, Any]]) -> None: ...


class StopRequested(Exception):
    """Raised at an epoch boundary when the worker was asked to stop (SIGTERM)."""


def run_trials(trial: optuna.Trial, spec: StudySpec, context: TrialContext) -> list[list[float] | Exception]:
    """Runs `trial`, and with it up to `batch_limit - 1` more trials of the study when its stage 2 reads only
    cached features of a backbone trained already: their heads then train in one batched pass, each with the
    result it would get alone. Returns the outcomes of `trial` and the claimed ones, in claim order.

    A cold backbone runs alone (with pruning), so the batch never waits on stage-1 training it could not
    share; companions whose sampled stage 1 differs form their own groups, and a cold group's
    stage 1 is judged by the pruner as a trial alone's is (`_run_members`). The first worker of a study fits
    the study's baseline before its first trial.
    """
    context.fit_baseline_once(lambda: study_baseline(spec, context.cache.runtime.data_roots))
    config = _sampled_config(trial, spec)
    if context.batch_limit < 2 or not runs_on_cached_features(config) or not context.cache.has(config):
        return [_run_sampled(trial, spec, config, context)]
    trials = [trial, *context.claim_more(context.batch_limit - 1)]
    outcomes: dict[int, list[float] | Exception] = {}
    groups: dict[str, list[tuple[int, ExperimentConfig]]] = {stage1_key(config): [(0, config)]}
    for index, companion in enumerate(trials[1:], start=1):
        try:
            companion_config = _sampled_config(companion, spec)
        except Exception as error:
            outcomes[index] = error
            continue
        groups.setdefault(stage1_key(companion_config), []).append((index, companion_config))
    for members in groups.values():
        indices = [index for index, _ in members]
        values = _run_members([trials[i] for i in indices], [c for _, c in members], spec, context)
        outcomes.update(zip(indices, values, strict=True))
    return [outcomes[index] for index in range(len(trials))]


def study_baseline(spec: StudySpec, data_roots: Sequence[Path] | None = None) -> dict[str, Any]:
    """The simple baseline (trainers/baseline.py) on the splits of the study's base configuration, as the store
    keeps it (studies/store/baselines.py); searched augmentation does not matter to it."""
    result = fit_linear_baseline(load_dataset(spec.base_config().data, data_roots))
    if result.skipped is not None:
        return {"state": "skipped", "model": result.model, "reason": result.skipped}
    return {"state": "done", **result.model_dump(mode="json", exclude={"skipped"})}


def _run_sampled(trial: optuna.Trial, spec: StudySpec, config: ExperimentConfig,
                 context: TrialContext) -> list[float]:
    started = time.perf_counter()
    # A confirmation run is judged on its final val like its search trial, never cut short.
    prune = spec.resolved_pruner != "none" and CONFIRMS_ATTR not in trial.user_attrs
    on_epoch = _epoch_callback(trial, context, prune=prune)
    cached = context.cache.backbone_for(config, on_epoch)
    stage2 = stage2_output(cached.backbone, config, context.cache.runtime, on_epoch)
    return _record(trial, spec, config, cached, stage2, context, trained_here=cached.trained_here,
                   wall_time_s=time.perf_counter() - started)


def _run_members(trials: list[optuna.Trial], configs: list[ExperimentConfig], spec: StudySpec,
                 context: TrialContext) -> list[list[float] | Exception]:
    """Trials sampled with one stage 1. Without its backbone cached, they take turns training it as a trial alone
    does (the pruner judging every epoch) until one caches it; the rest train their heads together on it."""
    outcomes: list[list[float] | Exception] = []
    for trial, config in zip(trials, configs, strict=True):
        if context.cache.has(config):
            break
        try:
            outcomes.append(_run_sampled(trial, spec, config, context))
        except StopRequested as error:
            return outcomes + [error] * (len(trials) - len(outcomes))
        except Exception as error:  # pruned or failed: the next trial trains its own stage 1
            outcomes.append(error)
    done = len(outcomes)
    if done == len(trials):
        return outcomes
    try:
        return outcomes + _run_group(trials[done:], configs[done:], spec, context)
    except Exception as error:  # the group shares its backbone's fate (stop, failed stage 1)
        return outcomes + [error] * (len(trials) - done)


def _run_group(trials: list[optuna.Trial], configs: list[ExperimentConfig], spec: StudySpec,
               context: TrialContext) -> list[list[float]]:
    # No pruning here: one trial's pruned stage 1 would end its companions too.
    cached = context.cache.backbone_for(configs[0], _epoch_callback(trials[0], context, prune=False))
    if context.should_stop():
        raise StopRequested("stop requested before a batch of stage-2 trials")
    outputs = stage2_outputs(cached.backbone, configs, context.cache.runtime)
    return [_record(trial, spec, config, cached, output, context, trained_here=cached.trained_here and n == 0,
                    wall_time_s=output.result.wall_time_s, batch_size=len(trials))
            for n, (trial, config, output) in enumerate(zip(trials, configs, outputs, strict=True))]


def _sampled_config(trial: optuna.Trial, spec: StudySpec) -> ExperimentConfig:
    # One write for all of the claimed trial's params instead of Optuna's commit per suggest.
    with params_written_together(trial):
        params = sample_params(trial, spec.resolved_space())
    config = spec.config_for(params)
    # A confirmation run trains its search trial's params with another seed (studies/definition/confirmation.py).
    seed = trial.user_attrs.get(SEED_ATTR)
    return config if seed is None else with_fields(config, {"seed": seed})


def _record(trial: optuna.Trial, spec: StudySpec, config: ExperimentConfig, cached: CachedBackbone,
            output: Stage2Output, context: TrialContext, *, trained_here: bool, wall_time_s: float,
            batch_size: int = 1) -> list[float]:
    """Stores the trial's stage-2 output (studies/artifacts/trial_models.py), its results and provenance as user
    attributes; returns its objective values."""
    stage2, runtime = output.result, context.cache.runtime
    attributes = trial_attributes(cached.backbone.stage1, stage2, cached.backbone.data.class_counts)
    attributes |= {"config": config.model_dump(mode="json"), "stage1_key": cached.key,
                   "split_rule": cached.backbone.rule.model_dump(),
                   "val_coverage": cached.backbone.data.val_coverage().model_dump(),
                   "stage1_trained": trained_here, "batch_size": batch_size, "wall_time_s": wall_time_s,
                   "data": data_summary(cached.backbone.data, config).model_dump(),
                   "provenance": provenance(runtime).model_dump()}
    attributes |= store_trial_model(context.cache.artifact_dir, cached, config, output, runtime)
    set_trial_user_attrs(trial, attributes)
    return objective_values(stage2, spec.objectives, cached.backbone.rule)


def objective_values(stage2: StageResult, objectives: list[str], rule: SplitRule) -> list[float]:
    """The val accuracies the study maximises; a split with no val class has no accuracy, and scoring it 0
    would rank trials on nothing, so the trial fails saying why."""
    values = [getattr(stage2.val, split) for split in objectives]
    empty = [split for split, value in zip(objectives, values, strict=True) if value is None]
    if empty:
        raise EmptyObjectiveSplit(f"objective {', '.join(empty)}: no class of that split has val images "
                                  f"(rule: {rule.rule}); choose objectives among the splits this data set fills")
    return values


class EmptyObjectiveSplit(ValueError):
    """An objective's split has no val class on this trial's data."""


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
    """Checks for a stop request every epoch; with `prune`, also reports the val accuracy (the trial's curve in
    optuna-dashboard) and prunes. Without it no epoch is evaluated: on small data sets that is ~10 % of stage 1."""
    steps = {"count": 0}

    def on_epoch(stage: str, epoch: int, epochs: int, val_all: Callable[[], float]) -> None:
        if context.should_stop():
            raise StopRequested(f"stop requested during {stage}, epoch {epoch}/{epochs}")
        steps["count"] += 1
        if prune:
            # Optuna prunes single-objective studies only; steps count epochs across both stages.
            accuracy = val_all()
            trial.report(accuracy, steps["count"])
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at {stage} epoch {epoch} with val All {accuracy:.2f}%")

    return on_epoch
