"""A worker's settings, each default written once: `Settings.worker` (service/core/config.py) and the CLI's
`tailtune worker` fill them. Apart from the loop (studies/run/worker.py) so that reading them imports no torch."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from trainers.config import Device, RunOptions

# How a trial runs, where the worker does not say otherwise: `tailtune train`'s defaults.
_RUN = RunOptions()


class WorkerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    heartbeat_interval: int = Field(10, ge=1, description="seconds between heartbeats")
    grace_period: int = Field(30, ge=1, description="a trial without a heartbeat for this long is retried")
    device: Device = _RUN.device
    poll_interval_s: float = Field(1.0, gt=0, description="wait between claims while others hold the budget")
    stop_timeout_s: float = Field(5.0, ge=0, description="after SIGTERM, seconds the trial may run on")
    max_consecutive_failures: int = Field(5, ge=1, description="a study is stopped after this many in a row")
    max_retry: int = Field(3, ge=0, description="retries of one killed or interrupted trial")
    outage_timeout_s: float = Field(300.0, gt=0, description="how long the database may be unreachable")
    handle_signals: bool = Field(True, description="install SIGTERM/SIGINT handlers (main thread only)")
    wait_for_studies: bool = Field(False, description="when no study is open, wait for new ones instead of "
                                   "exiting (a long-lived worker in a Deployment)")
    batch_trials: int = Field(8, ge=1, le=256, description="stage-2 trials of one cached backbone trained "
                              "together (1: one trial at a time)")
    stage1_processes: int = Field(_RUN.stage1_processes, ge=1, description="processes training each stage 1 "
                                  "data-parallel (DDP), one per GPU: a worker owning a node's GPUs sets it to their "
                                  "number")
    tf32: bool = Field(_RUN.tf32, description=RunOptions.model_fields["tf32"].description)

    @model_validator(mode="after")
    def _grace_covers_heartbeats(self) -> WorkerSettings:
        # Below two missed heartbeats, a slow network or a GC pause reaps a live trial (optuna #4234).
        if self.grace_period < 2 * self.heartbeat_interval:
            raise ValueError(f"grace_period ({self.grace_period} s) must be at least twice "
                             f"heartbeat_interval ({self.heartbeat_interval} s); three times is the default")
        return self
