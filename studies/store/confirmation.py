"""Confirmation runs in the database: the linked Optuna study, the plan, the claim, and the answer read back.

What confirmation is and why: studies/definition/confirmation.py. Here:

- a study with confirmation gets a linked Optuna study (`<name>~confirm`) when it is created; its id is the
  study row's `confirm_study_id`. The search's sampler loads only the search study, so confirmation runs are
  never part of its history (the linked study is visible in optuna-dashboard, for those who want them);
- the first claim after the search budget is spent (finished >= n_trials, nothing running) fixes the plan under
  the study's lock, in the claim's transaction: `confirm_plan_json`, `confirm_planned`. A budget raised later
  (lifecycle.set_budget) clears `confirm_planned`, so the study is not done until the first claim after the
  longer search adds the runs its top-k needs; the runs planned before stay in the plan (their results stand,
  and every COMPLETE run of the linked study stays a planned one, which `budget_met` counts on);
- every claim in the confirmation phase queues again any planned run that has no WAITING, RUNNING or COMPLETE
  trial (one that failed by exception is not cloned by the reaper), then starts WAITING runs only, as many as
  `confirm_planned` minus COMPLETE and RUNNING allows: the same exact budget as the search's;
- the study is done when the search budget is met and `confirm_planned` runs are COMPLETE (`budget_met`).
"""

from __future__ import annotations

import json
from typing import Any

import optuna
import sqlalchemy as sa
from optuna.study import StudyDirection
from optuna.trial import TrialState

from studies.definition.confirmation import (
    CONFIRMS_ATTR,
    LINKED_SUFFIX,
    SEED_ATTR,
    ConfirmedAnswer,
    PlannedRun,
    SearchTrial,
    SeedRun,
    confirmed_answer,
    plan_runs,
)
from studies.definition.spec import StudySpec
from studies.store.storage import Storage, trial_user_attrs, trials
from studies.store.tables import study_table

# Trial user attr marking the recipe trial; Optuna's retry of a failed trial copies user attrs, so a retry of
# the recipe is the recipe too.
RECIPE_ATTR = "recipe"
_LIVE = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE)


def linked_name(study_name: str) -> str:
    return study_name + LINKED_SUFFIX


def create_linked_study(storage: Storage, spec: StudySpec) -> int | None:
    """The Optuna study that holds the confirmation runs; None when the spec has no confirmation."""
    if spec.confirm is None:
        return None
    directions = [StudyDirection[direction.upper()] for direction in spec.directions]
    return storage.create_new_study(directions, study_name=linked_name(spec.name))


def load_linked(storage: Storage, study_name: str) -> optuna.Study:
    # Every run is queued with all its params fixed, so the sampler draws nothing; no run is pruned.
    return optuna.load_study(study_name=linked_name(study_name), storage=storage,
                             sampler=optuna.samplers.RandomSampler(seed=0), pruner=optuna.pruners.NopPruner())


def budget_met() -> sa.ColumnElement[bool]:
    """Per study row: the search's COMPLETE + PRUNED trials reach n_trials and every planned confirmation run is
    COMPLETE (a study without confirmation: the first part alone)."""
    searched = study_table.c.n_trials <= _count(study_table.c.id, (TrialState.COMPLETE, TrialState.PRUNED))
    confirmed = sa.or_(study_table.c.confirm_study_id.is_(None),
                       sa.and_(study_table.c.confirm_planned.is_not(None),
                               study_table.c.confirm_planned <= _count(study_table.c.confirm_study_id,
                                                                       (TrialState.COMPLETE,))))
    return sa.and_(searched, confirmed)


def _count(study_id: sa.ColumnElement[int], states: tuple[TrialState, ...]) -> sa.ScalarSelect[int]:
    return (sa.select(sa.func.count()).where(trials.c.study_id == study_id, trials.c.state.in_(states))
            .scalar_subquery())


# ---------------------------------------------------------------------------------------------- claims
def start_runs(connection: sa.Connection, *, storage: Storage, search: optuna.Study, linked: optuna.Study,
               row: Any, spec: StudySpec, count: int) -> list[int]:
    """Up to `count` confirmation runs set RUNNING, in the caller's locked transaction (the search is over)."""
    assert spec.confirm is not None and row.confirm_study_id is not None
    plan = _plan(row) or []
    if row.confirm_planned is None:
        known = {(run.trial, run.seed) for run in plan}
        plan += [run for run in plan_runs(spec.confirm, _search_trials(search), spec.seed)
                 if (run.trial, run.seed) not in known]
        connection.execute(study_table.update().where(study_table.c.id == row.id).values(
            confirm_planned=len(plan), confirm_plan_json=json.dumps([run.model_dump() for run in plan])))
    live = linked.get_trials(deepcopy=False, states=_LIVE)
    present = {(t.user_attrs.get(CONFIRMS_ATTR), t.user_attrs.get(SEED_ATTR)) for t in live}
    for run in plan:
        if (run.trial, run.seed) not in present:
            linked.enqueue_trial(run.params, user_attrs={CONFIRMS_ATTR: run.trial, SEED_ATTR: run.seed})
    taken = sum(t.state in (TrialState.RUNNING, TrialState.COMPLETE) for t in live)
    allowed = min(count, len(plan) - taken)
    return storage.start_trials(connection, study=linked, count=allowed, create_new=False) if allowed > 0 else []


def _plan(row: Any) -> list[PlannedRun] | None:
    if row.confirm_plan_json is None:
        return None
    return [PlannedRun.model_validate(run) for run in json.loads(row.confirm_plan_json)]


def _search_trials(search: optuna.Study) -> list[SearchTrial]:
    return [SearchTrial(number=t.number, value=t.values[0], params=t.params, recipe=bool(t.user_attrs.get(RECIPE_ATTR)))
            for t in search.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]


# ---------------------------------------------------------------------------------------------- the answer
def read_answer(connection: sa.Connection, *, row: Any, spec: StudySpec) -> ConfirmedAnswer | None:
    """The confirmed answer so far: the search trials of the plan (at the study's seed) and the COMPLETE runs."""
    plan = _plan(row)
    if not plan:
        return None
    numbers = sorted({run.trial for run in plan})
    search = _finished_splits(connection, sa.and_(trials.c.study_id == row.id, trials.c.number.in_(numbers)))
    confirming = _finished_splits(connection, trials.c.study_id == row.confirm_study_id)
    runs: dict[int, list[SeedRun]] = {number: [] for number in numbers}
    for number, attrs in search.items():
        runs[number].append(SeedRun(seed=spec.seed, val=attrs["val"], test=attrs["test"]))
    for attrs in confirming.values():
        runs[attrs[CONFIRMS_ATTR]].append(SeedRun(seed=attrs[SEED_ATTR], val=attrs["val"], test=attrs["test"]))
    first = {run.trial: run for run in plan}
    search_trials = {number: SearchTrial(number=number, value=0.0, params=first[number].params,
                                         recipe=first[number].recipe) for number in numbers}
    return confirmed_answer(runs, search_trials, objective=spec.objectives[0], runs_planned=len(plan),
                            runs_finished=len(confirming))


def _finished_splits(connection: sa.Connection, where: sa.ColumnElement[bool]) -> dict[int, dict[str, Any]]:
    """Trial number -> its val/test (and confirmation attrs) for COMPLETE trials matching `where`."""
    keys = ("val", "test", CONFIRMS_ATTR, SEED_ATTR)
    query = (sa.select(trials.c.number, trial_user_attrs.c.key, trial_user_attrs.c.value_json)
             .join(trial_user_attrs, trial_user_attrs.c.trial_id == trials.c.trial_id)
             .where(where, trials.c.state == TrialState.COMPLETE, trial_user_attrs.c.key.in_(keys)))
    found: dict[int, dict[str, Any]] = {}
    for number, key, value_json in connection.execute(query):
        found.setdefault(number, {})[key] = json.loads(value_json)
    return {number: attrs for number, attrs in found.items() if "val" in attrs and "test" in attrs}
