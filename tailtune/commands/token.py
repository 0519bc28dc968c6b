"""`tailtune token create|list|revoke`: named API tokens, read or write, managed on the database itself.

    tailtune token create dashboard --read-only --storage postgresql://...   # the token is the last line

Only someone who can reach the database makes tokens; the API has no route that does.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from pydantic import TypeAdapter
from rich.console import Console
from rich.table import Table

from studies.store import tokens
from tailtune.commands.common import StorageOption, open_database, user_errors

app = typer.Typer(no_args_is_help=True, help="API tokens: read (GET only) or write, revoked at once.")
console = Console()

NameArgument = Annotated[str, typer.Argument(help="token name, e.g. the dashboard or CI job that holds it")]
JsonOption = Annotated[bool, typer.Option("--json", help="print the result as JSON")]


@app.command()
def create(name: NameArgument, storage: StorageOption = None,
           read_only: Annotated[bool, typer.Option("--read-only", help="GET requests only")] = False,
           expires_in_days: Annotated[float | None, typer.Option(
               min=0.001, help="refused this many days from now (e.g. 90); default: until revoked")] = None) -> None:
    """Create a token and print it once, alone on the last line; only its digest is stored."""
    expires_at = datetime.now(UTC) + timedelta(days=expires_in_days) if expires_in_days is not None else None
    with user_errors():
        record, secret = tokens.create_token(open_database(storage), name=name, scope="read" if read_only else "write",
                                             expires_at=expires_at)
    until = f", valid until {record.expires_at:%Y-%m-%d %H:%M} UTC" if record.expires_at else ""
    typer.echo(f"created {record.scope} token {record.name!r}{until}; store it now, it is not shown again:")
    typer.echo(secret)


@app.command("list")
def list_(storage: StorageOption = None, as_json: JsonOption = False) -> None:
    """Every token's name, scope, creation, expiry, last use and revocation time (UTC; never the token)."""
    with user_errors():
        found = tokens.list_tokens(open_database(storage))
    if as_json:
        typer.echo(_RECORDS.dump_json(found, indent=2).decode())
        return
    table = Table(title="API tokens (times in UTC)")
    for column in ("name", "scope", "created", "expires", "last used", "revoked"):
        table.add_column(column)
    now = datetime.now(UTC)
    for token in found:
        expires = _when(token.expires_at) + (" (expired)" if token.expired(now) else "")
        table.add_row(token.name, token.scope, _when(token.created_at), expires, _when(token.last_used_at),
                      _when(token.revoked_at))
    console.print(table)


def _when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M}" if moment is not None else "-"


@app.command()
def revoke(name: NameArgument, storage: StorageOption = None, as_json: JsonOption = False) -> None:
    """Revoke a token: the API refuses it from the next request on."""
    with user_errors():
        record = tokens.revoke_token(open_database(storage), name=name)
    typer.echo(record.model_dump_json(indent=2) if as_json else f"revoked token {record.name!r}")


_RECORDS = TypeAdapter(list[tokens.TokenRecord])
