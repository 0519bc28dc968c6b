"""`tailtune db upgrade`: create or upgrade tailtune's tables (and Optuna's) once, before a deployment starts."""

from __future__ import annotations

import typer

from studies.store.db import redacted
from tailtune.commands.common import StorageOption, open_database, user_errors

app = typer.Typer(no_args_is_help=True, help="Database schema.")


@app.command()
def upgrade(storage: StorageOption = None) -> None:
    """Run the migrations (Optuna's schema and tailtune's Alembic revisions) and exit."""
    with user_errors():
        db = open_database(storage)
    typer.echo(f"database at {redacted(db.url)} is up to date")
    db.dispose()
