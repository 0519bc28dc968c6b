"""The service's settings, read once from the environment (prefix TAILTUNE_) or a .env file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TAILTUNE_", env_file=".env", extra="ignore")

    database_url: str = Field("sqlite:///tailtune.db", description="SQLAlchemy URL of the studies database")
    api_token: SecretStr | None = Field(None, description="when set, every route but /healthz needs it as a "
                                        "Bearer token")
    db_pool_size: int = Field(8, ge=1, le=100, description="PostgreSQL connections the API keeps open: one "
                              "per request served at once (a worker holds up to 5 over its pools)")
    artifact_dir: Path = Field(Path("tailtune-artifacts"), description="stage-1 cache and report figures")
    data_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list, description="folders a study created over the API may read data from, separated "
        f"by {os.pathsep!r}; none: only the built-in data sets")

    @field_validator("data_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: Any) -> Any:
        # One variable like PATH: TAILTUNE_DATA_ROOTS=/data:/scratch/images
        if isinstance(value, str):
            return [part for part in value.split(os.pathsep) if part.strip()]
        return value
