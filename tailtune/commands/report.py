"""`tailtune report`: a study's figures and leaderboard as PNGs plus one index.html, attached to the study.

    tailtune report wb-digits --storage sqlite:///t.db      # ./reports/wb-digits/index.html
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tailtune.commands.common import ArtifactDirOption, StorageOption, connect, load_settings, user_errors

console = Console()


def report(
    study: Annotated[str, typer.Argument(help="study name")],
    storage: StorageOption = None,
    out: Annotated[Path | None, typer.Option(help="directory for index.html and the PNGs "
                                                  "\\[default: ./reports/STUDY]")] = None,
    artifact_dir: ArtifactDirOption = None,
) -> None:
    """Write a study's report: best-so-far, accuracy per parameter, weight norms, LOS logits, Few vs All.
    The PNGs are also attached to the study in the artifact directory's optuna/ store, where `tailtune
    dashboard` (same directory) shows them."""
    with user_errors():
        settings = load_settings(database={"url": storage}, artifact={"dir": artifact_dir})
        db = connect(settings)
        from studies.reports.report import build_report  # matplotlib: seconds, after the database is known to be there

        try:
            files = build_report(db, study, out or Path("reports") / study, settings.artifact.dir / "optuna")
        finally:
            db.dispose()
    console.print(f"wrote {len(files.pngs)} figures and {files.html}", highlight=False, soft_wrap=True)
