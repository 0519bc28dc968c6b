"""`tailtune dashboard`: optuna-dashboard on tailtune's database, with the report figures' artifact store."""

from __future__ import annotations

from typing import Annotated

import typer

from studies.store.db import redacted
from tailtune.commands.common import ArtifactDirOption, StorageOption, connect, load_settings, user_errors


def dashboard(
    storage: StorageOption = None,
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8080,
    artifact_dir: ArtifactDirOption = None,
) -> None:
    """Serve optuna-dashboard on the same database the workers use (per-split accuracies are user attrs)."""
    with user_errors():
        settings = load_settings(database={"url": storage}, artifact={"dir": artifact_dir})
        db = connect(settings)
    import optuna_dashboard  # seconds to import, after the database is known to be there
    from optuna.artifacts import FileSystemArtifactStore

    artifacts = settings.artifact.dir / "optuna"
    artifacts.mkdir(parents=True, exist_ok=True)
    typer.echo(f"optuna-dashboard on http://{host}:{port}/ for {redacted(db.url)}")
    optuna_dashboard.run_server(db.optuna_storage(), host=host, port=port,
                                artifact_store=FileSystemArtifactStore(str(artifacts)))
