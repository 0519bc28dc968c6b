"""`tailtune serve`: the REST API under uvicorn."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from tailtune.commands.common import StorageOption, load_settings, user_errors

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
log = logging.getLogger("tailtune.serve")


def serve(
    host: Annotated[str, typer.Option(help="address to bind; anything but localhost wants a token")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    storage: StorageOption = None,
) -> None:
    """Serve the REST API (OpenAPI docs at /docs). Env: TAILTUNE_DATABASE_URL, TAILTUNE_API_TOKEN."""
    import uvicorn

    from service.main import create_app

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with user_errors():
        settings = load_settings(database={"url": storage})
        app = create_app(settings)
    if settings.api.token is None and host not in LOCAL_HOSTS:
        log.warning("binding %s without TAILTUNE_API_TOKEN: anyone who reaches this port can create and delete "
                    "studies; set TAILTUNE_API_TOKEN", host)
    uvicorn.run(app, host=host, port=port, log_level="info")
