"""The `tailtune` command: a thin typer layer over trainers/, studies/ and service/."""

from __future__ import annotations

import typer

# Command modules import torch, matplotlib, FastAPI and optuna-dashboard inside the commands that need them,
# so `tailtune --help` and a worker start in about a second instead of several.
from tailtune.commands import compare, dashboard, db, demo, export, report, serve, study, token, train, worker

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Tune long-tailed image recognition: weight balancing, LOS and EWB, searched by Optuna.")
app.command("train")(train.train)
app.add_typer(study.app, name="study")
app.add_typer(compare.app, name="compare")
app.command("worker")(worker.worker)
app.command("report")(report.report)
app.command("export")(export.export)
app.command("predict")(export.predict)
app.command("dashboard")(dashboard.dashboard)
app.command("serve")(serve.serve)
app.command("demo")(demo.demo)
app.add_typer(db.app, name="db")
app.add_typer(token.app, name="token")
