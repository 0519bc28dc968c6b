"""`tailtune dashboard`: optuna-dashboard on tailtune's database, with the stage-1 cache's artifact store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from studies.db import redacted
from tailtune.commands.common import user_errors
from tailtune.commands.worker import StorageOption, connect


def dashboard(
    storage: StorageOption = None,
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8080,
    artifact_dir: Annotated[Path, typer.Option(envvar="TAILTUNE_ARTIFACT_DIR", show_envvar=True,
                                               help="where report figures are stored")] = Path("tailtune-artifacts"),
) -> None:
    """Serve optuna-dashboard on the same database the workers use (per-split accuracies are user attrs)."""
    import optuna_dashboard
    from optuna.artifacts import FileSystemArtifactStore

    with user_errors():
        db = connect(storage)
    artifacts = artifact_dir / "optuna"
    artifacts.mkdir(parents=True, exist_ok=True)
    typer.echo(f"optuna-dashboard on http://{host}:{port}/ for {redacted(db.url)}")
    optuna_dashboard.run_server(db.optuna_storage(), host=host, port=port,
                                artifact_store=FileSystemArtifactStore(str(artifacts)))
