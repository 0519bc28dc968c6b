"""The default pruner for new data: successive halving over stage-1 epochs, judged first at epoch 10."""

from __future__ import annotations

import optuna

from studies.definition.samplers import HALVING_MIN_EPOCHS, HALVING_REDUCTION, build_pruner
from studies.definition.spec import parse_spec


def test_successive_halving_judges_a_trial_at_epochs_10_and_30_and_keeps_its_curve() -> None:
    spec = parse_spec({"name": "halving", "n_trials": 7})
    assert spec.pruner == "auto" and (HALVING_MIN_EPOCHS, HALVING_REDUCTION) == (10, 3)
    study = optuna.create_study(direction="maximize", pruner=build_pruner(spec))

    def run(level: float) -> int | None:
        """A trial whose val accuracy climbs from `level` over 100 epochs; the epoch it was pruned at."""
        trial = study.ask()
        for epoch in range(1, 101):
            trial.report(level + epoch / 10, epoch)
            if trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                return epoch
        study.tell(trial, level + 10)
        return None

    # Below the best at epoch 10: pruned there; above it: on to epoch 30, where it must be in the top third.
    assert [run(level) for level in (50, 40, 60, 55, 45, 58, 30)] == [None, 10, None, 10, 10, 30, 10]
    pruned = study.trials[1]
    assert pruned.state == optuna.trial.TrialState.PRUNED and sorted(pruned.intermediate_values) == list(
        range(1, 11))  # the partial curve stays with the pruned trial
