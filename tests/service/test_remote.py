"""Driving a study from outside the cluster: the client and the CLI's `--api` mode against a real `tailtune serve`."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from studies.definition.spec import StudySpec
from studies.run.worker import WorkerSettings, one_at_a_time, run_worker
from studies.store.db import Database
from tailtune.client import ApiError, TailtuneClient
from tailtune.commands import study as study_command
from tailtune.commands import token as token_command
from tests.service.conftest import Served
from tests.trial_runners import instant_runner

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ADMIN = "admin-s3cret"


def _cli(arguments: list[str]) -> str:
    result = CliRunner().invoke(study_command.app, arguments, env={"TAILTUNE_API_TOKEN": ADMIN,
                                                                     "TAILTUNE_API_URL": None,
                                                                     "TAILTUNE_DATABASE_URL": None})
    assert result.exit_code == 0, result.output
    return result.output


def _run_worker(postgres_url: str, name: str, tmp_path: Path) -> None:
    db = Database.connect(postgres_url)
    settings = WorkerSettings(heartbeat_interval=1, grace_period=3, device="cpu", handle_signals=False)
    run_worker(db, study_names=[name], settings=settings, artifact_dir=tmp_path,
               runner=one_at_a_time(instant_runner))
    db.dispose()


def _rows(postgres_url: str, table: str) -> int:
    engine = sa.create_engine(postgres_url, poolclass=sa.NullPool)
    with engine.connect() as connection:
        count = connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
    engine.dispose()
    return count


def test_from_a_laptop_through_a_real_server(serve, postgres_url: str, tmp_path: Path) -> None:
    """One server for both halves: starting `tailtune serve` is most of what a test of it costs."""
    served = serve(token=ADMIN, TAILTUNE_DATA_ROOTS=str(tmp_path / "data"))
    _client_with_scoped_tokens_and_data_roots_refuses_what_it_must_and_writes_nothing(served, postgres_url, tmp_path)
    _cli_over_the_api_prints_what_it_prints_on_the_database(served, postgres_url, tmp_path)


def _cli_over_the_api_prints_what_it_prints_on_the_database(served: Served, postgres_url: str,
                                                            tmp_path: Path) -> None:
    api = ["--api", served.base_url]
    storage = ["--storage", postgres_url]
    created = _cli(["create", "remote", "--n-trials", "2", *api])
    # Ids count Optuna's studies, the earlier studies' linked confirmation studies among them.
    assert re.match(r"created study 'remote' \(id \d+\): wb on digits-lt, 2 trials", created)
    queued = json.loads(_cli(["queue", "remote", "--param", "stage2.loss=cb", "--param",
                              "stage2.weight_decay=0.01", "--json", *api]))
    assert queued["number"] == 1 and queued["created"]  # trial 0 is the study's recipe
    assert "budget 3 trials" in _cli(["budget", "remote", "3", *api])
    _run_worker(postgres_url, "remote", tmp_path)

    for command in (["status", "remote"], ["status", "remote", "--json"], ["best", "remote"], ["list"],
                    ["trials", "remote", "--order", "value"], ["trials", "remote", "--csv"]):
        assert _cli([*command, *api]) == _cli([*command, *storage]), command
    rows = list(csv.DictReader(io.StringIO(_cli(["trials", "remote", "--csv", *api]))))
    assert [row["state"] for row in rows] == ["complete"] * 3 and rows[0]["stage2.loss"] == "cb"
    watched = _cli(["watch", "remote", "--json", *api])  # done already: one poll, then the final record
    assert json.loads(watched)["counts"]["complete"] == 3


def _new_token(postgres_url: str, *arguments: str) -> str:
    result = CliRunner().invoke(token_command.app, ["create", *arguments, "--storage", postgres_url])
    assert result.exit_code == 0, result.output
    return result.output.splitlines()[-1]


def _client_with_scoped_tokens_and_data_roots_refuses_what_it_must_and_writes_nothing(
        served: Served, postgres_url: str, tmp_path: Path) -> None:
    reader, writer = _new_token(postgres_url, "reader", "--read-only"), _new_token(postgres_url, "ci")
    listed = CliRunner().invoke(token_command.app, ["list", "--json", "--storage", postgres_url]).output
    assert [(t["name"], t["scope"]) for t in json.loads(listed)] == [("reader", "read"), ("ci", "write")]
    assert reader not in listed and writer not in listed

    with TailtuneClient(served.base_url, token=writer) as client:
        assert client.health().database == "ok"
        study_id = client.create_study(StudySpec(name="scoped", n_trials=1)).id
        assert client.get_study_by_name("scoped").id == study_id
        assert client.stop_study(study_id).state == "stopped"
        assert client.resume_study(study_id).state == "active"
        for call, status, named in [(lambda: client.queue_trial(study_id, {"stage9.lr": 0.1}), 409, "stage9.lr"),
                                    (lambda: client.set_budget(study_id, 0), 422, "n_trials"),
                                    (lambda: client.get_study(424242), 404, "424242"),
                                    (lambda: client.get_study_by_name("nobody"), 404, "nobody")]:
            with pytest.raises(ApiError) as refused:
                call()
            assert refused.value.status_code == status and named in str(refused.value)
        assert client.list_workers() == [] and client.list_trials(study_id).total == 1  # the WAITING recipe
        for body, given in [({"dataset": "folder:/etc"}, "/etc"), ({"data_root": "/etc"}, "/etc"),
                            ({"dataset": "folder:../../etc", "data_root": str(tmp_path / "data")}, "etc"),
                            ({"fixed": {"data.root": "/root"}}, "/root")]:
            with pytest.raises(ApiError) as refused:
                client.create_study(StudySpec(name="escape", n_trials=1, **body))
            message = str(refused.value)
            assert refused.value.status_code == 422 and given in message and str(tmp_path / "data") in message
            assert "passwd" not in message  # nothing of the directory's contents
        client.create_study(StudySpec(name="inside", n_trials=1, dataset=f"folder:{tmp_path}/data/images",
                                      image_size=8))
    # each study has one trial row: its recipe, WAITING as trial 0
    assert _rows(postgres_url, "tailtune_study") == 2 and _rows(postgres_url, "trials") == 2

    with TailtuneClient(served.base_url, token=reader) as client:
        assert client.get_study(study_id).name == "scoped"
        for call in (lambda: client.queue_trial(study_id, {"stage2.tau": 1.0}),
                     lambda: client.set_budget(study_id, 4), lambda: client.stop_study(study_id),
                     lambda: client.delete_study(study_id, force=True),
                     lambda: client.create_study(StudySpec(name="by-reader", n_trials=1))):
            with pytest.raises(ApiError) as refused:
                call()
            assert refused.value.status_code == 403 and "read-only" in str(refused.value)
        assert _rows(postgres_url, "tailtune_study") == 2 and _rows(postgres_url, "trials") == 2
        assert client.list_studies().total == 2
        assert CliRunner().invoke(token_command.app, ["revoke", "reader", "--storage", postgres_url]).exit_code == 0
        with pytest.raises(ApiError) as revoked:
            client.get_study(study_id)
        assert revoked.value.status_code == 401 and reader not in str(revoked.value)
    with TailtuneClient(served.base_url, token="wrong-guess") as intruder, pytest.raises(ApiError) as refused:
        intruder.list_studies()
    assert refused.value.status_code == 401 and "wrong-guess" not in str(refused.value)
    with TailtuneClient(served.base_url, token=ADMIN) as admin:
        admin.delete_study(study_id)
        assert [study.name for study in admin.list_studies().items] == ["inside"]
    log = served.log.read_text()
    assert reader not in log and writer not in log and ADMIN not in log
