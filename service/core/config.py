"""The service's settings, read once from the environment (prefix TAILTUNE_) or a .env file."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TAILTUNE_", env_file=".env", extra="ignore")

    database_url: str = Field("sqlite:///tailtune.db", description="SQLAlchemy URL of the studies database")
    api_token: SecretStr | None = Field(None, description="when set, every route but /healthz needs it as a "
                                        "Bearer token")
    db_pool_size: int = Field(8, ge=1, le=100, description="PostgreSQL connections the API keeps open: one "
                              "per request served at once (a worker holds up to 5 over its pools)")
    artifact_dir: Path = Field(Path("tailtune-artifacts"), description="stage-1 cache and report figures")
