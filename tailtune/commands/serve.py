"""`tailtune serve`: the REST API under uvicorn.

It says at start whether it needs a token. Open (no token at all) only when asked with --open, and on an address
other than loopback only when asked twice (--open --open-beyond-loopback): an open API lets anyone who reaches
the port create, run and delete studies.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated

import typer

from tailtune.commands.common import StorageOption, load_settings, user_errors
from trainers.errors import UserInputError

if TYPE_CHECKING:
    from service.core.config import Settings
    from studies.store.db import Database

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
log = logging.getLogger("tailtune.serve")


def serve(
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    storage: StorageOption = None,
    open_api: Annotated[bool | None, typer.Option(
        "--open", help="serve without any token: anyone who reaches the port may do anything [env: "
                       "TAILTUNE_API_OPEN]")] = None,
    open_beyond_loopback: Annotated[bool, typer.Option(
        "--open-beyond-loopback", help="with --open, allow an address other than loopback (asked twice on purpose)",
    )] = False,
) -> None:
    """Serve the REST API (OpenAPI docs at /docs). Env: TAILTUNE_DATABASE_URL, TAILTUNE_API_TOKEN."""
    import uvicorn

    from service.main import create_app

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with user_errors():
        settings = load_settings(database={"url": storage}, api={"open": open_api})
        if settings.api.open and host not in LOCAL_HOSTS and not open_beyond_loopback:
            raise UserInputError(f"refusing to serve an open API on {host}: anyone who reaches it could create and "
                                 "delete studies. Drop --open and make a token (tailtune token create NAME), or "
                                 "bind 127.0.0.1, or add --open-beyond-loopback if you mean it")
        app = create_app(settings)
    log.info("%s", mode_line(settings, app.state.database, host))
    uvicorn.run(app, host=host, port=port, log_level="info")


def mode_line(settings: Settings, db: Database, host: str) -> str:
    """What the operator must know before the first request: who may use this API."""
    from studies.store import tokens

    if settings.api.open:
        return f"API mode: OPEN on {host}: no token is needed; anyone who reaches this port may do anything"
    named = tokens.active_count(db)
    admin = "the admin token (TAILTUNE_API_TOKEN)" if settings.api.token is not None else "no admin token"
    line = f"API mode: token required on {host}: {admin} and {named} active named token(s)"
    if settings.api.token is None and named == 0:
        line += ("; no token exists yet, so every request is 401 until `tailtune token create NAME` (or start "
                 "with --open on loopback)")
    return line
