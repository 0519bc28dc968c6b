"""Comparisons in the database: one `tailtune_comparison` row and the studies it creates (NAME-stage1,
NAME-ewb-stage1, NAME-<method>); what a comparison is: studies/definition/comparison.py.

A method's study needs the stage 1 its stage-1 study chooses, so it is created when that study is done, by
`advance`: workers call it before they list open studies (a worker serving every study then goes on to the new
ones at once), and reading a comparison calls it too. Two callers creating the same study is safe: the second
gets StudyExistsError and moves on.
"""

from __future__ import annotations

import contextlib
import json

import sqlalchemy as sa

from studies.definition.comparison import (
    STAGE2_PREFIX,
    ComparisonRecord,
    ComparisonSpec,
    ComparisonState,
    MethodRow,
    Stage1Search,
)
from studies.definition.confirmation import ConfirmedConfiguration
from studies.definition.records import StudyRecord
from studies.definition.space import ParamValue
from studies.store import registry
from studies.store.db import Database, retry_transient
from studies.store.storage import trial_user_attrs, trials
from studies.store.tables import comparison_table, study_table
from trainers.errors import UserInputError

# Trial user attr the objective sets: True when the trial trained its backbone (not served by the cache).
STAGE1_TRAINED_ATTR = "stage1_trained"


class ComparisonExistsError(UserInputError):
    """A comparison of that name exists."""


class ComparisonNotFoundError(UserInputError):
    """No such comparison."""


def create_comparison(db: Database, *, spec: ComparisonSpec) -> ComparisonRecord:
    """The row, the stage-1 studies and the studies that need nothing from them; refuses a name taken by a
    comparison or by one of its studies-to-be."""
    stage1 = spec.stage1_studies()
    for name in [spec.study_name(suffix) for suffix in [*spec.methods, *stage1]]:
        with contextlib.suppress(registry.StudyNotFoundError):
            registry.get_study_by_name(db, name=name)
            raise ComparisonExistsError(f"study {name!r} exists; choose another comparison name")
    try:
        with db.engine.begin() as connection:
            comparison_id = connection.execute(comparison_table.insert().values(
                name=spec.name, spec_json=spec.model_dump_json()).returning(comparison_table.c.id)).scalar_one()
    except sa.exc.IntegrityError:
        raise ComparisonExistsError(f"a comparison named {spec.name!r} exists; choose another name") from None
    for suffix in stage1:
        registry.create_study(db, spec=spec.stage1_spec(suffix))
    for method in spec.methods:
        if spec.stage1_study_of(method) is None:
            registry.create_study(db, spec=spec.method_spec(method, {}))
    return get_comparison(db, comparison_id=comparison_id)


def advance(db: Database) -> None:
    """Creates the methods' studies of every comparison whose stage-1 study for them is done."""
    waiting = [(spec, suffix, methods) for spec in _specs(db) for suffix, methods in spec.stage1_studies().items()]
    names = [spec.study_name(method) for spec, _, methods in waiting for method in methods]
    with db.engine.connect() as connection:
        existing = set(connection.execute(sa.select(study_table.c.name).where(study_table.c.name.in_(names)))
                       .scalars())
    for spec, suffix, methods in waiting:
        if any(spec.study_name(method) not in existing for method in methods):
            _advance_one(db, spec, suffix)


def _advance_one(db: Database, spec: ComparisonSpec, suffix: str) -> dict[str, ParamValue] | None:
    """The stage 1 the stage-1 study chose (None while it runs); creates the studies that wait on it."""
    with contextlib.suppress(registry.StudyNotFoundError):
        stage1 = registry.get_study_by_name(db, name=spec.study_name(suffix))
        if stage1.state != "done" or not stage1.best_params:
            return None
        space = spec.stage1_space(stage1.spec.method)
        chosen = {name: value for name, value in stage1.best_params.items() if name in space}
        for method in spec.stage1_studies()[suffix]:
            with contextlib.suppress(registry.StudyExistsError):  # created by another caller
                registry.create_study(db, spec=spec.method_spec(method, chosen))
        return chosen
    return None


def _specs(db: Database) -> list[ComparisonSpec]:
    def read() -> list[ComparisonSpec]:
        with db.engine.connect() as connection:
            rows = connection.execute(sa.select(comparison_table.c.spec_json).order_by(comparison_table.c.id))
            return [ComparisonSpec.model_validate_json(spec_json) for spec_json in rows.scalars()]

    return retry_transient(read, what="read comparisons")


# ---------------------------------------------------------------------------------------------- reading
def get_comparison(db: Database, *, comparison_id: int) -> ComparisonRecord:
    return _record(db, comparison_table.c.id == comparison_id, f"no comparison with id {comparison_id}")


def get_comparison_by_name(db: Database, *, name: str) -> ComparisonRecord:
    return _record(db, comparison_table.c.name == name,
                   f"no comparison named {name!r}; create it: tailtune compare create {name} --dataset ...")


def _record(db: Database, where: sa.ColumnElement[bool], missing: str) -> ComparisonRecord:
    with db.engine.connect() as connection:
        row = connection.execute(sa.select(comparison_table).where(where)).first()
    if row is None:
        raise ComparisonNotFoundError(missing)
    spec = ComparisonSpec.model_validate_json(row.spec_json)
    stage1 = [Stage1Search(study=spec.study_name(suffix), methods=methods, params=_advance_one(db, spec, suffix))
              for suffix, methods in spec.stage1_studies().items()]
    studies = _studies(db, spec)
    methods = {method: _row(spec.study_name(method), studies.get(method), recipe=False) for method in spec.methods}
    recipes = {method: _row(spec.study_name(method), studies.get(method), recipe=True) for method in spec.methods}
    return ComparisonRecord(
        id=row.id, name=row.name, state=_state(spec, studies), spec=spec, stage1=stage1,
        stage1_trainings=_stage1_trainings(db, [record.id for record in studies.values()]),
        methods=methods, recipes=recipes)


def _studies(db: Database, spec: ComparisonSpec) -> dict[str, StudyRecord]:
    found = {}
    for method in [*spec.methods, *spec.stage1_studies()]:
        with contextlib.suppress(registry.StudyNotFoundError):  # not created yet
            found[method] = registry.get_study_by_name(db, name=spec.study_name(method))
    return found


def _state(spec: ComparisonSpec, studies: dict[str, StudyRecord]) -> ComparisonState:
    if any(record.state == "stopped" for record in studies.values()):
        return "stopped"
    if any(method not in studies for method in spec.methods):
        return "searching stage 1"
    return "done" if all(studies[method].state == "done" for method in spec.methods) else "running"


def _row(study: str, record: StudyRecord | None, *, recipe: bool) -> MethodRow:
    if record is None:
        return MethodRow(study=study, state="waiting")
    answer = record.confirmed
    chosen: ConfirmedConfiguration | None = None
    if answer is not None:
        chosen = answer.recipe if recipe else answer.best
    if chosen is None:
        return MethodRow(study=study, state=record.state)
    fixed = {name: value for name, value in record.spec.fixed.items() if not name.startswith(STAGE2_PREFIX)}
    return MethodRow(study=study, state=record.state, params=fixed | chosen.params, seeds=chosen.seeds,
                     val=chosen.val, test=chosen.test, verdict=None if recipe else answer.verdict)


def _stage1_trainings(db: Database, study_ids: list[int]) -> int:
    """Trials of these studies (and of their confirmation studies) that trained their backbone."""
    linked = sa.select(study_table.c.confirm_study_id).where(study_table.c.id.in_(study_ids),
                                                              study_table.c.confirm_study_id.is_not(None))
    query = (sa.select(sa.func.count()).select_from(trials)
             .join(trial_user_attrs, trial_user_attrs.c.trial_id == trials.c.trial_id)
             .where(sa.or_(trials.c.study_id.in_(study_ids), trials.c.study_id.in_(linked)),
                    trial_user_attrs.c.key == STAGE1_TRAINED_ATTR, trial_user_attrs.c.value_json == json.dumps(True)))
    with db.engine.connect() as connection:
        return connection.execute(query).scalar_one()
