"""`tailtune worker`: run trials of the named studies (or of every active study) until their budgets are met.

    TAILTUNE_DATABASE_URL=postgresql://postgres@db/tailtune tailtune worker --study wb-digits

Start as many as there are devices; kill any of them at any time: its trial is retried with the same params.
Every option left out comes from the settings (TAILTUNE_WORKER_<OPTION>, service/core/config.py).
"""

from __future__ import annotations

import contextlib
import faulthandler
import importlib
import io
import signal
from typing import Annotated

import typer

from studies.run.settings import WorkerSettings
from studies.run.worker import BatchRunner, WorkerSummary, one_at_a_time, run_worker
from tailtune.commands.common import ArtifactDirOption, StorageOption, connect, default_of, load_settings, user_errors
from trainers.errors import UserInputError


def worker(
    storage: StorageOption = None,
    study: Annotated[list[str] | None, typer.Option(help="study name (repeatable); default: all")] = None,
    heartbeat_interval: Annotated[int | None, typer.Option(help="seconds between a worker's heartbeats")] = None,
    grace_period: Annotated[int | None, typer.Option(
        help="seconds without heartbeat before a trial is retried (>= 2x the interval)")] = None,
    artifact_dir: ArtifactDirOption = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda")] = None,
    stop_timeout: Annotated[float | None, typer.Option(
        help="after SIGTERM, seconds the current trial may run on")] = None,
    batch_trials: Annotated[int | None, typer.Option(
        help="stage-2 trials of one cached backbone trained together (1: one trial at a time)")] = None,
    stage1_processes: Annotated[int | None, typer.Option(
        help="processes (one per GPU) training each stage 1 data-parallel with DDP "
             f"{default_of(WorkerSettings, 'stage1_processes')}")] = None,
    tf32: Annotated[bool | None, typer.Option(help="allow TF32 in CUDA matmuls and convolutions (off: true fp32) "
                                                  f"{default_of(WorkerSettings, 'tf32')}")] = None,
    # Hidden: a `module:function` trial runner in place of the real objective (tests, benchmarks).
    trial_runner: Annotated[str | None, typer.Option(hidden=True)] = None,
    wait: Annotated[bool | None, typer.Option(help="when every study is done, wait for new ones instead of "
                                                   "exiting (long-lived workers in compose or Kubernetes)")] = None,
) -> None:
    """Run trials until the studies' budgets are met, then exit 0 (SIGTERM: finish or hand back, exit 0;
    SIGUSR1: print every thread's stack to stderr and go on, to see where a worker that seems stuck waits)."""
    with contextlib.suppress(io.UnsupportedOperation):  # a stderr with no file descriptor: nowhere to print
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    with user_errors():
        settings = load_settings(
            database={"url": storage}, artifact={"dir": artifact_dir},
            worker={"heartbeat_interval": heartbeat_interval, "grace_period": grace_period, "device": device,
                    "stop_timeout_s": stop_timeout, "batch_trials": batch_trials, "wait_for_studies": wait,
                    "stage1_processes": stage1_processes, "tf32": tf32})
        # TAILTUNE_DATA_ROOTS unset: a worker reads any path (the API still refuses studies outside its roots).
        summary = run_worker(connect(settings), study_names=study or None, settings=settings.worker,
                             artifact_dir=settings.artifact.dir, runner=load_runner(trial_runner),
                             data_roots=settings.data.roots or None)
    typer.echo(summary_line(summary))


def load_runner(reference: str | None) -> BatchRunner | None:
    """A `module:function` runner of one trial at a time."""
    if reference is None:
        return None
    module_name, _, function_name = reference.partition(":")
    try:
        return one_at_a_time(getattr(importlib.import_module(module_name), function_name))
    except (ImportError, AttributeError, ValueError):
        raise UserInputError(f"cannot import trial runner {reference!r}; give module:function") from None


def summary_line(summary: WorkerSummary) -> str:
    return (f"worker {summary.worker_id}: {summary.completed} complete, {summary.pruned} pruned, "
            f"{summary.failed} failed, {summary.interrupted} handed back, {summary.late_tells} late; "
            f"{summary.exit_reason}")


if __name__ == "__main__":
    # `python -m tailtune.commands.worker` is `tailtune worker` without importing every other command first
    # (the full CLI loads torch and matplotlib at import, seconds per worker start).
    typer.run(worker)
