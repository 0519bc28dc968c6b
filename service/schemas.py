"""Request and response bodies of the REST API (the study spec and records come from studies/)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from studies.definition.space import ParamValue
from studies.definition.spec import TrialBudget


class StudyLinks(BaseModel):
    """Relative, or under the configured TAILTUNE_API_PUBLIC_URL."""

    self: str
    trials: str
    report: str
    dashboard: str | None = Field(None, description="the configured optuna-dashboard address "
                                  "(TAILTUNE_API_DASHBOARD_URL); absent when none is configured")


class StudyCreated(BaseModel):
    id: int = Field(description="the study's id (Optuna's study id, also optuna-dashboard's)")
    name: str
    urls: StudyLinks


class BudgetUpdate(BaseModel):
    """PATCH /studies/{id}: the new budget."""

    model_config = ConfigDict(extra="forbid")

    n_trials: TrialBudget = Field(description="trials to finish; not below those already finished")


class TrialRequest(BaseModel):
    """POST /studies/{id}/trials: a configuration to try before the sampler's next proposals."""

    model_config = ConfigDict(extra="forbid")

    params: dict[str, ParamValue] = Field(description="searched parameters by name (e.g. stage2.weight_decay); "
                                          "those left out are sampled")


class Health(BaseModel):
    database: str = Field(description="'ok', or why the database is unreachable")


class Message(BaseModel):
    detail: str


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="where the bad value is: body, query or path, then the field")
    msg: str = Field(description="what is wrong with it")
    type: str
    input: str | None = Field(None, description="the bad value as JSON, cut to an excerpt of 200 characters")


class ValidationErrors(BaseModel):
    """FastAPI's 422 body: one entry per bad field (the first 20, then one saying how many more)."""

    detail: list[FieldError]
