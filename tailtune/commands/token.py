"""`tailtune token create|list|revoke`: named API tokens, read or write, managed on the database itself.

    tailtune token create dashboard --read-only --storage postgresql://...   # the token is the last line

Only someone who can reach the database makes tokens; the API has no route that does.
"""

from __future__ import annotations

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
           read_only: Annotated[bool, typer.Option("--read-only", help="GET requests only")] = False) -> None:
    """Create a token and print it once, alone on the last line; only its digest is stored."""
    with user_errors():
        record, secret = tokens.create_token(open_database(storage), name=name, scope="read" if read_only else "write")
    typer.echo(f"created {record.scope} token {record.name!r}; store it now, it is not shown again:")
    typer.echo(secret)


@app.command("list")
def list_(storage: StorageOption = None, as_json: JsonOption = False) -> None:
    """Every token's name, scope, creation and revocation time (never the token)."""
    with user_errors():
        found = tokens.list_tokens(open_database(storage))
    if as_json:
        typer.echo(_RECORDS.dump_json(found, indent=2).decode())
        return
    table = Table(title="API tokens")
    for column in ("name", "scope", "created", "revoked"):
        table.add_column(column)
    for token in found:
        table.add_row(token.name, token.scope, f"{token.created_at:%Y-%m-%d %H:%M}",
                      f"{token.revoked_at:%Y-%m-%d %H:%M}" if token.revoked_at else "-")
    console.print(table)


@app.command()
def revoke(name: NameArgument, storage: StorageOption = None, as_json: JsonOption = False) -> None:
    """Revoke a token: the API refuses it from the next request on."""
    with user_errors():
        record = tokens.revoke_token(open_database(storage), name=name)
    typer.echo(record.model_dump_json(indent=2) if as_json else f"revoked token {record.name!r}")


_RECORDS = TypeAdapter(list[tokens.TokenRecord])
