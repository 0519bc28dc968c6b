"""What every command shares: the settings (environment, .env, then flags), the database they name, and user
errors as one line on stderr with exit code 2, never a traceback."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.markup import escape

from service.core.config import ArtifactSettings, Settings
from trainers.errors import TrainingDivergedError, UserInputError

if TYPE_CHECKING:
    from studies.store.db import Database

stderr = Console(stderr=True)


def default_of(model: type[BaseModel], field: str) -> str:
    """`[default: VALUE]` for a flag's help, read from the model the flag fills: its default is written there only.
    The flag itself defaults to None, "not given", so the model's default applies."""
    # Escaped: typer renders help as rich markup, which would take the brackets for a style and drop them.
    return escape(f"[default: {model.model_fields[field].get_default(call_default_factory=True)}]")


# Flags that stand for a setting default to None, "not given": the value then comes from the environment, the
# .env file or the setting's own default (service/core/config.py), so no default is written twice.
StorageOption = Annotated[str | None, typer.Option(
    "--storage", help="database URL: postgresql://USER@HOST/DB or sqlite:///FILE.db \\[env: TAILTUNE_DATABASE_URL]")]
ArtifactDirOption = Annotated[Path | None, typer.Option(
    help="stage-1 cache, report pages and figures \\[env: TAILTUNE_ARTIFACT_DIR] "
         f"{default_of(ArtifactSettings, 'dir')}")]


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    from studies.store.db import DatabaseUnavailableError  # imports optuna: `tailtune train` need not pay for it

    try:
        yield
    except (UserInputError, TrainingDivergedError, DatabaseUnavailableError) as error:
        stderr.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None


def load_settings(**flags: dict[str, Any]) -> Settings:
    """The process's settings, built once: the environment and .env, overridden by the flags given on the command
    line, by section (`database={"url": storage}`); a flag left at None is not given."""
    try:
        return Settings(**{section: given(**fields) for section, fields in flags.items()})
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}"
                             for e in error.errors())
        raise UserInputError(f"invalid settings: {problems}") from None


def connect(settings: Settings) -> Database:
    """The database the settings name, with its tables created or upgraded; logging set up for a command."""
    from studies.store.db import Database

    configure_logging()
    return Database.connect(settings.database.url)


def open_database(storage: str | None) -> Database:
    """The database of --storage, else the settings' (for commands that need nothing else from them)."""
    return connect(load_settings(database={"url": storage}))


def configure_logging() -> None:
    import optuna

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def given(**values: object) -> dict[str, object]:
    """The flags the user gave: those not left at None."""
    return {name: value for name, value in values.items() if value is not None}


def parse_assignments(pairs: list[str]) -> dict[str, str]:
    """`key=value` options into a dict; values stay strings and pydantic converts them to the field's type."""
    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserInputError(f"expected key=value (e.g. stage1.epochs=5), got {pair!r}")
        values[key.strip()] = value.strip()
    return values
