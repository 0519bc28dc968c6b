"""A study after its creation: resume it, change its budget, queue a configuration a person wants tried.

Every change runs under the study's lock (`registry.locked_study`), the lock claimers hold, so a worker never
sees half of one: a raised budget and the state it implies, or a queued trial and the budget room it takes.
"""

from __future__ import annotations

import hashlib
import json
import math

import optuna
import sqlalchemy as sa
from pydantic import BaseModel, Field

from studies.definition.records import StudyRecord
from studies.definition.space import Choices, FloatRange, ParamValue
from studies.definition.spec import StudySpec
from studies.store.db import Database
from studies.store.registry import (
    SPEC_ATTR,
    StudyNotFoundError,
    get_study,
    locked_study,
    mark_done_if_finished,
    stored_spec,
    trial_counts,
)
from studies.store.storage import trial_user_attrs, trials
from studies.store.tables import study_table
from trainers.errors import UserInputError

# Trial user attr of a queued trial: a digest of its params. A repeated request finds the trial by it instead of
# queueing a duplicate (optuna #3616); a retry clone inherits it, so the newest trial carrying it is the live one.
QUEUE_ATTR = "tailtune_queued"


class BudgetConflictError(UserInputError):
    """The budget cannot take the change: below the finished trials, or no room for a queued trial."""


class ParamsMismatchError(UserInputError):
    """Well-formed params that this study's search space does not hold (a request another study could take)."""


class QueuedTrial(BaseModel):
    number: int = Field(description="the queued trial's number; workers run queued trials before new ones")
    params: dict[str, ParamValue] = Field(description="the params as validated against the study's space")
    created: bool = Field(description="false when the same params were queued before: that trial is returned")


def resume_study(db: Database, *, study_id: int) -> StudyRecord:
    """A stopped study takes trials again; its count of consecutive failures starts over."""
    with locked_study(db, study_id=study_id) as (connection, row):
        if row is None:
            raise StudyNotFoundError.of_id(study_id)
        connection.execute(study_table.update().where(study_table.c.id == study_id)
                           .values(state="active" if row.state == "stopped" else row.state, stop_reason=None,
                                   consecutive_failures=0, updated_at=sa.func.now()))
        mark_done_if_finished(connection, study_id=study_id)
    return get_study(db, study_id=study_id)


def set_budget(db: Database, *, study_id: int, n_trials: int) -> StudyRecord:
    """Raises or lowers `n_trials`, never below the trials already finished; a done study with room runs again.

    Lowered to the finished count while trials run, the study is done and the running trials still count.
    """
    with locked_study(db, study_id=study_id) as (connection, row):
        if row is None:
            raise StudyNotFoundError.of_id(study_id)
        finished = trial_counts(connection, study_ids=[study_id])[study_id].finished
        if n_trials < finished:
            raise BudgetConflictError(f"n_trials {n_trials} is below the {finished} trials study {row.name!r} "
                                      f"has already finished; give at least {finished}")
        spec = stored_spec(row).model_copy(update={"n_trials": n_trials})
        more = n_trials > finished
        reopened = "active" if row.state == "done" and more else row.state
        # More search trials may change the top-k: the confirmation plan grows after them (store/confirmation.py).
        replan = {"confirm_planned": None} if more else {}
        connection.execute(study_table.update().where(study_table.c.id == study_id)
                           .values(n_trials=n_trials, spec_json=spec.model_dump_json(), state=reopened,
                                   updated_at=sa.func.now(), **replan))
        mark_done_if_finished(connection, study_id=study_id)
        # Optuna's copy of the spec, for those who read the study through Optuna alone, changes with the row
        # (Optuna's write joins the lock's transaction).
        db.optuna_storage().set_study_user_attr(study_id, SPEC_ATTR, spec.model_dump(mode="json"))
    return get_study(db, study_id=study_id)


def queue_trial(db: Database, *, study_id: int, params: dict[str, ParamValue]) -> QueuedTrial:
    """Queues a trial with `params` (validated against the study's space; unnamed searched params are sampled).

    Idempotent: the same params queued again return the trial queued first. A queued trial takes a place in
    the budget, so it is refused when finished, running and queued trials already fill it.
    """
    with locked_study(db, study_id=study_id) as (connection, row):
        if row is None:
            raise StudyNotFoundError.of_id(study_id)
        checked = checked_params(stored_spec(row), params)
        key = _params_key(checked)
        earlier = _queued_number(connection, study_id, key)
        if earlier is not None:
            return QueuedTrial(number=earlier, params=checked, created=False)
        counts = trial_counts(connection, study_ids=[study_id])[study_id]
        taken = counts.finished + counts.running + counts.waiting
        if taken >= row.n_trials:
            raise BudgetConflictError(
                f"study {row.name!r} has no room for another trial: {counts.finished} finished, {counts.running} "
                f"running and {counts.waiting} queued of n_trials {row.n_trials}; raise n_trials first")
        # Optuna's writes join the lock's transaction (`Storage.one_transaction`): the queued trial commits with
        # the lock's release, or not at all.
        study = optuna.load_study(study_name=row.name, storage=db.optuna_storage())
        study.enqueue_trial(checked, user_attrs={QUEUE_ATTR: key})
        number = _queued_number(connection, study_id, key)
    assert number is not None, "the trial just queued carries its key"
    return QueuedTrial(number=number, params=checked, created=True)


def checked_params(spec: StudySpec, params: dict[str, ParamValue]) -> dict[str, ParamValue]:
    """`params` as the study's space holds them (ints become floats on a float range); a UserInputError names
    the first bad parameter and what it may be."""
    space = spec.resolved_space()
    checked: dict[str, ParamValue] = {}
    for name, value in params.items():
        if name in spec.fixed:
            raise ParamsMismatchError(f"parameter {name!r} is fixed at {spec.fixed[name]!r} in this study, "
                                      "not searched")
        if name not in space:
            raise ParamsMismatchError(f"parameter {name!r} is not in the study's search space; searched: "
                                 f"{', '.join(sorted(space))}")
        checked[name] = _checked_value(name, space[name], value)
    return checked


def _checked_value(name: str, param: FloatRange | Choices, value: ParamValue) -> ParamValue:
    if isinstance(param, Choices):
        # JSON's 0 may stand for a choice of 0.0, but bool is an int in Python: True must not match a choice of 1.
        for choice in param.choices:
            if value == choice and isinstance(value, bool) == isinstance(choice, bool):
                return choice  # stored with the choice's type, as Optuna's categorical compares them
        raise ParamsMismatchError(f"parameter {name!r}: {value!r} is not one of {param.choices}")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ParamsMismatchError(f"parameter {name!r}: {value!r} is not a number")
    if not param.low <= value <= param.high:
        raise ParamsMismatchError(f"parameter {name!r}: {value} is outside [{param.low}, {param.high}]")
    return float(value)


def _params_key(params: dict[str, ParamValue]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:32]


def _queued_number(connection: sa.Connection, study_id: int, key: str) -> int | None:
    keyed = sa.and_(trial_user_attrs.c.trial_id == trials.c.trial_id, trial_user_attrs.c.key == QUEUE_ATTR,
                    trial_user_attrs.c.value_json == json.dumps(key))
    return connection.execute(sa.select(sa.func.max(trials.c.number)).join(trial_user_attrs, keyed)
                              .where(trials.c.study_id == study_id)).scalar()
