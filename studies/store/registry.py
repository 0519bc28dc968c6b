"""Create, read, page, stop and delete studies; read trials and live workers. The API and the CLI call these.

A tailtune study is an ordinary Optuna study plus one `tailtune_study` row (same id) holding its spec, budget
and state. Lists are read from Optuna's tables with LIMIT/OFFSET in SQL, never through `study.trials`, so
they stay fast at 10k trials (optuna #3053, #760).
"""

from __future__ import annotations

import contextlib
import json
import math
import warnings
from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, Literal

import optuna
import sqlalchemy as sa
from optuna.study import StudyDirection
from optuna.trial import TrialState
from pydantic import ValidationError

from studies.definition.confirmation import ConfirmedAnswer
from studies.definition.records import (
    PAGE_SIZE,
    BaselineComparison,
    Page,
    RecipeComparison,
    StudyRecord,
    StudySummary,
    TrialCounts,
    TrialRecord,
    best_minus,
)
from studies.definition.spec import StudySpec, field_problems
from studies.definition.walls import range_walls
from studies.store import confirmation
from studies.store.confirmation import RECIPE_ATTR
from studies.store.db import Database, retry_transient, utc
from studies.store.storage import (
    FINITE,
    WORKER_ATTR,
    Storage,
    optuna_studies,
    read_study_user_attr,
    stored_value,
    trial_params,
    trial_system_attrs,
    trial_user_attrs,
    trial_values,
    trials,
)
from studies.store.tables import study_table
from trainers.errors import UserInputError

SPEC_ATTR = "tailtune_spec"  # study user attr: the spec, for anyone reading the study through Optuna alone
# Study user attr: the study's simple baseline, fitted once by the first worker (studies/store/baselines.py).
BASELINE_ATTR = "tailtune_baseline"
SPLIT_ATTRS = ("val", "test", "diagnostics", "val_coverage")


class StudyExistsError(UserInputError):
    """A study of that name exists; choose another name or delete the old study."""


class StudyNotFoundError(UserInputError):
    """No such study; list studies to see the names."""

    @classmethod
    def of_id(cls, study_id: int) -> StudyNotFoundError:
        return cls(f"no study with id {study_id}; list studies to see their ids")


class StudyBusyError(UserInputError):
    """The study still runs trials; stop it and wait, or delete with force."""


class StudyUnreadableError(UserInputError):
    """A study's stored spec no longer validates (written by an older tailtune, or by hand)."""


def stored_spec(row: Any) -> StudySpec:
    """The spec of a study row; StudyUnreadableError naming the fields when it no longer validates."""
    try:
        return StudySpec.model_validate_json(row.spec_json)
    except ValidationError as error:
        raise StudyUnreadableError(
            f"study {row.id} ({row.name}) was stored with a spec this tailtune no longer accepts: "
            f"{field_problems(error)[:1000]}; its trials are still in Optuna (optuna.load_study), or delete the "
            f"study with force to use the name again") from None


# ---------------------------------------------------------------------------------------------- studies
def create_study(db: Database, *, spec: StudySpec) -> StudyRecord:
    """Creates the Optuna study, then our row; a failure after the first step deletes the Optuna study."""
    storage = db.optuna_storage()
    directions = [StudyDirection[direction.upper()] for direction in spec.directions]
    try:
        study_id = storage.create_new_study(directions, study_name=spec.name)
    except optuna.exceptions.DuplicatedStudyError:
        raise StudyExistsError(f"a study named {spec.name!r} exists; choose another name or delete it first "
                               f"(tailtune study delete {spec.name})") from None
    try:
        storage.set_study_user_attr(study_id, SPEC_ATTR, spec.model_dump(mode="json"))
        # Named metrics ("val all", "val few") label the axes in optuna-dashboard and the report; the API is
        # marked experimental in optuna 5.0.0, which we pin.
        study = optuna.load_study(study_name=spec.name, storage=storage)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([f"val {split}" for split in spec.objectives])
        recipe = spec.recipe_params()
        if recipe is not None:
            # Trial 0 is the recipe, so the best val found is never below it (workers take WAITING trials first).
            study.enqueue_trial(recipe, user_attrs={RECIPE_ATTR: True})
        linked_id = confirmation.create_linked_study(storage, spec)
        _insert_study_row(db, study_id, spec, linked_id)
    except BaseException:
        _delete_optuna_studies(storage, spec.name)
        raise
    return get_study(db, study_id=study_id)


def _delete_optuna_studies(storage: Storage, name: str) -> None:
    """The study's Optuna study and its linked confirmation study, whichever exist."""
    for study_name in (name, confirmation.linked_name(name)):
        with contextlib.suppress(KeyError):  # not created, or already deleted through Optuna
            storage.delete_study(storage.get_study_id_from_name(study_name))


def _insert_study_row(db: Database, study_id: int, spec: StudySpec, linked_id: int | None) -> None:
    with db.engine.begin() as connection:
        # Rows left by studies deleted through Optuna (SQLite does not cascade): one holding this name, or
        # this id, which SQLite hands out again after a delete.
        orphan_of_name = sa.and_(study_table.c.name == spec.name,
                                 study_table.c.id.not_in(sa.select(optuna_studies.c.study_id)))
        connection.execute(study_table.delete().where(sa.or_(study_table.c.id == study_id, orphan_of_name)))
        connection.execute(study_table.insert().values(
            id=study_id, name=spec.name, state="active", method=spec.method, dataset=spec.dataset,
            n_trials=spec.n_trials, spec_json=spec.model_dump_json(), confirm_study_id=linked_id))


def get_study(db: Database, *, study_id: int) -> StudyRecord:
    records = _study_records(db, study_table.c.id == study_id, offset=0, limit=1, with_spec=True)
    if not records:
        raise StudyNotFoundError.of_id(study_id)
    return records[0]


def get_study_by_name(db: Database, *, name: str) -> StudyRecord:
    records = _study_records(db, study_table.c.name == name, offset=0, limit=1, with_spec=True)
    if not records:
        raise StudyNotFoundError(f"no study named {name!r}; create it: tailtune study create {name} ...")
    return records[0]


def study_id_by_name(db: Database, *, name: str) -> int:
    """The id alone, without reading the spec: a worker must find a study whose spec no longer loads, to stop it."""
    with db.engine.connect() as connection:
        found = connection.execute(sa.select(study_table.c.id).where(study_table.c.name == name)).scalar()
    if found is None:
        raise StudyNotFoundError(f"no study named {name!r}; create it: tailtune study create {name} ...")
    return found


def list_studies(db: Database, *, state: str | None = None, name: str | None = None, offset: int = 0,
                 limit: int = PAGE_SIZE) -> Page[StudySummary]:
    """One page of studies without their specs (a spec can be large; get_study has it)."""
    where = sa.and_(_derived_state() == state if state is not None else sa.true(),
                    study_table.c.name == name if name is not None else sa.true())
    count = sa.select(sa.func.count()).select_from(_joined_studies()).where(where)
    with db.engine.connect() as connection:
        total = connection.execute(count).scalar_one()
    items = _study_records(db, where, offset=offset, limit=limit, with_spec=False)
    return Page[StudySummary](items=items, total=total, offset=offset, limit=limit)


def _derived_state() -> sa.ColumnElement[str]:
    """The state a record shows and the list filters on: an active study whose budget is used up is done, even
    before a worker has stored that."""
    used_up = sa.and_(study_table.c.state == "active", confirmation.budget_met())
    return sa.case((used_up, "done"), else_=study_table.c.state)


def open_study_ids(db: Database, *, among: Sequence[int] | None) -> list[int]:
    """Ids of the active studies whose search or confirmation has trials left (of `among`, or of all), oldest
    first: those a worker waits on, even when it cannot claim, because a trial that dies elsewhere comes back as
    a retry someone must run."""
    query = sa.select(study_table.c.id).where(study_table.c.state == "active", sa.not_(confirmation.budget_met()))
    if among is not None:
        query = query.where(study_table.c.id.in_(among))

    def read() -> list[int]:
        with db.engine.connect() as connection:
            return list(connection.execute(query.order_by(study_table.c.id)).scalars())

    return retry_transient(read, what="list open studies")


def stop_study(db: Database, *, study_id: int) -> StudyRecord:
    """No new trials are claimed; trials already running finish and are counted."""
    if not mark_stopped(db, study_id=study_id, reason="stopped on request"):
        raise StudyNotFoundError.of_id(study_id)
    return get_study(db, study_id=study_id)


def mark_stopped(db: Database, *, study_id: int, reason: str) -> bool:
    """Stops an active study with `reason` as its stop_reason; False when there is no such study."""
    with db.engine.begin() as connection:
        found = connection.execute(sa.select(study_table.c.id).where(study_table.c.id == study_id)).first()
        connection.execute(study_table.update()
                           .where(study_table.c.id == study_id, study_table.c.state == "active")
                           .values(state="stopped", stop_reason=reason, updated_at=sa.func.now()))
    return found is not None


def delete_study(db: Database, *, study_id: int, force: bool = False) -> None:
    """Deletes the study with its trials; refuses while trials run unless `force`."""
    storage = db.optuna_storage()
    with locked_study(db, study_id=study_id, storage=storage) as (connection, row):
        if row is None:
            raise StudyNotFoundError.of_id(study_id)
        running = trial_counts(connection, study_ids=[study_id])[study_id].running
        if running and not force:
            raise StudyBusyError(f"study {row.name!r} has {running} running trial(s); stop it "
                                 f"(tailtune study stop {row.name}), wait for them, or delete with force")
        connection.execute(study_table.delete().where(study_table.c.id == study_id))
        # In the same transaction: a failure between the two would leave an Optuna study no tailtune study shows.
        for optuna_id in connection.execute(sa.select(optuna_studies.c.study_id).where(
                optuna_studies.c.study_name.in_([row.name, confirmation.linked_name(row.name)]))).scalars():
            storage.delete_study(optuna_id)


@contextlib.contextmanager
def locked_study(db: Database, *, study_id: int,
                 storage: Storage | None = None) -> Iterator[tuple[sa.Connection, Any]]:
    """Holds the study's lock for one short transaction; yields the connection and the row (None if absent).

    PostgreSQL: `SELECT ... FOR UPDATE` on our study row, so claimers, stop and delete queue on it and each
    sees what the previous holder committed (READ COMMITTED re-reads after the wait). SQLite: a file lock, which
    serialises the holders before their transactions start. Optuna's calls on `storage` (default: the plain one)
    made in the block join its transaction, on its one connection; a rollback of theirs aborts the whole block
    (`Storage.one_transaction`).
    """
    query = sa.select(study_table).where(study_table.c.id == study_id)
    storage = storage or db.optuna_storage()
    if db.is_sqlite:
        with db.named_lock(f"study:{study_id}"), storage.one_transaction() as connection:
            yield connection, connection.execute(query).first()
        return
    with storage.one_transaction() as connection:
        yield connection, connection.execute(query.with_for_update()).first()


def trial_counts(connection: sa.Connection, *, study_ids: Sequence[int]) -> dict[int, TrialCounts]:
    query = (sa.select(trials.c.study_id, trials.c.state, sa.func.count())
             .where(trials.c.study_id.in_(study_ids)).group_by(trials.c.study_id, trials.c.state))
    found: dict[int, dict[str, int]] = defaultdict(dict)
    for study_id, state, count in connection.execute(query):
        found[study_id][state.name.lower()] = count
    return {study_id: TrialCounts(**found[study_id]) for study_id in study_ids}


def mark_done_if_finished(connection: sa.Connection, *, study_id: int) -> None:
    """Sets an active study whose budget (search and confirmation) is used up to done, in one statement of the
    caller's transaction."""
    connection.execute(study_table.update()
                       .where(study_table.c.id == study_id, study_table.c.state == "active",
                              confirmation.budget_met())
                       .values(state="done", updated_at=sa.func.now()))


def _joined_studies() -> sa.Join:
    # Inner join: a row whose Optuna study was deleted through Optuna or the dashboard is not a study.
    return study_table.join(optuna_studies, optuna_studies.c.study_id == study_table.c.id)


def _study_records(db: Database, where: sa.ColumnElement[bool], *, offset: int, limit: int,
                   with_spec: bool) -> list[Any]:
    """StudyRecords with their specs, or StudySummaries without (spec_json is then not even read)."""
    columns = [column for column in study_table.c if with_spec or column.name != "spec_json"]

    def read() -> list[Any]:
        with db.engine.connect() as connection:
            rows = connection.execute(sa.select(*columns, _derived_state().label("shown_state"))
                                      .select_from(_joined_studies()).where(where)
                                      .order_by(study_table.c.id).offset(offset).limit(limit)).all()
            ids = [row.id for row in rows]
            counts = trial_counts(connection, study_ids=ids)
            best, recipe = _best_trials(connection, ids), _recipe_trials(connection, ids)
            details = _TrialDetails.read(connection, [trial_id for trial_id, _ in [*best.values(), *recipe.values()]])
            baselines = read_study_user_attr(connection, study_ids=ids, key=BASELINE_ATTR)
            confirmed = {row.id: confirmation.read_answer(connection, row=row, spec=stored_spec(row))
                         for row in rows} if with_spec else {}
        return [_study_record(row, counts[row.id], best.get(row.id), recipe.get(row.id), details, with_spec,
                              baselines.get(row.id), confirmed.get(row.id)) for row in rows]

    return retry_transient(read, what="read studies")


def _study_record(row: Any, counts: TrialCounts, best: tuple[int, int] | None, recipe: tuple[int, int] | None,
                  details: _TrialDetails, with_spec: bool, baseline: dict[str, Any] | None,
                  confirmed: ConfirmedAnswer | None) -> StudySummary:
    fields: dict[str, Any] = {
        "id": row.id, "name": row.name, "state": row.shown_state, "method": row.method, "dataset": row.dataset,
        "n_trials": row.n_trials, "counts": counts, "stop_reason": row.stop_reason,
        "created_at": utc(row.created_at), "updated_at": utc(row.updated_at)}
    if best is not None:
        trial_id, number = best
        fields |= {"best_trial_number": number, "best_values": details.values.get(trial_id),
                   "best_params": details.params.get(trial_id, {}),
                   "best_val": details.user_attrs[trial_id].get("val"),
                   "best_test": details.user_attrs[trial_id].get("test"),
                   "best_val_coverage": details.user_attrs[trial_id].get("val_coverage")}
    if recipe is not None and "val" in details.user_attrs[recipe[0]]:
        attrs = details.user_attrs[recipe[0]]
        fields["recipe"] = RecipeComparison(
            trial_number=recipe[1], val=attrs["val"], test=attrs["test"],
            best_minus_recipe_val=best_minus(fields.get("best_val"), attrs["val"]),
            best_minus_recipe_test=best_minus(fields.get("best_test"), attrs["test"]))
    if baseline is not None:
        fields["baseline"] = BaselineComparison.of(baseline, fields.get("best_val"), fields.get("best_test"))
    if with_spec:
        spec = stored_spec(row)
        return StudyRecord(**fields, spec=spec, walls=range_walls(spec, fields.get("best_params") or {}),
                           confirmed=confirmed)
    return StudySummary(**fields)


def _recipe_trials(connection: sa.Connection, study_ids: list[int]) -> dict[int, tuple[int, int]]:
    """study id -> (trial id, number) of its first COMPLETE recipe trial (trial 0, or a retry of it)."""
    marked = sa.and_(trial_user_attrs.c.trial_id == trials.c.trial_id, trial_user_attrs.c.key == RECIPE_ATTR)
    rank = sa.func.row_number().over(partition_by=trials.c.study_id, order_by=trials.c.number).label("rank")
    ranked = (sa.select(trials.c.study_id, trials.c.trial_id, trials.c.number, rank).join(trial_user_attrs, marked)
              .where(trials.c.study_id.in_(study_ids), trials.c.state == TrialState.COMPLETE).subquery())
    rows = connection.execute(sa.select(ranked.c.study_id, ranked.c.trial_id, ranked.c.number)
                              .where(ranked.c.rank == 1))
    return {row.study_id: (row.trial_id, row.number) for row in rows}


def _best_trials(connection: sa.Connection, study_ids: list[int]) -> dict[int, tuple[int, int]]:
    """study id -> (trial id, number) of its best COMPLETE trial on the first objective (all maximised).

    Multi-objective studies have a Pareto front rather than one best trial; optuna-dashboard shows it.
    """
    rank = sa.func.row_number().over(partition_by=trials.c.study_id,
                                     order_by=(trial_values.c.value.desc(), trials.c.number)).label("rank")
    first_value = sa.and_(trial_values.c.trial_id == trials.c.trial_id, trial_values.c.objective == 0)
    ranked = (sa.select(trials.c.study_id, trials.c.trial_id, trials.c.number, rank)
              .join(trial_values, first_value)
              .where(trials.c.study_id.in_(study_ids), trials.c.state == TrialState.COMPLETE,
                     trial_values.c.value_type == FINITE).subquery())
    rows = connection.execute(sa.select(ranked.c.study_id, ranked.c.trial_id, ranked.c.number)
                              .where(ranked.c.rank == 1))
    return {row.study_id: (row.trial_id, row.number) for row in rows}


# ---------------------------------------------------------------------------------------------- trials
def list_trials(db: Database, *, study_id: int, offset: int = 0, limit: int = PAGE_SIZE,
                order: Literal["number", "value"] = "number") -> Page[TrialRecord]:
    """One page of a study's trials, by number or by first-objective value (best first, unfinished last)."""
    first_value = trial_values.alias("first_value")
    joined = trials.outerjoin(first_value, sa.and_(first_value.c.trial_id == trials.c.trial_id,
                                                   first_value.c.objective == 0))
    ordering = ([trials.c.number] if order == "number"
                else [sa.nulls_last(first_value.c.value.desc()), trials.c.number])
    page_query = (sa.select(trials).select_from(joined).where(trials.c.study_id == study_id)
                  .order_by(*ordering).offset(offset).limit(limit))

    def read() -> Page[TrialRecord]:
        with db.engine.connect() as connection:
            if connection.execute(sa.select(study_table).where(study_table.c.id == study_id)).first() is None:
                raise StudyNotFoundError.of_id(study_id)
            count = sa.select(sa.func.count()).where(trials.c.study_id == study_id)
            total = connection.execute(count).scalar_one()
            rows = connection.execute(page_query).all()
            details = _TrialDetails.read(connection, [row.trial_id for row in rows])
        return Page[TrialRecord](items=[details.record(row) for row in rows], total=total, offset=offset,
                                 limit=limit)

    return retry_transient(read, what="list trials")


class _TrialDetails:
    """Params, values and the attributes records show, for a page of trials, read in four queries."""

    def __init__(self) -> None:
        self.params: dict[int, dict[str, Any]] = defaultdict(dict)
        self.values: dict[int, list[float | None]] = {}
        self.user_attrs: dict[int, dict[str, Any]] = defaultdict(dict)
        self.system_attrs: dict[int, dict[str, Any]] = defaultdict(dict)

    @classmethod
    def read(cls, connection: sa.Connection, trial_ids: list[int]) -> _TrialDetails:
        details = cls()
        if not trial_ids:
            return details
        for row in connection.execute(sa.select(trial_params).where(trial_params.c.trial_id.in_(trial_ids))):
            distribution = optuna.distributions.json_to_distribution(row.distribution_json)
            details.params[row.trial_id][row.param_name] = distribution.to_external_repr(row.param_value)
        by_objective: dict[int, dict[int, float]] = defaultdict(dict)
        for row in connection.execute(sa.select(trial_values).where(trial_values.c.trial_id.in_(trial_ids))):
            value = stored_value(row.value, row.value_type)
            by_objective[row.trial_id][row.objective] = value if math.isfinite(value) else None
        details.values = {trial_id: [values[i] for i in sorted(values)]
                          for trial_id, values in by_objective.items()}
        details._read_attrs(connection, trial_user_attrs, trial_ids, SPLIT_ATTRS, details.user_attrs)
        details._read_attrs(connection, trial_system_attrs, trial_ids, (WORKER_ATTR, "retry_history"),
                            details.system_attrs)
        return details

    @staticmethod
    def _read_attrs(connection: sa.Connection, table: sa.Table, trial_ids: list[int], keys: Sequence[str],
                    into: dict[int, dict[str, Any]]) -> None:
        query = sa.select(table).where(table.c.trial_id.in_(trial_ids), table.c.key.in_(keys))
        for row in connection.execute(query):
            into[row.trial_id][row.key] = json.loads(row.value_json)

    def record(self, row: Any) -> TrialRecord:
        user, system = self.user_attrs[row.trial_id], self.system_attrs[row.trial_id]
        history = system.get("retry_history", [])
        finished = row.state.is_finished()
        return TrialRecord(number=row.number, state=row.state.name.lower(), params=self.params[row.trial_id],
                           values=self.values.get(row.trial_id), val=user.get("val") if finished else None,
                           test=user.get("test") if finished else None, diagnostics=user.get("diagnostics"),
                           duration_s=_duration_s(row.datetime_start, row.datetime_complete),
                           worker=system.get(WORKER_ATTR), retried_from=history[-1] if history else None,
                           retry_history=history)


def _duration_s(started: datetime | None, completed: datetime | None) -> float | None:
    return (completed - started).total_seconds() if started and completed else None
