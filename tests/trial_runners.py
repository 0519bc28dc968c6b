"""Trial runners that stand in for training where a test is about claiming, heartbeats and signals.

Worker subprocesses load them with the hidden option `--trial-runner tests.trial_runners:NAME` (the
repository root on PYTHONPATH). Each samples the study's real search space, so a retried trial's params
can be compared.
"""

from __future__ import annotations

import time

import optuna

from studies.definition.space import sample_params
from studies.definition.spec import StudySpec
from studies.run.worker import RunContext
from studies.store.storage import params_written_together

STOP_POLL_S = 0.05


class Stopped(Exception):
    """Ends a sleeping runner when the worker says the trial must stop (the objective's StopRequested)."""


def sampled_value(trial: optuna.Trial, spec: StudySpec) -> float:
    """Suggests every searched parameter; the value is the sum of the float ones, so it depends on each."""
    with params_written_together(trial):  # written as the objective writes them
        params = sample_params(trial, spec.resolved_space())
    total = sum(value for value in params.values() if isinstance(value, float))
    trial.set_user_attr("val", {"all": total, "many": total, "medium": None, "few": total / 2})
    trial.set_user_attr("test", {"all": total / 2, "many": total, "medium": None, "few": 0.0})
    return total


def sleep_for(seconds: float, context: RunContext) -> None:
    """Sleeps like a training loop with short epochs: checks the stop signal between them."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if context.should_stop():
            raise Stopped("the worker was asked to stop")
        time.sleep(STOP_POLL_S)


def instant_runner(trial: optuna.Trial, spec: StudySpec, context: RunContext) -> list[float]:
    return [sampled_value(trial, spec)] * len(spec.objectives)


def sleep_runner(trial: optuna.Trial, spec: StudySpec, context: RunContext) -> list[float]:
    value = sampled_value(trial, spec)
    sleep_for(1.0, context)
    return [value] * len(spec.objectives)


def long_runner(trial: optuna.Trial, spec: StudySpec, context: RunContext) -> list[float]:
    value = sampled_value(trial, spec)
    sleep_for(2.0, context)
    return [value] * len(spec.objectives)


def stubborn_runner(trial: optuna.Trial, spec: StudySpec, context: RunContext) -> list[float]:
    """A trial that never looks at the stop signal for 60 s: one long epoch, or a wait on another worker. Its
    user attribute `asleep` says it got there."""
    value = sampled_value(trial, spec)
    trial.set_user_attr("asleep", True)
    time.sleep(60)
    return [value] * len(spec.objectives)
