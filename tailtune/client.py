"""A Python client of the tailtune REST API, typed with the models the API itself uses.

    from tailtune.client import TailtuneClient
    with TailtuneClient("https://tailtune.example.org", token="...") as api:
        study = api.get_study_by_name("wb-digits")
        api.queue_trial(study.id, {"stage2.weight_decay": 0.1})
        api.set_budget(study.id, 60)

Every non-2xx answer raises `ApiError` with the status and the server's message (never the token).
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter

from service.schemas import Health, StudyCreated
from studies.definition.comparison import ComparisonRecord, ComparisonSpec
from studies.definition.records import PAGE_SIZE, Page, StudyRecord, StudyState, StudySummary, TrialRecord, WorkerRecord
from studies.definition.space import ParamValue
from studies.definition.spec import StudySpec
from studies.store.lifecycle import QueuedTrial
from trainers.errors import UserInputError

Model = TypeVar("Model", bound=BaseModel)
# Long enough for a report (built on the server) on a study of thousands of trials.
TIMEOUT_S = 60.0


class ApiError(UserInputError):
    """The API answered with an error status (`status_code`; 0: it could not be reached) and this message."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


class TailtuneClient:
    """One endpoint per method, in the order of the API's routes. A context manager: closes its connections."""

    def __init__(self, base_url: str, *, token: str | None = None, timeout_s: float = TIMEOUT_S,
                 transport: httpx.BaseTransport | None = None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s,
                                  transport=transport)

    def __enter__(self) -> TailtuneClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ------------------------------------------------------------------------------------------ studies
    def create_study(self, spec: StudySpec) -> StudyCreated:
        return self._call("POST", "/studies", StudyCreated, json=spec.model_dump(mode="json"))

    def list_studies(self, *, state: StudyState | None = None, name: str | None = None, offset: int = 0,
                     limit: int = PAGE_SIZE) -> Page[StudySummary]:
        query = {"state": state, "name": name, "offset": offset, "limit": limit}
        return self._call("GET", "/studies", Page[StudySummary], params=_present(query))

    def get_study(self, study_id: int) -> StudyRecord:
        return self._call("GET", f"/studies/{study_id}", StudyRecord)

    def get_study_by_name(self, name: str) -> StudyRecord:
        found = self.list_studies(name=name, limit=1).items
        if not found:
            raise ApiError(404, f"no study named {name!r}; create it: tailtune study create {name} ...")
        return self.get_study(found[0].id)  # the list shows summaries; the study itself has its spec

    def list_trials(self, study_id: int, *, offset: int = 0, limit: int = PAGE_SIZE,
                    order: Literal["number", "value"] = "number") -> Page[TrialRecord]:
        query = {"offset": offset, "limit": limit, "order": order}
        return self._call("GET", f"/studies/{study_id}/trials", Page[TrialRecord], params=query)

    def stop_study(self, study_id: int) -> StudyRecord:
        return self._call("POST", f"/studies/{study_id}/stop", StudyRecord)

    def resume_study(self, study_id: int) -> StudyRecord:
        return self._call("POST", f"/studies/{study_id}/resume", StudyRecord)

    def set_budget(self, study_id: int, n_trials: int) -> StudyRecord:
        # Bodies go as given: the server validates them, and its 422 names the bad field.
        return self._call("PATCH", f"/studies/{study_id}", StudyRecord, json={"n_trials": n_trials})

    def queue_trial(self, study_id: int, params: dict[str, ParamValue]) -> QueuedTrial:
        return self._call("POST", f"/studies/{study_id}/trials", QueuedTrial, json={"params": params})

    def trials_csv(self, study_id: int) -> str:
        """Every trial as CSV: number, state, per-split val/test, duration, worker, one column per param."""
        return self._checked("GET", f"/studies/{study_id}/trials.csv").text

    def delete_study(self, study_id: int, *, force: bool = False) -> None:
        self._checked("DELETE", f"/studies/{study_id}", params={"force": force})

    def model(self, study_id: int, *, trial: int | None = None) -> bytes:
        """The trial's model file (default: the best trial), as `tailtune export` writes it; save it and run
        `tailtune predict --model FILE`. 409 (ApiError) for a trial that is not COMPLETE."""
        return self._checked("GET", f"/studies/{study_id}/model", params=_present({"trial": trial})).content

    # ------------------------------------------------------------------------------------------ comparisons
    def create_comparison(self, spec: ComparisonSpec) -> ComparisonRecord:
        return self._call("POST", "/comparisons", ComparisonRecord, json=spec.model_dump(mode="json"))

    def get_comparison(self, comparison_id: int) -> ComparisonRecord:
        return self._call("GET", f"/comparisons/{comparison_id}", ComparisonRecord)

    def get_comparison_by_name(self, name: str) -> ComparisonRecord:
        return self._call("GET", "/comparisons", ComparisonRecord, params={"name": name})

    # ------------------------------------------------------------------------------------------ service
    def list_workers(self) -> list[WorkerRecord]:
        return _WORKERS.validate_python(self._checked("GET", "/workers").json())

    def health(self) -> Health:
        response = self._send("GET", "/healthz")
        if response.status_code not in (200, 503):  # 503 carries a Health body: the database is down
            _raise_for(response)
        return Health.model_validate(response.json())

    # ------------------------------------------------------------------------------------------ plumbing
    def _call(self, method: str, path: str, model: type[Model], **kwargs: Any) -> Model:
        return model.model_validate(self._checked(method, path, **kwargs).json())

    def _checked(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._send(method, path, **kwargs)
        if response.is_error:
            _raise_for(response)
        return response

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.TransportError as error:
            raise ApiError(0, f"cannot reach the tailtune API at {self._http.base_url} ({error}); check --api "
                              "(or TAILTUNE_API_URL) and that `tailtune serve` runs there") from None


_WORKERS = TypeAdapter(list[WorkerRecord])


def _raise_for(response: httpx.Response) -> None:
    raise ApiError(response.status_code, f"{response.request.method} {response.request.url.path}: "
                                         f"{response.status_code} {_detail(response)}")


def _detail(response: httpx.Response) -> str:
    """The server's message: FastAPI's `detail`, a string or one entry per bad field."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, list):
        return "; ".join(f"{'.'.join(str(part) for part in entry.get('loc', []))}: {entry.get('msg')}"
                         for entry in detail)
    return str(detail)


def _present(query: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in query.items() if value is not None}
