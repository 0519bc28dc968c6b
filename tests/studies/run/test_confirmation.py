"""Confirmation over seeds: when the search budget is spent, the top-k configurations and the recipe are trained
again with further seeds through the same claims, in a linked study the sampler never reads; the study's answer
is the best mean val over seeds, with intervals and best - recipe paired by seed."""

from __future__ import annotations

import csv
import html
import io
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from studies.definition.confirmation import CONFIRMS_ATTR, SEED_ATTR
from studies.definition.spec import StudySpec, parse_spec
from studies.reports.export import export_trial
from studies.reports.report import build_report
from studies.reports.trials_csv import trials_csv
from studies.run.worker import WorkerSettings, one_at_a_time, run_worker
from studies.store import lifecycle, registry
from studies.store.confirmation import linked_name
from studies.store.db import Database
from tailtune.cli import app
from tests.trial_runners import instant_runner

TINY = {"stage1.epochs": 3, "stage1.lr": 0.01, "stage2.epochs": 2}


def _spec(name: str, **fields: object) -> StudySpec:
    return parse_spec({"name": name, "method": "wb", "n_trials": 3, "sampler": "random", "fixed": TINY,
                       "confirm": {"top_k": 2, "seeds": 3}, **fields})


@pytest.mark.postgres
@pytest.mark.slow
def test_a_study_confirms_its_top_configurations_and_recipe_over_seeds(postgres_database: Database,
                                                                       tmp_path: Path) -> None:
    db = postgres_database
    record = registry.create_study(db, spec=_spec("confirmed"))
    run_worker(db, study_names=["confirmed"], settings=WorkerSettings(device="cpu", handle_signals=False),
               artifact_dir=tmp_path / "artifacts")

    search = optuna.load_study(study_name="confirmed", storage=db.optuna_storage())
    assert [t.state for t in search.trials] == [TrialState.COMPLETE] * 3  # the sampler's history: the search only
    linked = optuna.load_study(study_name=linked_name("confirmed"), storage=db.optuna_storage())
    runs = linked.get_trials(states=(TrialState.COMPLETE,))
    confirmed = {(t.user_attrs[CONFIRMS_ATTR], t.user_attrs[SEED_ATTR]) for t in runs}
    sources = {number for number, _ in confirmed}
    assert 0 in sources and len(sources) in (2, 3)  # the recipe (trial 0) and the top 2, which may include it
    assert confirmed == {(number, seed) for number in sources for seed in (1, 2)} and len(runs) == len(confirmed)
    for run in runs:  # each run trains its search trial's params with its own seed
        assert run.user_attrs["config"]["seed"] == run.user_attrs[SEED_ATTR]
        assert run.params == search.trials[run.user_attrs[CONFIRMS_ATTR]].params

    record = registry.get_study(db, study_id=record.id)
    answer = record.confirmed
    assert record.state == "done" and answer is not None and answer.complete
    assert answer.runs_finished == answer.runs_planned == len(runs)
    assert answer.recipe is not None and answer.recipe.trial_number == 0 and answer.recipe.seeds == [0, 1, 2]
    best_val = answer.best.val["all"]
    assert best_val is not None and best_val.n == 3 and best_val.ci95 is not None
    assert best_val.mean == max(c.val["all"].mean for c in answer.candidates)
    headline = answer.best_minus_recipe
    assert headline is not None and headline.n == 3 and headline.ci95 is not None
    assert answer.verdict and ("seed noise" in answer.verdict or "recipe is the confirmed best" in answer.verdict)
    assert any(c.test["all"].std > 0 for c in answer.candidates)  # seeds do move the numbers

    # Every place that shows the study's answer shows the confirmed one.
    page = build_report(db, "confirmed", tmp_path / "report").html.read_text()
    assert "Confirmed over seeds" in page and html.escape(answer.verdict) in page
    shown = CliRunner().invoke(app, ["study", "best", "confirmed", "--storage", db.url])
    assert shown.exit_code == 0 and "confirmed over seeds" in shown.stdout and "best - recipe" in shown.stdout
    exported = export_trial(db, study_id=record.id, trial_number=None, artifact_dir=tmp_path / "artifacts")
    assert exported.trial_number == answer.best.trial_number and exported.card["confirmed"]["is_confirmed_best"]
    rows = list(csv.DictReader(io.StringIO("".join(trials_csv(db, study_id=record.id)))))
    best_row = next(row for row in rows if row["number"] == str(answer.best.trial_number))
    assert best_row["confirmed_best"] == "True" and best_row["seeds"] == "3"
    assert float(best_row["test_all_mean_over_seeds"]) == pytest.approx(answer.best.test["all"].mean)


def test_confirmation_runs_keep_the_exact_budget_and_stay_out_of_the_search(database: Database,
                                                                            tmp_path: Path) -> None:
    """Two workers; a confirmation with top 2 of 6 trials, 3 seeds: exactly 6 search trials and 2 x 2 (or, with
    the recipe outside the top 2, 3 x 2) runs, each once."""
    spec = _spec("budget", n_trials=6)
    record = registry.create_study(database, spec=spec)
    settings = WorkerSettings(device="cpu", handle_signals=False, batch_trials=1)
    for _ in range(2):
        run_worker(database, study_names=None, settings=settings, artifact_dir=tmp_path,
                   runner=one_at_a_time(instant_runner))
    search = optuna.load_study(study_name="budget", storage=database.optuna_storage())
    linked = optuna.load_study(study_name=linked_name("budget"), storage=database.optuna_storage())
    assert len(search.trials) == 6
    pairs = [(t.user_attrs[CONFIRMS_ATTR], t.user_attrs[SEED_ATTR]) for t in linked.trials]
    assert len(pairs) == len(set(pairs)) and len(pairs) in (4, 6)
    assert all(t.state == TrialState.COMPLETE for t in linked.trials)
    record = registry.get_study(database, study_id=record.id)
    assert record.state == "done" and record.confirmed is not None and record.confirmed.complete
    registry.delete_study(database, study_id=record.id)
    with pytest.raises(KeyError):  # the linked study goes with its study
        database.optuna_storage().get_study_id_from_name(linked_name("budget"))


def test_no_confirm_makes_no_linked_study(database: Database) -> None:
    registry.create_study(database, spec=_spec("plain", confirm=None))
    with pytest.raises(KeyError):
        database.optuna_storage().get_study_id_from_name(linked_name("plain"))
    record = registry.get_study_by_name(database, name="plain")
    registry.delete_study(database, study_id=record.id)


def test_a_budget_raised_after_confirmation_confirms_the_new_search_trials_too(database: Database,
                                                                              tmp_path: Path) -> None:
    """The user extends a confirmed study: its answer must weigh the trials the extension finds, not only the
    configurations planned when the first budget was spent; the runs already made stay in it."""
    record = registry.create_study(database, spec=_spec("extended", confirm={"top_k": 1, "seeds": 2}))
    settings = WorkerSettings(device="cpu", handle_signals=False, batch_trials=1)

    def run() -> None:
        run_worker(database, study_names=None, settings=settings, artifact_dir=tmp_path,
                   runner=one_at_a_time(instant_runner))

    run()
    first = registry.get_study(database, study_id=record.id).confirmed
    assert first is not None and first.complete
    lifecycle.set_budget(database, study_id=record.id, n_trials=5)
    # Beats every earlier trial: the value is the sum of the float params (tests/trial_runners.py).
    queued = lifecycle.queue_trial(database, study_id=record.id,
                                   params={"stage2.weight_decay": 20.0, "stage2.maxnorm_thresh": 1.0})
    run()

    record = registry.get_study(database, study_id=record.id)
    answer = record.confirmed
    assert record.state == "done" and answer is not None and answer.complete
    assert answer.best.trial_number == queued.number and answer.best.seeds == [0, 1]
    assert {c.trial_number for c in answer.candidates} >= {c.trial_number for c in first.candidates}
    linked = optuna.load_study(study_name=linked_name("extended"), storage=database.optuna_storage())
    pairs = [(t.user_attrs[CONFIRMS_ATTR], t.user_attrs[SEED_ATTR]) for t in linked.trials]
    assert len(pairs) == len(set(pairs)) == answer.runs_planned == answer.runs_finished
