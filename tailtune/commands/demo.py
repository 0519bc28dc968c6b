"""`tailtune demo`: the whole service on a laptop in about a minute.

Starts the REST API in-process, creates a study on digits-lt with the same POST a user sends, runs a worker
in-process against the SQLite file, then prints a per-split leaderboard read back over HTTP.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
import uvicorn
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from service.core.config import Settings
from tailtune.commands.common import ArtifactDirOption, load_settings, user_errors
from trainers.results import SPLITS

console = Console()


def demo(
    n_trials: Annotated[int, typer.Option(help="trials in the demo study")] = 20,
    quick: Annotated[bool, typer.Option(help="a few short trials (CI)")] = False,
    storage: Annotated[str, typer.Option(help="database URL \\[default: tailtune-demo.db, recreated]")] = "",
    artifact_dir: ArtifactDirOption = None,
) -> None:
    """Run a real study through the REST API and an in-process worker, then print the leaderboard."""
    import optuna

    from service.main import create_app

    # The demo's own file unless --storage names one: a demo must not write into the database of the environment.
    storage = storage or _fresh_sqlite(Path("tailtune-demo.db"))
    body: dict[str, Any] = {"name": "demo-wb-digits", "dataset": "digits-lt", "method": "wb",
                            "n_trials": 4 if quick else n_trials, "seed": 0}
    if quick:
        body["fixed"] = {"stage1.epochs": 3}
    # Optuna logs each study and trial at INFO; the progress bar and the leaderboard say the same, readably.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with user_errors():
        # A short heartbeat: the demo's trials take a second, and a stopped demo should free them quickly.
        # Open, as `tailtune serve --open`: the demo's API listens on loopback only (_serving) and lives as long
        # as this command.
        settings = load_settings(database={"url": storage}, artifact={"dir": artifact_dir}, api={"open": True},
                                 worker={"heartbeat_interval": 5, "grace_period": 15, "device": "cpu"})
        app = create_app(settings)
        with (_serving(app) as base_url,
              httpx.Client(base_url=base_url, timeout=60) as client):
            created = _post_study(client, body)
            console.print(f"API at {base_url}; created study {created['name']!r} (id {created['id']}): "
                          f"{created['urls']['self']}", soft_wrap=True)
            _run_with_progress(app.state.database, client, created, settings)
            trials = client.get(f"/studies/{created['id']}/trials", params={"order": "value", "limit": 5}).json()
            study = client.get(f"/studies/{created['id']}").json()
    console.print(leaderboard(trials["items"], study))
    # soft_wrap: a long URL stays on one line, so the command can be copied whole.
    console.print(f"Inspect it: [bold]optuna-dashboard {storage}[/]", soft_wrap=True)


def _fresh_sqlite(path: Path) -> str:
    # The WAL and shared-memory files go too: a crashed earlier run must not leave half a journal behind.
    for leftover in (path, path.with_name(f"{path.name}-wal"), path.with_name(f"{path.name}-shm")):
        leftover.unlink(missing_ok=True)
    return f"sqlite:///{path}"


def _post_study(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/studies", json=body)
    if response.status_code != 201:
        raise typer.BadParameter(f"POST /studies answered {response.status_code}: {response.text}")
    return response.json()


class _serving:
    """uvicorn in a background thread on a free local port, for the life of a with-block."""

    def __init__(self, app: Any) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def _run_with_progress(db: Any, client: httpx.Client, created: dict[str, Any], settings: Settings) -> None:
    """The worker runs here; a thread follows the study over HTTP, as a user's client would."""
    from studies.run.worker import run_worker

    done = threading.Event()
    with Progress(TextColumn("trials"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("best val All {task.fields[best]}"), TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("trials", total=_n_trials(client, created), best="-")

        def follow() -> None:
            while not done.wait(0.5):
                response = client.get(f"/studies/{created['id']}")
                if response.status_code != 200:
                    continue  # a busy moment of the SQLite file; the next poll catches up
                study = response.json()
                best = study["best_val"]["all"] if study.get("best_val") else None
                progress.update(task, completed=study["counts"]["complete"] + study["counts"]["pruned"],
                                best=f"{best:.1f}%" if best is not None else "-")

        follower = threading.Thread(target=follow, daemon=True)
        follower.start()
        try:
            run_worker(db, study_names=[created["name"]], settings=settings.worker, artifact_dir=settings.artifact.dir)
        finally:
            done.set()
            follower.join()
        progress.update(task, completed=_n_trials(client, created))


def _n_trials(client: httpx.Client, created: dict[str, Any]) -> int:
    return client.get(f"/studies/{created['id']}").json()["n_trials"]


# Short labels for the leaderboard's params column, so the table fits an 80-column terminal.
SHORT_NAMES = {"stage1.weight_decay": "λ1", "stage2.weight_decay": "λ2", "stage2.maxnorm_thresh": "t",
               "stage2.loss": "loss", "stage2.tau": "τ", "stage2.over_smoothing_gap": "1-δ",
               "stage1.feature_reg": "λfr"}


def _cell(value: float | None) -> str:
    return f"{value:.1f}" if value is not None else "-"


def _param(name: str, value: object) -> str:
    shown = f"{value:.2g}" if isinstance(value, float) else str(value)
    return f"{SHORT_NAMES.get(name, name)}={shown}"


def leaderboard(trials: list[dict[str, Any]], study: dict[str, Any]) -> Table:
    table = Table(title=f"{study['name']}: top trials by val All (per-class mean accuracy, %)", box=box.SIMPLE_HEAD,
                  caption=f"λ1/λ2: stage-1/2 weight decay, t: relative MaxNorm radius; {study['n_trials']} trials")
    table.add_column("#", justify="right")
    table.add_column("params")
    for split in ("val", "test"):
        for column in ("All", "Many", "Med", "Few"):
            table.add_column(f"{split}\n{column}", justify="right")
    for trial in trials:
        if trial["val"] is None:
            continue
        params = " ".join(_param(name, value) for name, value in trial["params"].items())
        table.add_row(str(trial["number"]), params, *(_cell(trial["val"][s]) for s in SPLITS),
                      *(_cell(trial["test"][s]) for s in SPLITS))
    return table
