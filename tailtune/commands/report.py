"""`tailtune report`: a study's figures and leaderboard as PNGs plus one index.html, attached to the study.

    tailtune report wb-digits --storage sqlite:///t.db      # ./reports/wb-digits/index.html
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tailtune.commands.common import user_errors
from tailtune.commands.worker import StorageOption

console = Console()


def report(
    study: Annotated[str, typer.Argument(help="study name")],
    storage: StorageOption = None,
    out: Annotated[Path | None, typer.Option(help="directory for index.html and the PNGs "
                                                  "[default: ./reports/STUDY]")] = None,
    artifact_dir: Annotated[Path, typer.Option(
        envvar="TAILTUNE_ARTIFACT_DIR", show_envvar=True,
        help="tailtune's artifact directory; the PNGs are attached to the study in its optuna/ store, "
             "where `tailtune dashboard` (same directory) shows them")] = Path("tailtune-artifacts"),
) -> None:
    """Write a study's report: best-so-far, accuracy per parameter, weight norms, LOS logits, Few vs All."""
    from studies.report import build_report

    with user_errors():
        files = build_report(storage or "", study, out or Path("reports") / study, artifact_dir / "optuna")
    console.print(f"wrote {len(files.pngs)} figures and {files.html}", highlight=False, soft_wrap=True)
