"""Request and response bodies of the REST API (the study spec and records come from studies/)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class StudyLinks(BaseModel):
    self: str
    trials: str
    report: str
    dashboard: str = Field(description="the command that opens optuna-dashboard on this database")


class StudyCreated(BaseModel):
    id: int = Field(description="the study's id (Optuna's study id, also optuna-dashboard's)")
    name: str
    urls: StudyLinks


class Health(BaseModel):
    database: str = Field(description="'ok', or why the database is unreachable")


class Message(BaseModel):
    detail: str


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="where the bad value is: body, query or path, then the field")
    msg: str = Field(description="what is wrong with it")
    type: str


class ValidationErrors(BaseModel):
    """FastAPI's 422 body: one entry per bad field."""

    detail: list[FieldError]
