"""`tailtune worker`: run trials of the named studies (or of every active study) until their budgets are met.

    TAILTUNE_DATABASE_URL=postgresql://postgres@db/tailtune tailtune worker --study wb-digits

Start as many as there are devices; kill any of them at any time: its trial is retried with the same params.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Annotated

import optuna
import typer
from pydantic import ValidationError

from studies.db import Database
from studies.worker import BatchRunner, WorkerSettings, WorkerSummary, one_at_a_time, run_worker
from tailtune.commands.common import user_errors
from trainers.errors import UserInputError

StorageOption = Annotated[str | None, typer.Option(
    "--storage", envvar="TAILTUNE_DATABASE_URL", show_envvar=True,
    help="database URL: postgresql://USER@HOST/DB or sqlite:///FILE.db")]
HeartbeatOption = Annotated[int, typer.Option(help="seconds between a worker's heartbeats")]
GraceOption = Annotated[int, typer.Option(help="seconds without heartbeat before a trial is retried (>= 2x)")]
ArtifactDirOption = Annotated[Path, typer.Option(envvar="TAILTUNE_ARTIFACT_DIR", show_envvar=True,
                                                 help="stage-1 cache, shared by the workers of one machine")]
DeviceOption = Annotated[str, typer.Option(help="auto | cpu | cuda")]
StopTimeoutOption = Annotated[float, typer.Option(help="after SIGTERM, seconds the current trial may run on")]
BatchOption = Annotated[int, typer.Option(help="stage-2 trials of one cached backbone trained together "
                                               "(1: one trial at a time)")]
# Hidden: a `module:function` trial runner in place of the real objective (tests, benchmarks).
RunnerOption = Annotated[str | None, typer.Option(hidden=True)]


def worker(
    storage: StorageOption = None,
    study: Annotated[list[str] | None, typer.Option(help="study name (repeatable); default: all")] = None,
    heartbeat_interval: HeartbeatOption = 10,
    grace_period: GraceOption = 30,
    artifact_dir: ArtifactDirOption = Path("tailtune-artifacts"),
    device: DeviceOption = "auto",
    stop_timeout: StopTimeoutOption = 5.0,
    batch_trials: BatchOption = 8,
    trial_runner: RunnerOption = None,
    wait: Annotated[bool, typer.Option(help="when every study is done, wait for new ones instead of exiting "
                                            "(long-lived workers in compose or Kubernetes)")] = False,
) -> None:
    """Run trials until the studies' budgets are met, then exit 0 (SIGTERM: finish or hand back, exit 0)."""
    with user_errors():
        settings = worker_settings(heartbeat_interval, grace_period, artifact_dir, device, stop_timeout, wait,
                                   batch_trials)
        summary = run_worker(connect(storage), study_names=study or None, settings=settings,
                             runner=load_runner(trial_runner))
    typer.echo(summary_line(summary))


def connect(storage: str | None) -> Database:
    configure_logging()
    return Database.connect(storage or "")


def worker_settings(heartbeat_interval: int, grace_period: int, artifact_dir: Path, device: str,
                    stop_timeout: float, wait: bool = False, batch_trials: int = 8) -> WorkerSettings:
    try:
        return WorkerSettings(heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                              artifact_dir=artifact_dir, device=device, stop_timeout_s=stop_timeout,
                              wait_for_studies=wait, batch_trials=batch_trials)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}"
                             for e in error.errors())
        raise UserInputError(f"invalid worker settings: {problems}") from None


def load_runner(reference: str | None) -> BatchRunner | None:
    """A `module:function` runner of one trial at a time."""
    if reference is None:
        return None
    module_name, _, function_name = reference.partition(":")
    try:
        return one_at_a_time(getattr(importlib.import_module(module_name), function_name))
    except (ImportError, AttributeError, ValueError):
        raise UserInputError(f"cannot import trial runner {reference!r}; give module:function") from None


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def summary_line(summary: WorkerSummary) -> str:
    return (f"worker {summary.worker_id}: {summary.completed} complete, {summary.pruned} pruned, "
            f"{summary.failed} failed, {summary.interrupted} handed back, {summary.late_tells} late; "
            f"{summary.exit_reason}")


if __name__ == "__main__":
    # `python -m tailtune.commands.worker` is `tailtune worker` without importing every other command first
    # (the full CLI loads torch and matplotlib at import, seconds per worker start).
    typer.run(worker)
