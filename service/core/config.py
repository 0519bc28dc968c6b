"""Every setting of a tailtune process, in one object built once: `Settings()` reads the environment and a .env
file; the CLI passes its flags as keyword arguments, which win over both (`tailtune.commands.common`).

Each section is a typed model and each default is written here (the worker's in `studies.run.worker.WorkerSettings`,
next to the loop that uses them). Environment names are `TAILTUNE_<SECTION>_<FIELD>`:

    TAILTUNE_DATABASE_URL=postgresql://...   TAILTUNE_DATABASE_POOL_SIZE=8
    TAILTUNE_API_TOKEN=...                   TAILTUNE_ARTIFACT_DIR=/var/lib/tailtune/artifacts
    TAILTUNE_WORKER_HEARTBEAT_INTERVAL=10    TAILTUNE_WORKER_BATCH_TRIALS=8
    TAILTUNE_DATA_ROOTS=/data:/scratch/images

To add a setting, add a field to its section (or a new section model and a field of that type on `Settings`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from studies.run.settings import WorkerSettings


class DatabaseSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None = Field(None, description="SQLAlchemy URL of the studies database: postgresql://USER@HOST/DB "
                            "or sqlite:///FILE.db; every command needs one (--storage or TAILTUNE_DATABASE_URL)")
    pool_size: int = Field(8, ge=1, le=100, description="PostgreSQL connections the API keeps open: one per "
                           "request served at once (a worker holds at most 2)")


class ApiSettings(BaseModel):
    # Not "forbid": the .env file docker compose reads also holds TAILTUNE_API_PORT, a port mapping for compose.
    model_config = ConfigDict(extra="ignore", frozen=True)

    token: SecretStr | None = Field(None, description="the server's admin token (every route but /healthz needs "
                                    "it or a named token); the CLI's --api mode sends it")
    open: bool = Field(False, description="serve without any token: anyone who reaches the port may do anything "
                       "(`tailtune serve --open`, for a laptop; never the default)")
    url: str | None = Field(None, description="a tailtune API the CLI's study commands use instead of a database")
    public_url: str | None = Field(None, description="the API's address as clients reach it (e.g. behind a proxy): "
                                   "links in responses start with it; unset: links are relative (never built from "
                                   "a request's Host header)")
    dashboard_url: str | None = Field(None, description="optuna-dashboard's address for clients, given back as a "
                                      "study's dashboard link; unset: no link (the database URL is never sent)")
    report_builds: int = Field(2, ge=1, le=32, description="report pages built at once, each drawing in a thread "
                               "and reading over one pooled connection")
    report_waiting: int = Field(8, ge=0, le=1000, description="report requests that may wait for a build slot; "
                                "beyond them the API answers 429")
    writes_per_minute: int = Field(120, ge=0, le=100_000, description="study creations and queued trials one "
                                   "token may send per minute (per API process); beyond it 429 with Retry-After; "
                                   "0: no limit")
    max_request_bytes: int = Field(1_048_576, ge=1024, description="largest request body the API accepts (1 MiB); "
                                   "a larger one is answered 413 unread")


class DataSettings(BaseModel):
    # Not "forbid": images and compose set TAILTUNE_DATA_ROOT, where they mount the data sets, for the user's specs.
    model_config = ConfigDict(extra="ignore", frozen=True)

    roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list, description="folders a study created over the API may read data from, separated "
        f"by {os.pathsep!r}; none: only the built-in data sets")

    @field_validator("roots", mode="before")
    @classmethod
    def _split_roots(cls, value: Any) -> Any:
        # One variable like PATH: TAILTUNE_DATA_ROOTS=/data:/scratch/images
        if isinstance(value, str):
            return [part for part in value.split(os.pathsep) if part.strip()]
        return value


class ArtifactSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dir: Path = Field(Path("tailtune-artifacts"), description="the stage-1 cache shared by the workers of one "
                      "machine, report pages and the figures optuna-dashboard shows")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TAILTUNE_", env_nested_delimiter="_", env_nested_max_split=1,
                                      env_file=".env", env_ignore_empty=True, extra="ignore", frozen=True)

    database: DatabaseSettings = DatabaseSettings()
    api: ApiSettings = ApiSettings()
    worker: WorkerSettings = WorkerSettings()
    artifact: ArtifactSettings = ArtifactSettings()
    data: DataSettings = DataSettings()
