"""Where the study commands act: the database itself (`--storage`) or a tailtune API (`--api`), one interface.

The client (tailtune.client) speaks to the API; `LocalStudies` calls the same operations in-process, so every
command prints the same whichever it was given.
"""

from __future__ import annotations

from typing import Annotated, Literal, Protocol

import typer

from service.schemas import StudyCreated
from studies.definition.comparison import ComparisonRecord, ComparisonSpec
from studies.definition.records import PAGE_SIZE, Page, StudyRecord, StudyState, StudySummary, TrialRecord
from studies.definition.space import ParamValue
from studies.definition.spec import StudySpec
from studies.reports.trials_csv import trials_csv
from studies.store import comparisons, lifecycle, registry
from studies.store.db import Database
from studies.store.lifecycle import QueuedTrial
from tailtune.client import TailtuneClient
from tailtune.commands.common import connect, load_settings

ApiOption = Annotated[str | None, typer.Option(
    "--api", help="URL of a tailtune API, used instead of --storage \\[env: TAILTUNE_API_URL]; its token comes from "
                  "TAILTUNE_API_TOKEN (never a flag: it would show in `ps` and shell history)")]


class Studies(Protocol):
    def create_study(self, spec: StudySpec) -> StudyCreated | StudyRecord: ...
    def list_studies(self, *, state: StudyState | None = None, name: str | None = None, offset: int = 0,
                     limit: int = PAGE_SIZE) -> Page[StudySummary]: ...
    def get_study(self, study_id: int) -> StudyRecord: ...
    def get_study_by_name(self, name: str) -> StudyRecord: ...
    def list_trials(self, study_id: int, *, offset: int = 0, limit: int = PAGE_SIZE,
                    order: Literal["number", "value"] = "number") -> Page[TrialRecord]: ...
    def stop_study(self, study_id: int) -> StudyRecord: ...
    def resume_study(self, study_id: int) -> StudyRecord: ...
    def set_budget(self, study_id: int, n_trials: int) -> StudyRecord: ...
    def queue_trial(self, study_id: int, params: dict[str, ParamValue]) -> QueuedTrial: ...
    def trials_csv(self, study_id: int) -> str: ...
    def delete_study(self, study_id: int, *, force: bool = False) -> None: ...
    def create_comparison(self, spec: ComparisonSpec) -> ComparisonRecord: ...
    def get_comparison(self, comparison_id: int) -> ComparisonRecord: ...
    def get_comparison_by_name(self, name: str) -> ComparisonRecord: ...


class LocalStudies:
    """The client's operations on a database this process opens itself."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create_study(self, spec: StudySpec) -> StudyRecord:
        return registry.create_study(self.db, spec=spec)

    def list_studies(self, *, state: StudyState | None = None, name: str | None = None, offset: int = 0,
                     limit: int = PAGE_SIZE) -> Page[StudySummary]:
        return registry.list_studies(self.db, state=state, name=name, offset=offset, limit=limit)

    def get_study(self, study_id: int) -> StudyRecord:
        return registry.get_study(self.db, study_id=study_id)

    def get_study_by_name(self, name: str) -> StudyRecord:
        return registry.get_study_by_name(self.db, name=name)

    def list_trials(self, study_id: int, *, offset: int = 0, limit: int = PAGE_SIZE,
                    order: Literal["number", "value"] = "number") -> Page[TrialRecord]:
        return registry.list_trials(self.db, study_id=study_id, offset=offset, limit=limit, order=order)

    def stop_study(self, study_id: int) -> StudyRecord:
        return registry.stop_study(self.db, study_id=study_id)

    def resume_study(self, study_id: int) -> StudyRecord:
        return lifecycle.resume_study(self.db, study_id=study_id)

    def set_budget(self, study_id: int, n_trials: int) -> StudyRecord:
        return lifecycle.set_budget(self.db, study_id=study_id, n_trials=n_trials)

    def queue_trial(self, study_id: int, params: dict[str, ParamValue]) -> QueuedTrial:
        return lifecycle.queue_trial(self.db, study_id=study_id, params=params)

    def trials_csv(self, study_id: int) -> str:
        return "".join(trials_csv(self.db, study_id=study_id))

    def delete_study(self, study_id: int, *, force: bool = False) -> None:
        registry.delete_study(self.db, study_id=study_id, force=force)

    def create_comparison(self, spec: ComparisonSpec) -> ComparisonRecord:
        return comparisons.create_comparison(self.db, spec=spec)

    def get_comparison(self, comparison_id: int) -> ComparisonRecord:
        return comparisons.get_comparison(self.db, comparison_id=comparison_id)

    def get_comparison_by_name(self, name: str) -> ComparisonRecord:
        return comparisons.get_comparison_by_name(self.db, name=name)


def open_studies(storage: str | None, api: str | None) -> Studies:
    """The API when one is given (flag or TAILTUNE_API_URL), else the database (flag or TAILTUNE_DATABASE_URL)."""
    settings = load_settings(database={"url": storage}, api={"url": api})
    if settings.api.url:
        token = settings.api.token
        return TailtuneClient(settings.api.url, token=token.get_secret_value() if token is not None else None)
    return LocalStudies(connect(settings))
