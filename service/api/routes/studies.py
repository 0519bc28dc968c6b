"""/studies: create, list, inspect, stop and delete studies. Routes validate, call studies/, and map errors."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.responses import HTMLResponse, StreamingResponse

from service.api.deps import DatabaseDep, SettingsDep, WriteLimitDep
from service.core.config import Settings
from service.data_paths import check_data_paths
from service.schemas import BudgetUpdate, Message, StudyCreated, StudyLinks, TrialRequest, ValidationErrors
from studies.definition.records import (
    MAX_PAGE_SIZE,
    PAGE_SIZE,
    Page,
    StudyRecord,
    StudyState,
    StudySummary,
    TrialRecord,
)
from studies.definition.spec import MAX_SEARCHED_PARAMS, NAME_PATTERN, StudySpec
from studies.reports.trials_csv import trials_csv
from studies.store import lifecycle, registry

router = APIRouter(prefix="/studies", tags=["studies"])

# Ids are PostgreSQL integers: larger values cannot name a study and must not reach the database.
StudyId = Annotated[int, Path(ge=1, le=2**31 - 1, description="the study's id, as POST /studies returned it")]
Offset = Annotated[int, Query(ge=0, le=2**31 - 1, description="items to skip")]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description=f"items per page (at most {MAX_PAGE_SIZE})")]
NOT_FOUND = {404: {"model": Message}}
CONFLICT = {409: {"model": Message, "description": "the budget cannot take it"}}
UNREADABLE = {409: {"model": Message, "description": "the study's stored spec no longer validates (an older "
                                                  "tailtune's, or written by hand): the fields are named"}}
# Study creation and trial queueing count against the token's TAILTUNE_API_WRITES_PER_MINUTE.
TOO_MANY = {429: {"model": Message, "description": "over this token's writes per minute; see Retry-After"}}
BAD_BODY = {400: {"model": Message, "description": "the body is not UTF-8 JSON"},
            413: {"model": Message, "description": "the body is over TAILTUNE_API_MAX_REQUEST_BYTES"}}


@router.post("", status_code=status.HTTP_201_CREATED, response_model=StudyCreated, dependencies=[WriteLimitDep],
             responses={**BAD_BODY, **TOO_MANY, 409: {"model": Message, "description": "a study of that name exists"},
                        422: {"model": ValidationErrors | Message,
                              "description": "a message per bad field, or one naming a data path outside the "
                                             "allowed roots; among the rules: search_space and fixed name config "
                                             f"fields of the method, at most {MAX_SEARCHED_PARAMS} parameters are "
                                             "searched, the grid sampler needs every searched parameter as "
                                             "categorical choices"}})
def create_study(spec: StudySpec, db: DatabaseDep, settings: SettingsDep) -> StudyCreated:
    check_data_paths(spec, settings.data.roots)
    record = registry.create_study(db, spec=spec)
    return StudyCreated(id=record.id, name=record.name, urls=_links(settings, record.id))


@router.get("", response_model=Page[StudySummary])
def list_studies(db: DatabaseDep, state: StudyState | None = None,
                 name: Annotated[str | None, Query(pattern=NAME_PATTERN, description="only the study of this name")]
                 = None, offset: Offset = 0, limit: Limit = PAGE_SIZE) -> Page[StudySummary]:
    """One page of studies without their specs; GET /studies/{id} has the spec."""
    return registry.list_studies(db, state=state, name=name, offset=offset, limit=limit)


@router.get("/{study_id}", response_model=StudyRecord, responses={**NOT_FOUND, **UNREADABLE})
def get_study(study_id: StudyId, db: DatabaseDep) -> StudyRecord:
    return registry.get_study(db, study_id=study_id)


@router.get("/{study_id}/trials", response_model=Page[TrialRecord], responses=NOT_FOUND)
def list_trials(study_id: StudyId, db: DatabaseDep, offset: Offset = 0, limit: Limit = PAGE_SIZE,
                order: Annotated[Literal["number", "value"], Query(description="value: best first")] = "number",
                ) -> Page[TrialRecord]:
    return registry.list_trials(db, study_id=study_id, offset=offset, limit=limit, order=order)


@router.post("/{study_id}/stop", response_model=StudyRecord, responses={**NOT_FOUND, **UNREADABLE})
def stop_study(study_id: StudyId, db: DatabaseDep) -> StudyRecord:
    """No new trials start; trials already running finish and count."""
    return registry.stop_study(db, study_id=study_id)


@router.post("/{study_id}/resume", response_model=StudyRecord, responses={**NOT_FOUND, **UNREADABLE})
def resume_study(study_id: StudyId, db: DatabaseDep) -> StudyRecord:
    """A stopped study takes trials again."""
    return lifecycle.resume_study(db, study_id=study_id)


@router.patch("/{study_id}", response_model=StudyRecord, responses={**BAD_BODY, **NOT_FOUND, **CONFLICT})
def update_budget(study_id: StudyId, update: BudgetUpdate, db: DatabaseDep) -> StudyRecord:
    """Raise or lower n_trials (409 below the trials already finished); a done study with room runs again."""
    return lifecycle.set_budget(db, study_id=study_id, n_trials=update.n_trials)


@router.post("/{study_id}/trials", status_code=status.HTTP_201_CREATED, response_model=lifecycle.QueuedTrial,
             dependencies=[WriteLimitDep], responses={
                 200: {"model": lifecycle.QueuedTrial, "description": "the same params were queued before: that "
                                                                      "trial"},
                 **BAD_BODY, **NOT_FOUND, **TOO_MANY,
                 409: {"model": Message, "description": "the budget has no room, or a parameter is not in the "
                                                        "study's search space or range (named)"},
                 422: {"model": ValidationErrors, "description": "a value that is no parameter value"}})
def queue_trial(study_id: StudyId, request: TrialRequest, db: DatabaseDep,
                response: Response) -> lifecycle.QueuedTrial:
    """Queue a configuration; workers run queued trials before sampling new ones."""
    queued = lifecycle.queue_trial(db, study_id=study_id, params=request.params)
    if not queued.created:
        response.status_code = status.HTTP_200_OK
    return queued


@router.get("/{study_id}/trials.csv", response_class=StreamingResponse, responses={
    200: {"content": {"text/csv": {}}, "description": "every trial: params, per-split val/test, state, "
                                                      "duration"}, **NOT_FOUND})
def export_trials(study_id: StudyId, db: DatabaseDep) -> StreamingResponse:
    return StreamingResponse(trials_csv(db, study_id=study_id), media_type="text/csv",
                             headers={"Content-Disposition": f'attachment; filename="study-{study_id}-trials.csv"'})


@router.delete("/{study_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response,
               responses={**NOT_FOUND, 409: {"model": Message}})
def delete_study(study_id: StudyId, db: DatabaseDep,
                 force: Annotated[bool, Query(description="delete even while trials run")] = False) -> Response:
    registry.delete_study(db, study_id=study_id, force=force)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# response_class=Response, as the model route: an HTML response class would document the JSON errors as text/html.
@router.get("/{study_id}/report", response_class=Response, responses={
    200: {"content": {"text/html": {}}, "description": "the report page"}, **NOT_FOUND,
    429: {"model": Message, "description": "every report build slot and queue place is taken; see Retry-After"},
    409: {"model": Message, "description": "the study has no finished trial to report yet"}})
def study_report(study_id: StudyId, db: DatabaseDep, request: Request) -> HTMLResponse:
    """The study's report page (figures inlined), as `tailtune report` writes it; kept until a trial finishes."""
    record = registry.get_study(db, study_id=study_id)
    return HTMLResponse(request.app.state.reports.page(db, record))


@router.get("/{study_id}/model", response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}},
                             "description": "the trial's model file, as `tailtune export` writes it"},
                       **NOT_FOUND, 409: {"model": Message, "description": "the trial is not COMPLETE"}})
def trial_model(study_id: StudyId, db: DatabaseDep, settings: SettingsDep,
                trial: Annotated[int | None, Query(ge=0, le=2**31 - 1, description="trial number; default: the "
                                                   "best trial by the study's first objective")] = None) -> Response:
    """The trial's model file (backbone, evaluated classifier, input rules, class names, model card) for
    `tailtune predict --model FILE`."""
    from studies.reports.export import export_trial  # torch: seconds the API's start-up should not pay

    exported = export_trial(db, study_id=study_id, trial_number=trial, artifact_dir=settings.artifact.dir)
    return Response(exported.content, media_type="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="{exported.file_name}"'})


def _links(settings: Settings, study_id: int) -> StudyLinks:
    # Never from the request's Host header, which the client chooses; never the database URL.
    base = f"{(settings.api.public_url or '').rstrip('/')}/studies/{study_id}"
    return StudyLinks(self=base, trials=f"{base}/trials", report=f"{base}/report",
                      dashboard=settings.api.dashboard_url)
