"""What every command shares: user errors become one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import typer
from rich.console import Console

from trainers.errors import TrainingDivergedError, UserInputError

stderr = Console(stderr=True)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    try:
        yield
    except (UserInputError, TrainingDivergedError) as error:
        stderr.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None


def parse_assignments(pairs: list[str]) -> dict[str, str]:
    """`key=value` options into a dict; values stay strings and pydantic converts them to the field's type."""
    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserInputError(f"expected key=value (e.g. stage1.epochs=5), got {pair!r}")
        values[key.strip()] = value.strip()
    return values
