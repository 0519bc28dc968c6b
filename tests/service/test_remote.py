"""Driving a study from outside the cluster: the client and the CLI's `--api` mode against a real `tailtune serve`."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from studies.db import Database
from studies.worker import WorkerSettings, one_at_a_time, run_worker
from tailtune.commands import study as study_command
from tests.trial_runners import instant_runner

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ADMIN = "admin-s3cret"


def _cli(arguments: list[str], token: str = ADMIN) -> str:
    result = CliRunner().invoke(study_command.app, arguments, env={"TAILTUNE_API_TOKEN": token,
                                                                     "TAILTUNE_API_URL": None,
                                                                     "TAILTUNE_DATABASE_URL": None})
    assert result.exit_code == 0, result.output
    return result.output


def _run_worker(postgres_url: str, name: str, tmp_path: Path) -> None:
    db = Database.connect(postgres_url)
    settings = WorkerSettings(heartbeat_interval=1, grace_period=3, artifact_dir=tmp_path, device="cpu",
                              handle_signals=False)
    run_worker(db, study_names=[name], settings=settings, runner=one_at_a_time(instant_runner))
    db.dispose()


def _trial_rows(postgres_url: str) -> int:
    engine = sa.create_engine(postgres_url, poolclass=sa.NullPool)
    with engine.connect() as connection:
        count = connection.execute(sa.text("SELECT count(*) FROM trials")).scalar_one()
    engine.dispose()
    return count


def test_cli_over_the_api_prints_what_it_prints_on_the_database(serve, postgres_url: str, tmp_path: Path) -> None:
    api = ["--api", serve(token=ADMIN).base_url]
    storage = ["--storage", postgres_url]
    created = _cli(["create", "remote", "--n-trials", "2", *api])
    assert created.startswith("created study 'remote' (id 1): wb on digits-lt, 2 trials")
    queued = json.loads(_cli(["queue", "remote", "--param", "stage2.loss=cb", "--param",
                              "stage2.weight_decay=0.01", "--json", *api]))
    assert queued["number"] == 0 and queued["created"]
    assert "budget 3 trials" in _cli(["budget", "remote", "3", *api])
    _run_worker(postgres_url, "remote", tmp_path)

    for command in (["status", "remote"], ["status", "remote", "--json"], ["best", "remote"], ["list"],
                    ["trials", "remote", "--order", "value"], ["trials", "remote", "--csv"]):
        assert _cli([*command, *api]) == _cli([*command, *storage]), command
    rows = list(csv.DictReader(io.StringIO(_cli(["trials", "remote", "--csv", *api]))))
    assert [row["state"] for row in rows] == ["complete"] * 3 and rows[0]["stage2.loss"] == "cb"
    watched = _cli(["watch", "remote", "--json", *api])  # done already: one poll, then the final record
    assert json.loads(watched)["counts"]["complete"] == 3
